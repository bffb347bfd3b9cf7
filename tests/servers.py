"""Moved to tests/support/servers.py; this name stays only for tests/chart's imports."""

from tests.support.servers import *  # noqa: F403
from tests.support.servers import free_port as free_port
