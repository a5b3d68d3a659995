"""A URLconf that imports jobs, as views usually do."""

from tests.testapp import jobs  # noqa: F401 - declares @job at import time
from tests.urls import urlpatterns  # noqa: F401
