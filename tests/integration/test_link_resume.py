"""Interrupted pulls and deletes: the next run finishes them, nothing lost or duplicated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from djbridge.errors import DjBridgeError
from djbridge.link.states import State
from djbridge.mysql import quote
from tests.integration.linkworld import World, build_pipeline, make_link


def local_counts(world: World) -> tuple[int, int, int, int]:
    schema = world.local_schema
    tables = ("recording", "recording__channel", "recording__reviewer", "~external_dst")
    return tuple(  # type: ignore[return-value]
        world.query("local", f"SELECT COUNT(*) FROM {quote(schema, t)}")[0][0] for t in tables
    )


def test_failed_copy_leaves_no_half_rows_and_the_next_pull_finishes(
    world: World, tmp_path: Path
) -> None:
    src = build_pipeline(world, n=9)
    Recording = make_link(world, batch_size=3)
    # Take one source object away: the batch holding it cannot be copied.
    store = world.store("src")
    victim = sorted(k for k in world.objects("src") if k.endswith(".bin"))[4]
    saved = store.get(victim)
    store.delete_many([victim])

    with pytest.raises(DjBridgeError, match="3 of 9 entities failed"):
        Recording().source.pull()

    status = Recording().source.status()
    # Only the batch holding the missing object stays behind; the rest finished.
    assert status.counts[State.SHARED] == 6
    assert status.counts[State.ACTIVATED] == 3
    assert len(status.stuck) == status.counts[State.ACTIVATED]
    masters, channels, reviewers, _ = local_counts(world)
    assert channels == 2 * masters  # parts always travel with their master
    assert reviewers == masters
    # Every committed local row has its objects in the destination store.
    for row in Recording().fetch(as_dict=True, download_path=str(tmp_path)):
        np.testing.assert_array_equal(row["trace"], src["sent"][row["rec_id"]]["trace"])

    store.put(victim, saved)
    result = Recording().source.pull()
    assert result.final_states[State.SHARED] == 9
    assert local_counts(world)[:3] == (9, 18, 9)
    assert Recording().source.status().stuck == []


@pytest.mark.parametrize("stage", ["activated", "received_pull", "received_delete"])
def test_every_persisted_midpoint_is_finished(world: World, stage: str) -> None:
    build_pipeline(world, n=3)
    Recording = make_link(world)
    Recording().source.pull()
    out = quote(world.out_schema, "outbound")
    if stage == "activated":  # crashed after "start pull", before "add to local"
        (Recording() & {"rec_id": 1}).delete(safemode=False)
        world.query("source", f"INSERT INTO {out} VALUES (1, 1, 'PULL', 'FALSE', 'FALSE')")
    elif stage == "received_pull":  # crashed after "add to local", before "finish pull"
        world.query("source", f"UPDATE {out} SET process='PULL' WHERE rec_id=1")
    else:  # crashed after "start delete", before "remove from local"
        world.query("source", f"UPDATE {out} SET process='DELETE' WHERE rec_id=1")
    assert Recording().source.status().stuck == [{"subject_id": 1, "rec_id": 1}]

    if stage == "received_delete":
        # The interrupted delete is completed first, then the pull brings the row back.
        Recording().source.pull()
    else:
        (Recording().source & {"rec_id": 1}).pull()
    assert world.outbound()[(1, 1)] == ("NONE", "FALSE", "FALSE")
    assert sorted(Recording().fetch("rec_id")) == [0, 1, 2]
    assert local_counts(world)[:3] == (3, 6, 3)


def test_interrupted_delete_is_finished_by_the_next_delete(world: World) -> None:
    build_pipeline(world, n=3)
    Recording = make_link(world)
    Recording().source.pull()
    world.query("source", f"UPDATE {quote(world.out_schema, 'outbound')} SET process='DELETE' "
                          "WHERE rec_id=0")  # fmt: skip
    (Recording() & {"rec_id": 0}).delete(safemode=False)
    assert 0 not in Recording().fetch("rec_id")
    assert (0, 0) not in world.outbound()


def test_two_links_pulling_the_same_keys_do_not_duplicate(world: World) -> None:
    build_pipeline(world, n=6)
    first: Any = make_link(world)
    second: Any = make_link(world)
    first().source.pull()
    second().source.pull()
    assert local_counts(world)[:3] == (6, 12, 6)
