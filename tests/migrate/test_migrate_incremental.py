"""Must-hold 4 of issue 19: ``run`` again and again while 0.14 keeps working.

A second run copies nothing; rows that appear at the source arrive with the next run,
exactly those; rows whose keys left the source are counted as ``rows_extra`` and kept,
and deleted with ``--delete-extra`` (children first, nothing else). The source is
never written by any of it.
"""

from __future__ import annotations

import threading
from typing import Any

from tests.migrate.compare import assert_same, conversions, fetch_destination, fetch_source
from tests.migrate.conftest import ONE_SOURCE
from tests.migrate.world import MigrationWorld, Result

pytestmark = ONE_SOURCE

SOURCE_ROWS = {
    "#species": 3, "subject": 3, "numbers": 3, "session": 4, "recording": 4, "counter": 3,
    "_analysis": 4, "__summary": 4, "__summary__item": 8, "rating": 3,
}  # fmt: skip


def per_table(result: Result, name: str) -> dict[str, int]:
    return {table: int(entry[name]) for (_, table), entry in result.tables().items()}


def dest_counts(world: MigrationWorld) -> dict[str, int]:
    out = {}
    for table in SOURCE_ROWS:
        role = "latin" if table == "rating" else "main"
        [(count,)] = world.dest_query(f"SELECT COUNT(*) FROM {world.dest_table(role, table)}")
        out[table] = int(count)
    return out


def run_ok(world: MigrationWorld, *flags: str) -> Result:
    result = world.cli("run", *flags)
    assert result.code == 0, result
    assert all(entry["error"] is None for entry in result.tables().values()), result
    return result


def test_a_second_run_copies_nothing_and_no_command_writes_the_source(
    world: MigrationWorld,
) -> None:
    fingerprint = world.source_fingerprint()
    assert world.cli("plan").code == 0
    first = run_ok(world)
    assert per_table(first, "rows_copied") == SOURCE_ROWS, first
    assert per_table(first, "rows_extra") == dict.fromkeys(SOURCE_ROWS, 0), first
    second = run_ok(world)
    assert per_table(second, "rows_copied") == dict.fromkeys(SOURCE_ROWS, 0), second
    assert per_table(second, "rows_present") == SOURCE_ROWS, second
    assert second.total("objects_copied") == second.total("bytes_copied") == 0, second
    assert per_table(second, "rows_extra") == dict.fromkeys(SOURCE_ROWS, 0), second
    verify = world.cli("verify")
    assert verify.code == 0, verify
    assert world.source_fingerprint() == fingerprint


def test_rows_added_at_the_source_are_copied_by_the_next_run_exactly(
    world: MigrationWorld,
) -> None:
    plan = world.cli("plan")
    run_ok(world)
    world.insert_more(first=10, count=2)
    added = {"subject": 2, "session": 2, "recording": 2, "_analysis": 2, "__summary": 2}
    added["__summary__item"] = 4
    again = run_ok(world)
    assert per_table(again, "rows_copied") == {t: added.get(t, 0) for t in SOURCE_ROWS}, again
    assert again.total("objects_copied") == 6, again  # a blob, an attachment, a file each
    assert per_table(again, "rows_present") == SOURCE_ROWS, again
    assert_same(world, fetch_source(world), fetch_destination(world), conversions(plan.report))


def delete_subject_two(world: MigrationWorld) -> dict[str, int]:
    """Delete subject 2 and everything below it at the source; return rows gone per table."""
    with world.dj014():
        (world.tables["Subject"] & {"subject_id": 2}).delete(safemode=False)
    gone = {"subject": 1, "session": 1, "recording": 1, "_analysis": 1, "__summary": 1}
    return {**gone, "__summary__item": 2, "rating": 1}


def test_rows_gone_from_the_source_are_extra_kept_then_deleted_with_delete_extra(
    world: MigrationWorld,
) -> None:
    plan = world.cli("plan")
    run_ok(world)
    gone = delete_subject_two(world)
    fingerprint = world.source_fingerprint()
    kept = run_ok(world)
    expected: dict[str, Any] = {t: gone.get(t, 0) for t in SOURCE_ROWS}
    assert per_table(kept, "rows_extra") == expected, kept
    assert kept.total("rows_copied") == 0, kept
    assert dest_counts(world) == SOURCE_ROWS
    deleted = run_ok(world, "--delete-extra")
    assert dest_counts(world) == {t: n - gone.get(t, 0) for t, n in SOURCE_ROWS.items()}
    assert deleted.total("rows_copied") == 0, deleted
    assert_same(world, fetch_source(world), fetch_destination(world), conversions(plan.report))
    assert world.source_fingerprint() == fingerprint
    after = run_ok(world)
    assert after.total("rows_extra") == after.total("rows_copied") == 0, after


def test_a_run_while_the_source_keeps_inserting_misses_no_parent(world: MigrationWorld) -> None:
    plan = world.cli("plan")
    world.insert_more(first=100, count=8)  # a longer copy, so the inserts overlap it
    results: list[Result] = []
    runner = threading.Thread(target=lambda: results.append(world.cli("run")))
    runner.start()
    n = 200
    while runner.is_alive() and n < 260:
        world.insert_more(first=n, count=1)  # a subject, its session, recording and results
        n += 1
    runner.join()
    [during] = results
    assert during.code == 0, during
    assert all(entry["error"] is None for entry in during.tables().values()), during
    assert n > 200, "no row was inserted while the run went on: the test proves nothing"
    after = run_ok(world)
    assert after.total("rows_extra") == 0, after
    verify = world.cli("verify")
    assert verify.code == 0, verify
    assert_same(world, fetch_source(world), fetch_destination(world), conversions(plan.report))
