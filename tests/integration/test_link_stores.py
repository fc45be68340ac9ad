"""The stores mapping: a store left out keeps its name, and objects never land on the source's.

datajoint-link 0.11 and its functional suite link ``attach@`` tables without
``stores=``: the destination is then the local ``dj.config["stores"]`` entry of
the same name, and the pulled objects go under the local schema's folder there.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from djbridge.errors import ConfigError, LinkError
from djbridge.link.states import State
from tests.integration.linkworld import World, build_pipeline, make_link
from tests.integration.test_link_errors import nothing_written
from tests.integration.test_link_pull import fetch_local


def read_all(world: World, store: str, prefix: str) -> dict[str, bytes]:
    handle = world.store(store)
    return {o.key: handle.get(o.key) for o in handle.iter_objects(prefix)}


def test_left_out_store_keeps_its_name(world: World, caplog: pytest.LogCaptureFixture) -> None:
    src = build_pipeline(world, n=3)
    source_before = read_all(world, "src", f"{world.src_schema}/")
    assert source_before

    with caplog.at_level(logging.WARNING, logger="djbridge.link"):
        Recording = make_link(world, stores=None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'src'" in warnings[0]
    assert world.store("src").description in warnings[0]

    result = (Recording().source & [{"rec_id": 0}, {"rec_id": 1}]).pull(display_progress=True)

    assert result.final_states[State.SHARED] == 2
    local = fetch_local(Recording(), world.tmp)
    assert sorted(local) == [0, 1]
    for rec in (0, 1):
        np.testing.assert_array_equal(local[rec]["trace"], src["sent"][rec]["trace"])
        assert Path(local[rec]["notes"]).read_bytes() == src["sent"][rec]["notes"]
    # The pulled objects sit in the same store, under the local schema's folder...
    pulled = read_all(world, "src", f"{world.local_schema}/")
    count = f"SELECT COUNT(*) FROM `{world.local_schema}`.`~external_src`"
    tracked = world.query("local", count)[0][0]
    assert len(pulled) == tracked == 2 * 2 + 4
    # ...and every source object is still there, byte for byte; none was overwritten.
    assert read_all(world, "src", f"{world.src_schema}/") == source_before
    assert world.objects("dst") == {}
    ddl = world.query("local", f"SHOW CREATE TABLE `{world.local_schema}`.`recording`")[0][1]
    assert ":blob@src:" in ddl and ":attach@src:" in ddl


def test_store_missing_from_dj_config_is_named(world: World) -> None:
    import datajoint as dj

    build_pipeline(world, n=1)
    dj.config["stores"] = {"dst": world.stores["dst"]}
    with pytest.raises(ConfigError, match="'src'"):
        make_link(world, stores=None)
    dj.config["stores"] = world.stores
    with pytest.raises(ConfigError, match="'other'"):
        make_link(world, stores={"other": "dst"})
    nothing_written(world)


def test_destination_sharing_the_source_folder_is_refused(world: World) -> None:
    from link import link

    build_pipeline(world, n=1)
    with pytest.raises(ConfigError, match="'src'.*source's folder"):
        link(f"{world.source.host}:{world.source.port}", world.src_schema, world.out_schema,
             "Outbound", world.src_schema)(type("Recording", (), {}))  # fmt: skip
    assert not world.query(
        "source", "SELECT 1 FROM information_schema.schemata WHERE schema_name=%s",
        (world.out_schema,),
    )  # fmt: skip
    assert not world.query(
        "local", "SELECT 1 FROM information_schema.schemata WHERE schema_name=%s",
        (world.src_schema,),
    )  # fmt: skip


def test_no_copy_thread_outlives_a_pull(world: World) -> None:
    build_pipeline(world, n=2)
    Recording = make_link(world)
    before = set(threading.enumerate())
    Recording().source.pull()
    assert len(Recording()) == 2
    assert [t.name for t in set(threading.enumerate()) - before] == []


def test_delete_without_transaction_is_refused(world: World) -> None:
    build_pipeline(world, n=2)
    Recording = make_link(world)
    Recording().source.pull()
    with pytest.raises(LinkError, match="transaction=False"):
        Recording().delete(transaction=False, safemode=False)
    assert len(Recording()) == 2
    assert set(world.outbound().values()) == {("NONE", "FALSE", "FALSE")}
    assert Recording().delete(safemode=False, force_parts=True) == 2
    assert len(Recording()) == 0 and len(Recording.Channel()) == 0
