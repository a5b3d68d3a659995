"""Arm django_jobs.worker.faults from the environment of a test subprocess (tests only).

The chaos tests start ``runworkers`` with ``DJANGO_SETTINGS_MODULE=tests.chaos.fault_settings``
and ``DJJ_FAULT_AT`` (a step of ``faults.POINTS``), optionally ``DJJ_FAULT_ONCE`` (a flag file:
only the first process that reaches the step crashes). The settings module calls
:func:`arm_from_env` once, at start-up; the worker itself never reads these variables.
"""

from __future__ import annotations

import os

from django_jobs.worker import faults


def arm_from_env() -> bool:
    """Install the crash hook the environment asks for; return whether one was installed."""
    at = os.environ.get("DJJ_FAULT_AT") or None
    if at is None:
        faults.uninstall()
        return False
    faults.install(at, once=os.environ.get("DJJ_FAULT_ONCE") or None)
    return True
