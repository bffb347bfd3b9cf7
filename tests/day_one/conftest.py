"""A real server with API keys (a user and an admin key) for the client snippets and the
/docs page: what a newcomer meets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.pipeline import TrainedRegistry
from tests.support.server import ServerProcess, start_server

# The keys docs/clients.md uses (at least 16 visible characters, as auth.py requires).
USER_KEY = "user-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"


@pytest.fixture(scope="session")
def keyed_server(
    trained_registry: TrainedRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server = start_server(
        tmp_path_factory.mktemp("keyed"),
        trained_registry.tracking_uri,
        user_api_keys=USER_KEY,
        admin_api_keys=ADMIN_KEY,
    )
    try:
        server.wait_ready(timeout=300)  # a loaded machine (the load takes seconds alone)
        yield server
    finally:
        server.stop()
