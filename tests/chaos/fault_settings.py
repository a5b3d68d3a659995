"""The test settings, with the worker's crash hook armed from DJJ_FAULT_AT (see fault_hook.py)."""

from tests.chaos.fault_hook import arm_from_env
from tests.settings import *

arm_from_env()
