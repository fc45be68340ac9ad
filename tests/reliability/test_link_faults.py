"""Faults other than a killed process: lost connections, a store outage, and regressions.

* A link connection killed server-side (``KILL CONNECTION`` from an admin
  session) at a chosen statement of a batch, on either server: the run fails
  with a djbridge error naming the server, and one resume converges.
* The destination S3 endpoint stopped while a pull copies objects.
* Regression: a delete interrupted after its local removal is finished by the
  next delete (found by the SIGKILL matrix).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from djbridge.errors import DjBridgeError, LinkError
from djbridge.link.states import State
from djbridge.mysql import connect, quote
from djbridge.sandbox import MotoS3
from tests.conftest import s3_store_spec
from tests.integration.linkworld import World, build_pipeline, make_link
from tests.reliability.driver import local_label, source_label
from tests.reliability.faults import (
    assert_converged,
    assert_fetches_equal,
    clean_and_check,
    table_rows,
)


def kill_connection_at(world: World, table: Any, role: str, label: str, nth: int) -> list[int]:
    """Make an admin session KILL the link's ``role`` connection before its ``nth`` ``label``."""
    linked = table._core.linked
    db = linked.source_db if role == "source" else linked.local_db
    labels = source_label if role == "source" else local_label
    [(conn_id,)] = db.query("SELECT CONNECTION_ID()")
    admin = connect(world.source if role == "source" else world.local)
    seen: Counter[str] = Counter()
    killed: list[int] = []

    def tracer(sql: str, params: Any) -> None:
        seen[labels(sql)] += 1
        if labels(sql) == label and seen[label] == nth and not killed:
            admin.execute("KILL CONNECTION %s", (conn_id,))
            admin.close()
            killed.append(conn_id)

    db.tracer = tracer
    return killed


@pytest.mark.parametrize("world", ["file"], indirect=True)
@pytest.mark.parametrize(("op", "role", "label", "nth"), [
    ("pull", "local", "insert_part", 3),      # inside batch 2's local transaction
    ("pull", "local", "local_begin", 2),      # batch 2's objects copied, not committed
    ("pull", "source", "fetch_rows", 4),      # reading batch 2's rows
    ("pull", "source", "finish_pull", 2),     # batches committed, bookkeeping half done
    ("delete", "local", "delete_master", 2),  # inside batch 2's removal
    ("delete", "source", "start_delete", 2),
])  # fmt: skip
def test_connection_killed_server_side_mid_batch_then_resume_converges(
    world: World, tmp_path: Path, op: str, role: str, label: str, nth: int
) -> None:
    source = build_pipeline(world, n=8)["Recording"]
    table = make_link(world, batch_size=3)
    if op == "delete":
        table().source.pull()
    killed = kill_connection_at(world, table, role, label, nth)
    run = table().source.pull if op == "pull" else lambda: table().delete(safemode=False)
    with pytest.raises(DjBridgeError, match=f"{role} \\(") as info:
        run()
    assert killed, "the fault was never injected"
    reason = str(info.value).split("): ", 1)[-1]
    assert re.search(r"Lost connection|gone away|killed", reason), reason
    # The resume runs in the same process, with the same link object.
    run()
    assert_converged(world, op)
    clean_and_check(world)
    assert_fetches_equal(world, source, table, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("world", ["s3"], indirect=True)
def test_destination_endpoint_stopped_mid_copy_then_resume_converges(
    world: World, tmp_path: Path
) -> None:
    """Stop the destination S3 endpoint while a pull copies; the resume converges.

    The guarantee under test: a row is committed only after its objects were
    written *and verified* in the destination, and an outage fails the affected
    batches with a djbridge error, leaving them Activated for the next run.

    Design: the destination is a private moto endpoint. After 18 of the 36
    object writes (batch 1 committed, batch 2 copying) the wrapper snapshots the
    bucket and stops the endpoint; the remaining writes fail. moto keeps nothing
    across a restart, so after restarting it the test puts the snapshot back:
    that is what a real, durable S3 still holds after an outage, and it is the
    only way to tell "the link lost nothing" from "the fake endpoint forgot".
    Without the snapshot the objects of batch 1 would simply be gone: the link
    does not re-verify rows that are already Shared (the cleaner then reports
    them as ``missing``).
    """
    import datajoint as dj

    endpoint = MotoS3("dst-outage").start()
    try:
        endpoint.make_bucket("outage")
        world.stores["dst"] = s3_store_spec(endpoint.server, "outage", "copy/dst")
        dj.config["stores"] = world.stores
        source = build_pipeline(world, n=9)["Recording"]
        table = make_link(world, batch_size=3)
        dst = table._core.linked.placements["src"][1].store
        real_put, real_stream, snapshot, writes = dst.put, dst.put_stream, {}, Counter[str]()

        def put_stream(key: str, reader: Any) -> None:  # every copy the link makes streams
            writes["put"] += 1
            if writes["put"] == 18:
                snapshot.update({o.key: dst.get(o.key) for o in dst.iter_objects("")})
                endpoint.stop()
            real_stream(key, reader)

        dst.put_stream = put_stream
        with pytest.raises(LinkError, match="6 of 9 entities failed") as info:
            table().source.pull()
        assert endpoint.endpoint in str(info.value)  # the message names the store
        status = table().source.status()
        assert status.counts == Counter({State.SHARED: 3, State.ACTIVATED: 6})
        assert len(table_rows(world, "local", "recording__channel")) == 6  # batch 1 only

        endpoint.restart()
        endpoint.make_bucket("outage")
        for key, data in snapshot.items():
            real_put(key, data)
        table().source.pull()
        assert_converged(world, "pull")
        clean_and_check(world)
        assert assert_fetches_equal(world, source, table, tmp_path) == 9
    finally:
        endpoint.stop()


@pytest.mark.parametrize("world", ["file"], indirect=True)
def test_delete_interrupted_after_local_removal_is_finished_by_the_next_delete(
    world: World,
) -> None:
    build_pipeline(world, n=4)
    table = make_link(world)
    table().source.pull()
    out = quote(world.out_schema, "outbound")
    # The persisted state a kill between "remove from local" and "finish delete" leaves.
    world.query("source", f"UPDATE {out} SET process='DELETE' WHERE rec_id IN (1, 2)")
    world.query("source", f"UPDATE {out} SET is_flagged='TRUE' WHERE rec_id=2")
    for tbl in ("recording__channel", "recording__reviewer", "recording"):
        world.query("local", f"DELETE FROM {quote(world.local_schema, tbl)} WHERE rec_id IN (1, 2)")
    assert (table() & {"rec_id": 3}).delete(safemode=False) == 1
    assert world.outbound() == {(0, 0): ("NONE", "FALSE", "FALSE"),
                                (2, 2): ("NONE", "TRUE", "TRUE")}  # fmt: skip
    # With nothing left locally, a delete still finishes what an earlier one started.
    world.query("source", f"UPDATE {out} SET process='DELETE' WHERE rec_id=0")
    for tbl in ("recording__channel", "recording__reviewer", "recording"):
        world.query("local", f"DELETE FROM {quote(world.local_schema, tbl)} WHERE rec_id=0")
    assert table().delete(safemode=False) == 0
    assert world.outbound() == {(2, 2): ("NONE", "TRUE", "TRUE")}
