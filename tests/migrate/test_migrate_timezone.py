"""A ``timestamp`` arrives as the same instant when the source server is not on UTC.

MySQL and MariaDB store a ``timestamp`` in UTC and show it in the session's time
zone; a ``datetime`` is shown as written. Here the source server's global time zone is
``+05:00`` while DataJoint 0.14 fills the lab and reads it back, so 0.14 sees local
times. DataJoint 2.x has no timestamp type: the destination holds a ``datetime``, and
the plan says it is kept in UTC. So each migrated ``made`` must be the source's local
time minus five hours, each ``started`` (a ``datetime``) exactly the source's.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest

from tests.migrate.compare import comparable, fetch_destination, fetch_source
from tests.migrate.conftest import ONE_SOURCE
from tests.migrate.world import MigrationWorld

pytestmark = ONE_SOURCE
OFFSET = datetime.timedelta(hours=5)


@pytest.fixture
def world_at_plus_five(unbuilt_world: MigrationWorld) -> Iterator[MigrationWorld]:
    """A world filled and read by 0.14 while the source server's time zone is +05:00."""
    [(before,)] = unbuilt_world.source_query("SELECT @@GLOBAL.time_zone")
    unbuilt_world.source_query("SET GLOBAL time_zone = '+05:00'")
    try:
        unbuilt_world.build()
        yield unbuilt_world
    finally:
        unbuilt_world.source_query("SET GLOBAL time_zone = %s", (before,))


def session_times(tables: dict[str, dict[str, dict]]) -> dict[tuple[int, int], tuple]:
    rows = tables["main"]["session"]["rows"]
    return {
        (r["subject_id"], r["session_idx"]): (comparable(r["made"]), comparable(r["started"]))
        for r in rows
    }


def test_a_timestamp_is_the_same_instant_whatever_the_source_time_zone(
    world_at_plus_five: MigrationWorld,
) -> None:
    world = world_at_plus_five
    run = world.cli("run")
    assert run.code == 0, run
    source = session_times(fetch_source(world, ("main",)))
    dest = session_times(fetch_destination(world, ("main",)))
    assert dest.keys() == source.keys()
    for key, (made, started) in source.items():
        assert dest[key][0] == made - OFFSET, (key, made, dest[key])
        assert dest[key][1] == started, (key, started, dest[key])
