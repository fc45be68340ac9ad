"""Links made by datajoint-link 0.11 keep working; pulls are batched, not per row."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from djbridge.errors import LinkError
from djbridge.link.states import State
from djbridge.mysql import quote
from tests.conftest import dj_connection
from tests.integration.linkworld import World, build_pipeline, make_link


def declare_like_011(world: World, source_cls: Any, local_store: str) -> None:
    """Create the outbound and local tables the way datajoint-link 0.11 declares them."""
    import datajoint as dj

    outbound_schema = dj.Schema(
        world.out_schema, context={"Recording": source_cls}, connection=dj_connection(world.source)
    )

    @outbound_schema
    class Outbound(dj.Manual):
        definition = """
        -> Recording
        ---
        process: enum('PULL', 'DELETE', 'NONE')
        is_flagged: enum('TRUE', 'FALSE')
        is_deprecated: enum('TRUE', 'FALSE')
        """

    heading = str(source_cls().heading).replace("attach@src", f"attach@{local_store}")
    heading = heading.replace("blob@src", f"blob@{local_store}")
    local_schema = dj.Schema(world.local_schema, connection=dj.conn())

    @local_schema
    class Recording(dj.Manual):
        definition = re.sub(r"'?\"?current_timestamp\(\)\"?'?", "CURRENT_TIMESTAMP", heading)

        class Channel(dj.Part):
            definition = (
                str(source_cls.Channel().heading)
                .replace("blob@src", f"blob@{local_store}")
                .replace(f"-> {source_cls.full_table_name}", "-> master")
            )

        class Reviewer(dj.Part):
            definition = str(source_cls.Reviewer().heading).replace(
                f"-> {source_cls.full_table_name}", "-> master"
            )


def test_link_made_by_011_carries_on(world: World) -> None:
    src = build_pipeline(world, n=4)
    declare_like_011(world, src["Recording"], "dst")
    outbound = quote(world.out_schema, "outbound")
    # 0.11 had shared rec 0 and was interrupted mid-pull on rec 1 (outbound says PULL).
    world.query("source", f"INSERT INTO {outbound} VALUES (0,0,'NONE','FALSE','FALSE'),"
                          "(1,1,'PULL','FALSE','FALSE')")  # fmt: skip
    Recording = make_link(world)
    assert Recording().source.status().counts == Counter({State.LOST_LOCAL: 1,
                                                          State.ACTIVATED: 1,
                                                          State.UNSHARED: 2})  # fmt: skip
    Recording().source.pull()
    assert sorted(Recording().fetch("rec_id")) == [0, 1, 2, 3]
    assert set(world.outbound().values()) == {("NONE", "FALSE", "FALSE")}
    (Recording() & {"rec_id": 2}).delete(safemode=False)
    assert sorted(Recording().fetch("rec_id")) == [0, 1, 3]


def test_011_table_with_blob_in_the_source_store_is_refused(world: World) -> None:
    import datajoint as dj

    src = build_pipeline(world, n=1)
    world.stores["src_local_name"] = world.stores["dst"]
    dj.config["stores"] = world.stores
    declare_like_011(world, src["Recording"], "src_local_name")
    with pytest.raises(LinkError, match="Migrate or drop"):
        make_link(world)


@pytest.mark.parametrize("world", ["file"], indirect=True)
def test_statements_per_pull_do_not_grow_with_rows(world: World) -> None:
    build_pipeline(world, n=40)
    Recording = make_link(world, batch_size=100)
    counts: Counter[str] = Counter()
    linked = Recording._core.linked
    linked.source_db.tracer = lambda sql, params: counts.update(["source"])
    linked.local_db.tracer = lambda sql, params: counts.update(["local"])
    (Recording().source & "rec_id < 10").pull()
    small = dict(counts)
    counts.clear()
    (Recording().source & "rec_id >= 10").pull()
    # Three times the rows, the same statements: state reads, one per step, one per table.
    assert dict(counts) == small
    assert small["source"] + small["local"] < 30
