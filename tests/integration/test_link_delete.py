"""Deleting through a link, flagging from the source side, and the states that follow."""

from __future__ import annotations

from typing import Any

import pytest

from djbridge.link.states import State
from djbridge.mysql import quote
from tests.integration.linkworld import World, build_pipeline, make_link


def flag(world: World, **key: Any) -> None:
    """Flag a row the way the README tells a source admin to: delete and re-insert."""
    where = " AND ".join(f"{k}={int(v)}" for k, v in key.items())
    table = quote(world.out_schema, "outbound")
    row = world.query("source", f"SELECT * FROM {table} WHERE {where}")[0]
    from djbridge.mysql import connect

    db = connect(world.source)
    try:
        with db.transaction():
            db.execute(f"DELETE FROM {table} WHERE {where}")
            db.execute(f"INSERT INTO {table} VALUES (%s, %s, %s, 'TRUE', %s)",
                       (row[0], row[1], row[2], row[4]))  # fmt: skip
    finally:
        db.close()


@pytest.fixture
def pulled(world: World) -> Any:
    build_pipeline(world, n=4)
    Recording = make_link(world)
    Recording().source.pull()
    return Recording


def test_delete_removes_local_rows_and_unshares(world: World, pulled: Any) -> None:
    import datajoint as dj

    dj.config["safemode"] = False
    (pulled() & {"rec_id": 1}).delete()
    assert sorted(pulled().fetch("rec_id")) == [0, 2, 3]
    assert len(pulled.Channel() & {"rec_id": 1}) == 0
    assert len(pulled.Reviewer() & {"rec_id": 1}) == 0
    assert (0, 1) not in world.outbound() and (1, 1) not in world.outbound()
    assert len(world.outbound()) == 3
    # The source can now delete the unshared row; shared rows stay protected.
    src = quote(world.src_schema, "recording")
    world.query(
        "source", f"DELETE FROM {quote(world.src_schema, 'recording__channel')} WHERE rec_id=1"
    )
    world.query(
        "source", f"DELETE FROM {quote(world.src_schema, 'recording__reviewer')} WHERE rec_id=1"
    )
    world.query("source", f"DELETE FROM {src} WHERE rec_id=1")
    from djbridge.errors import DatabaseError

    with pytest.raises(DatabaseError, match="foreign key"):
        world.query("source", f"DELETE FROM {src} WHERE rec_id=2")


def test_flagged_then_deleted_becomes_deprecated(world: World, pulled: Any) -> None:
    import datajoint as dj

    dj.config["safemode"] = False
    flag(world, subject_id=2, rec_id=2)
    assert pulled().source.flagged == [{"subject_id": 2, "rec_id": 2}]
    assert pulled().source.status().counts[State.TAINTED] == 1
    (pulled() & pulled().source.flagged).delete()
    assert 2 not in pulled().fetch("rec_id")
    assert world.outbound()[(2, 2)] == ("NONE", "TRUE", "TRUE")
    status = pulled().source.status()
    assert status.counts[State.DEPRECATED] == 1
    assert status.counts[State.SHARED] == 3
    # A deprecated row is never pulled again.
    pulled().source.pull()
    assert 2 not in pulled().fetch("rec_id")


def test_safemode_asks_once_and_cancel_changes_nothing(
    world: World, pulled: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datajoint as dj

    dj.config["safemode"] = True
    answers = iter(["no"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    outbound_before = world.outbound()
    assert pulled().delete() == 0
    assert len(pulled()) == 4
    assert world.outbound() == outbound_before
    answers = iter(["yes"])
    assert (pulled() & "rec_id < 3").delete() == 3  # one confirmation for three entities
    assert list(pulled().fetch("rec_id")) == [3]
    dj.config["safemode"] = False


def test_delete_accepts_datajoint_keywords(world: World, pulled: Any) -> None:
    (pulled() & {"rec_id": 0}).delete(safemode=False)
    assert 0 not in pulled().fetch("rec_id")


def test_delete_quick_behind_the_link_does_not_wedge_pulls(world: World, pulled: Any) -> None:
    (pulled.Channel() & {"rec_id": 3}).delete_quick()
    (pulled.Reviewer() & {"rec_id": 3}).delete_quick()
    (pulled() & {"rec_id": 3}).delete_quick()
    assert pulled().source.status().counts[State.LOST_LOCAL] == 1
    result = pulled().source.pull()
    assert result.final_states[State.SHARED] == 4
    assert 3 in pulled().fetch("rec_id")
    assert len(pulled.Channel() & {"rec_id": 3}) == 2


def test_delete_cascades_to_local_downstream_tables(world: World, pulled: Any) -> None:
    import datajoint as dj

    schema = dj.Schema(world.local_schema, context={"Recording": pulled}, connection=dj.conn())

    @schema
    class Analysis(dj.Computed):
        definition = """
        -> Recording
        ---
        score : float
        """

        def make(self, key: dict[str, Any]) -> None:
            self.insert1(dict(key, score=1.0))

    Analysis.populate()
    assert len(Analysis()) == 4
    (pulled() & {"rec_id": 2}).delete(safemode=False)
    assert len(Analysis()) == 3
    assert 2 not in pulled().fetch("rec_id")
    assert (2, 2) not in world.outbound()
