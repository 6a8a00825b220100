"""Fixtures: one server with the default model for the whole session, and process checks.

The end-to-end tests need Node and the built `mistralrs-server` (packages/cli); the default
model is fetched into the cache on first use (MISTRALRS_CACHE, else ~/.cache/mistralrs).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mistralrs import Runner
from processes import living_group_members, process_gone

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def runner() -> Iterator[Runner]:
    """A runner that started its own server (the default model), shared by the session."""
    with Runner() as shared:
        assert shared.server_pid is not None and living_group_members(shared.server_pid)
        yield shared
    assert process_gone(shared.server_pid), f"left behind: {living_group_members(shared.server_pid)}"
