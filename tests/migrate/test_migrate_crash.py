"""Must-hold 5 of issue 19: a ``run`` killed with SIGKILL, then run again, converges.

The run is killed at several moments: as soon as the destination schema appears, and
once the first rows of a table with objects have landed. Right after each kill,
every destination row must already be readable by plain DataJoint 2.x with its
objects (none may lack them); the next ``run`` finishes the copy, ``verify`` passes;
dj-cleaner then reclaims what the killed batches left behind, and still every value
equals the source's.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from djbridge.cleaner.cli import main as cleaner_main
from tests.migrate.compare import assert_same, conversions, fetch_destination, fetch_source
from tests.migrate.conftest import ONE_SOURCE
from tests.migrate.world import MigrationWorld

pytestmark = [ONE_SOURCE, pytest.mark.slow]


def dest_rows(world: MigrationWorld, role: str, table: str) -> int:
    """Return the destination row count of a table, or -1 while it does not exist."""
    if world.dest_names[role] not in world.dest_schemas():
        return -1
    try:
        [(count,)] = world.dest_query(f"SELECT COUNT(*) FROM {world.dest_table(role, table)}")
    except Exception:  # noqa: BLE001 - not declared yet
        return -1
    return int(count)


def kill_when(world: MigrationWorld, ready: str) -> bool:
    """Start a run and SIGKILL it once ``ready`` holds; return whether it was killed mid-way."""
    process = world.popen("run")
    deadline = time.monotonic() + 120
    try:
        while process.poll() is None and time.monotonic() < deadline:
            schema_exists = world.dest_names["main"] in world.dest_schemas()
            if (ready == "schema" and schema_exists) or (
                ready == "rows" and dest_rows(world, "main", "recording") > 0
            ):
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode == -signal.SIGKILL


def assert_no_row_lacks_its_objects(world: MigrationWorld) -> None:
    if world.dest_names["main"] not in world.dest_schemas():
        return
    for role, tables in fetch_destination(world).items():
        for name, table in tables.items():
            broken = [row for row in table.get("rows", []) if "$error" in row]
            assert not broken, f"{role}.{name}: rows 2.x cannot read after the kill: {broken}"


def test_a_run_killed_at_any_point_then_run_again_converges(world: MigrationWorld) -> None:
    plan = world.cli("plan")
    assert plan.code == 0, plan
    world.insert_more(first=10, count=12)  # enough recordings that the copy takes a while
    killed = [kill_when(world, ready) for ready in ("schema", "rows")]
    assert any(killed), "every run ended before it could be killed: the test proves nothing"
    assert_no_row_lacks_its_objects(world)
    run = world.cli("run")
    assert run.code == 0, run
    verify = world.cli("verify")
    assert verify.code == 0, verify
    # Objects a killed batch left behind are orphans: dj-cleaner reclaims them, no live one.
    status = cleaner_main(
        ["--config-file", str(world.cleaner_config()), "--no-progress", "--min-age", "0"]
    )
    assert status == 0
    verify = world.cli("verify")
    assert verify.code == 0, verify
    assert_same(world, fetch_source(world), fetch_destination(world), conversions(plan.report))
