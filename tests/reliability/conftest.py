"""Fixtures for the fault and concurrency tests: the fork driver.

Worlds come from ``tests.integration.linkworld``'s ``world`` fixture; tests pick
its store kind with ``@pytest.mark.parametrize("world", ["file"], indirect=True)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.faults import Zygote


@pytest.fixture(scope="session")
def zygote() -> Iterator[Zygote]:
    """One pre-imported driver process for the whole session; it forks the children."""
    driver = Zygote()
    yield driver
    driver.close()
