"""Rows of any size stream through: batches are bounded by bytes, oversized rows are named.

A batch stops growing at ``batch_bytes`` of row data (part rows included) as well
as at ``batch_size`` rows, and the statements a batch costs do not grow with its
rows. A row larger than the local server's ``max_allowed_packet`` can never be
inserted: it fails, named with its key, its size and that variable, before its
batch's transaction starts, and every other batch still arrives.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

import numpy as np
import pytest

from djbridge.errors import LinkError
from djbridge.mysql import connect
from tests.conftest import dj_connection
from tests.integration.linkworld import World, source_schema

KIB = 1 << 10


def build_frames(world: World, sizes: list[int]) -> dict[int, np.ndarray]:
    """Declare Frame (an internal longblob) with a part on the source; one row per size."""
    import datajoint as dj

    schema = dj.Schema(world.src_schema, connection=dj_connection(world.source))

    @schema
    class Frame(dj.Manual):
        definition = """
        frame_id : int
        ---
        pixels : longblob
        """

        class Tag(dj.Part):
            definition = """
            -> master
            tag : varchar(16)
            """

    rng = np.random.default_rng(5)
    sent = {}
    for i, size in enumerate(sizes):
        sent[i] = rng.integers(0, 255, size, dtype=np.uint8)
        Frame.insert1({"frame_id": i, "pixels": sent[i]})
        Frame.Tag.insert1({"frame_id": i, "tag": f"t{i}"})
    return sent


def link_frames(world: World, **kwargs: Any) -> Any:
    from link import link

    @link(f"{world.source.host}:{world.source.port}", world.src_schema, world.out_schema,
          "Outbound", world.local_schema, **kwargs)  # fmt: skip
    class Frame:
        pass

    return Frame


def batch_lines(caplog: pytest.LogCaptureFixture) -> list[int]:
    found = [re.match(r"add to local: (\d+) rows", r.getMessage()) for r in caplog.records]
    return [int(m.group(1)) for m in found if m]


@pytest.mark.parametrize("world", ["file"], indirect=True)
def test_batches_stop_at_the_byte_budget(world: World, caplog: pytest.LogCaptureFixture) -> None:
    sent = build_frames(world, [300 * KIB] * 8)
    Frame = link_frames(world, batch_size=500, batch_bytes=700 * KIB)
    linked = Frame._core.linked
    per_batch: list[Counter[str]] = [Counter()]

    def trace(server: str) -> Any:
        def note(sql: str, params: Any) -> None:
            per_batch[-1][server] += 1
            # The part insert is a batch's last statement on the local server.
            if server == "local" and sql.startswith("INSERT INTO") and "__tag" in sql:
                per_batch.append(Counter())

        return note

    linked.source_db.tracer, linked.local_db.tracer = trace("source"), trace("local")
    with caplog.at_level(logging.INFO, logger="djbridge.link"):
        result = Frame().source.pull()
    assert result.rows_copied == 8 and result.part_rows_copied == 8
    assert batch_lines(caplog) == [2, 2, 2, 2]  # 2 x 300 KiB fit under 700 KiB, 3 do not
    got = dict(zip(*Frame().fetch("frame_id", "pixels"), strict=True))
    assert sorted(got) == list(range(8))
    for i, pixels in got.items():
        np.testing.assert_array_equal(pixels, sent[i])
    assert len(Frame.Tag()) == 8
    # Every middle batch costs the same statements on each server.
    middle = per_batch[1:-1]
    assert len(middle) == 3 and all(c == middle[0] for c in middle), per_batch


@pytest.mark.parametrize("world", ["file"], indirect=True)
def test_a_row_over_max_allowed_packet_is_named_and_the_rest_arrive(world: World) -> None:
    build_frames(world, [20 * KIB, 1200 * KIB, 20 * KIB, 20 * KIB])
    admin = connect(world.local)
    (saved,) = admin.query("SELECT @@GLOBAL.max_allowed_packet")[0]
    admin.execute("SET GLOBAL max_allowed_packet = 1048576")
    try:
        Frame = link_frames(world, batch_size=2)
        with pytest.raises(LinkError) as info:
            Frame().source.pull()
    finally:
        admin.execute(f"SET GLOBAL max_allowed_packet = {int(saved)}")
        admin.close()
    message = str(info.value)
    assert "{'frame_id': 1}" in message and "max_allowed_packet" in message
    assert re.search(r"is 12\d{5} bytes", message), message
    assert sorted(Frame().fetch("frame_id")) == [0, 2, 3]
    assert len(Frame.Tag()) == 3


def build_scans(world: World, tiles: int, tile_size: int) -> tuple[Any, dict[tuple[int, int], Any]]:
    """Declare Scan with a part Tile (an internal longblob and a blob@src); fill three scans.

    Scan 1 holds ``tiles`` tiles of ``tile_size`` bytes each; scans 0 and 2 hold one
    small tile each.
    """
    import datajoint as dj

    schema = source_schema(world)

    @schema
    class Scan(dj.Manual):
        definition = """
        scan_id : int
        """

        class Tile(dj.Part):
            definition = """
            -> master
            tile_id : int
            ---
            pixels : longblob
            raw : blob@src
            """

    rng = np.random.default_rng(8)
    sent = {}
    for scan, count, size in ((0, 1, 100), (1, tiles, tile_size), (2, 1, 100)):
        Scan.insert1({"scan_id": scan})
        for tile in range(count):
            sent[scan, tile] = (rng.integers(0, 255, size, dtype=np.uint8), rng.normal(size=4))
            Scan.Tile.insert1(dict(scan_id=scan, tile_id=tile, pixels=sent[scan, tile][0],
                                   raw=sent[scan, tile][1]))  # fmt: skip
    return Scan, sent


def link_scans(world: World, **kwargs: Any) -> Any:
    from link import link

    @link(f"{world.source.host}:{world.source.port}", world.src_schema, world.out_schema,
          "Outbound", world.local_schema, stores={"src": "dst"}, **kwargs)  # fmt: skip
    class Scan:
        pass

    return Scan


def assert_tiles_arrived(Scan: Any, sent: dict[tuple[int, int], Any]) -> None:
    got = Scan.Tile().fetch("scan_id", "tile_id", "pixels", "raw", as_dict=True)
    assert sorted((r["scan_id"], r["tile_id"]) for r in got) == sorted(sent)
    for row in got:
        pixels, raw = sent[row["scan_id"], row["tile_id"]]
        np.testing.assert_array_equal(row["pixels"], pixels)
        np.testing.assert_array_equal(row["raw"], raw)


@pytest.mark.parametrize("world", ["file"], indirect=True)
def test_a_master_with_more_part_data_than_the_budget_streams_its_parts(world: World) -> None:
    _, sent = build_scans(world, tiles=30, tile_size=40 * KIB)  # scan 1: 1.2 MiB of tiles
    Scan = link_scans(world, batch_bytes=128 * KIB)
    linked = Scan._core.linked
    inserts: list[int] = []

    def note(sql: str, params: Any) -> None:
        if sql.startswith("INSERT INTO") and "__tile" in sql:
            inserts.append(sum(len(v) for row in params for v in row if isinstance(v, bytes)))

    linked.local_db.tracer = note
    result = Scan().source.pull()
    assert (result.rows_copied, result.part_rows_copied) == (3, 32)
    assert_tiles_arrived(Scan, sent)
    assert len(world.objects("dst", f"{world.local_schema}/")) == 32
    # Scan 1's 1.2 MiB of tiles went in statements of about the budget (one tile over at
    # most), never in one piece.
    assert len(inserts) >= 10, inserts
    assert max(inserts) <= 128 * KIB + 41 * KIB, inserts


@pytest.mark.parametrize("world", ["file"], indirect=True)
def test_a_part_row_that_changes_while_its_key_streams_commits_nothing(world: World) -> None:
    _, sent = build_scans(world, tiles=12, tile_size=40 * KIB)
    Scan = link_scans(world, batch_bytes=128 * KIB)
    linked = Scan._core.linked
    table = f"`{world.src_schema}`.`scan__tile`"
    (other,) = world.query("source", f"SELECT raw FROM {table} WHERE scan_id = 2")[0]
    changed = []

    def update_on_the_source(sql: str, params: Any) -> None:
        # The moment scan 1's tile rows start streaming, another client points tile 5
        # at scan 2's object, which this batch did not copy.
        streaming = sql.startswith("SELECT `scan_id`, `tile_id`, `pixels`, `raw`")
        if streaming and not changed and 1 in (params or ()):
            admin = connect(world.source)
            admin.execute(f"UPDATE {table} SET raw = %s WHERE scan_id = 1 AND tile_id = 5",
                          (other,))  # fmt: skip
            admin.close()
            changed.append(True)

    linked.source_db.tracer = update_on_the_source
    with pytest.raises(LinkError, match="changed on the source during the pull"):
        Scan().source.pull()
    assert changed
    assert sorted(Scan().fetch("scan_id")) == [0, 2], "scan 1 committed nothing"
    assert not len(Scan.Tile() & "scan_id = 1")
    linked.source_db.tracer = None
    Scan().source.pull()  # the next pull copies the new reference's object too
    sent[1, 5] = (sent[1, 5][0], sent[2, 0][1])
    assert_tiles_arrived(Scan, sent)
