"""The engines the world's persistence tests run against: ``state_args`` gives ``azimds serve`` its ``--state``
(nothing: SQLite in the state directory; ``--state postgresql://…``: a fresh database of the private cluster)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def state_args(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "sqlite":
        return []
    return ["--state", request.getfixturevalue("postgres_url")]
