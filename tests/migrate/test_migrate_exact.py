"""Must-holds 1 and 2 of issue 19: every value arrives exactly, in tables as 2.x knows them.

The one test here runs on every source kind (MariaDB, MySQL), destination
(PostgreSQL, MySQL) and store kind (file, S3): eight worlds. Each is planned, run and
verified by ``dj-migrate``, then read back with DataJoint 0.14 at the source and
plain DataJoint 2.3.5 at the destination and compared value by value.
"""

from __future__ import annotations

from tests.migrate.compare import (
    assert_same,
    assert_structure,
    conversions,
    fetch_destination,
    fetch_source,
    join,
)
from tests.migrate.conftest import FULL_MATRIX
from tests.migrate.world import MigrationWorld

pytestmark = FULL_MATRIX


def test_every_value_arrives_exactly_in_tables_as_2x_knows_them(
    unbuilt_world: MigrationWorld,
) -> None:
    world = unbuilt_world
    world.build(inline_attach=True)
    on_pg = world.backend == "postgresql"
    plan = world.cli("plan")
    blockers = {
        (schema, table): entry["blockers"]
        for (schema, table), entry in plan.tables().items()
        if entry["blockers"]
    }
    if on_pg:  # 2.3.5 cannot read an in-table <attach> back there: named, with a reason
        assert plan.code == 1, plan
        [(where, [blocker])] = blockers.items()
        assert where == (world.schemas["main"], "document") and blocker["column"] == "doc"
        assert blocker["why"], plan
    else:
        assert plan.code == 0 and not blockers, plan
    run = world.cli("run")
    assert run.code == (1 if on_pg else 0), run
    errors = {table: e["error"] for (_, table), e in run.tables().items() if e["error"]}
    assert set(errors) == ({"document"} if on_pg else set()), run
    assert run.total("rows_extra") == 0, run
    source, dest = fetch_source(world), fetch_destination(world)
    if on_pg:
        del source["main"]["document"]
    assert_same(world, source, dest, conversions(plan.report))
    assert_structure(world, source, dest)
    assert join(world, ("latin", "rating"), ("main", "subject"))["join"] == 3  # across schemas
    assert join(world, ("main", "session"), ("main", "recording"))["join"] == 4
    verify = world.cli("verify")
    assert verify.report is not None, verify
    for (schema, table), entry in verify.tables().items():
        if table != "document" or not on_pg:
            assert entry["checked"] == len(source[world.role(schema)][table]["rows"]), verify
            assert not (entry["missing"] or entry["extra"] or entry["differ"]), verify
            assert not (entry["objects_missing"] or entry["objects_wrong"]), verify
    if not on_pg:
        assert verify.code == 0, verify
