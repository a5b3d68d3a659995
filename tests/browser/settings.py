"""Settings of the browser tests' web server and workers: the test settings on a SQLite file.

``DJJ_SQLITE_PATH`` (tests/settings.py) names the database file that ``runserver``,
``runworkers`` and the mirror stand-in share.
"""

from tests.settings import *

ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
