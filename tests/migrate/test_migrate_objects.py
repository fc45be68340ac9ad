"""Must-hold 3 of issue 19: objects in 2.x's own layout, with the source's bytes.

After a run, every ``blob@`` object lies at ``{hash_prefix}/{schema}/{hash}`` of the
destination store with the source's bytes, every ``attach@`` object there as
``name NUL contents``, every ``filepath@`` file at its own relative path; each JSON
holds ``path``, ``store``, ``hash`` and ``size``. dj-cleaner's 2.x run then finds
nothing to delete. A blob that 0.11 left at its own ``filepath`` gets its 2.x hash from
the contents, never from the path. A source object whose bytes no longer match its
hash fails its table, and no destination row points at it.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from djbridge.cleaner.cli import main as cleaner_main
from djbridge.layout import DJ2_HASH_PREFIX, dj2_hash_key, object_key
from djbridge.mysql import quote
from tests.migrate.compare import assert_same, conversions, fetch_destination, fetch_source
from tests.migrate.conftest import ONE_SOURCE
from tests.migrate.world import DEST_STORE, SOURCE_STORE, MigrationWorld

pytestmark = ONE_SOURCE
BOTH_STORES = pytest.mark.parametrize("store_kind", ["file", "s3"], indirect=True)


def dj2_hash(data: bytes) -> str:
    return base64.b32encode(hashlib.md5(data).digest()).decode().rstrip("=").lower()


def source_objects(world: MigrationWorld) -> dict[tuple[int, int], dict[str, tuple[str, bytes]]]:
    """Return each source Recording row's objects as ``{column: (name or path, bytes)}``."""
    schema = world.schemas["main"]
    tracking = {
        bytes(h): (a, f)
        for h, a, f in world.source_query(
            f"SELECT hash, attachment_name, filepath FROM {quote(schema, '~external_raw')}"
        )
    }
    store = world.source_store()
    out: dict[tuple[int, int], dict[str, tuple[str, bytes]]] = {}
    query = f"SELECT subject_id, session_idx, ext, att, fp FROM {quote(schema, 'recording')}"
    for subject, session, *hashes in world.source_query(query):
        row = {}
        for column, digest in zip(("ext", "att", "fp"), hashes, strict=True):
            if digest is None:
                continue
            attachment, filepath = tracking[bytes(digest)]
            key = object_key(schema, bytes(digest), attachment, filepath=filepath)
            row[column] = (attachment or filepath or "", store.get(key))
        out[(int(subject), int(session))] = row
    return out


@BOTH_STORES
def test_objects_land_in_2x_layout_with_the_same_bytes(world: MigrationWorld) -> None:
    run = world.cli("run")
    assert run.code == 0, run
    dest_schema = world.dest_names["main"]
    store = world.dest_store()
    sources = source_objects(world)
    dests = world.dest_recordings()
    assert dests.keys() == sources.keys()
    for key, objects in sources.items():
        dest = dests[key]
        assert dest["fp"] is None if "fp" not in objects else dest["fp"] is not None, dest
        for column, (name, data) in objects.items():
            meta = dest[column]
            assert {"path", "store", "size"} <= set(meta), meta
            assert meta["store"] == DEST_STORE, meta
            if column == "fp":  # the same relative path, the same bytes
                assert meta["path"] == name and store.get(name) == data, meta
                assert int(meta["size"]) == len(data), meta
                continue
            stored = data if column == "ext" else name.encode() + b"\0" + data
            assert meta["hash"] == dj2_hash(stored), (column, meta)
            assert meta["path"] == dj2_hash_key(dest_schema, meta["hash"]), meta
            assert meta["path"].startswith(f"{DJ2_HASH_PREFIX}/{dest_schema}/")
            assert store.get(meta["path"]) == stored, (column, meta)
            assert int(meta["size"]) == len(stored), meta


@BOTH_STORES
def test_dj_cleaner_finds_no_live_object_to_delete_after_a_run(world: MigrationWorld) -> None:
    run = world.cli("run")
    assert run.code == 0, run
    objects = world.dest_objects()
    report_path = world.tmp / "cleaner.json"
    status = cleaner_main([
        "--config-file", str(world.cleaner_config()), "--no-progress", "--dry-run",
        "--min-age", "0", "--report", str(report_path),
    ])  # fmt: skip
    reports = json.loads(report_path.read_text())
    assert status == 0, reports
    assert [r["to_delete"] for r in reports] == [0, 0], reports
    assert reports[0]["referenced"] == 7, reports  # 3 blobs and 4 attachments in main
    assert world.dest_objects() == objects


def test_a_0_11_era_blob_takes_its_hash_from_contents_hash(world: MigrationWorld) -> None:
    """A blob migrated from 0.11 lies at ``filepath``; its ``hash`` is the MD5 of that path."""
    schema = world.schemas["main"]
    recording, tracking = quote(schema, "recording"), quote(schema, "~external_raw")
    where = "WHERE subject_id = 1 AND session_idx = 1"
    [(digest,)] = world.source_query(f"SELECT ext FROM {recording} {where}")
    data = world.source_store().get(object_key(schema, bytes(digest)))
    relpath = f"{schema}/legacy/trace-from-0.11.dat"
    world.source_store().put(relpath, data)
    path_hash = hashlib.md5(relpath.encode()).digest()
    world.source_query(
        f"INSERT INTO {tracking} (hash, size, filepath, contents_hash) VALUES (%s, %s, %s, %s)",
        (path_hash, len(data), relpath, hashlib.md5(data).digest()),
    )
    world.source_query(f"UPDATE {recording} SET ext = %s {where}", (path_hash,))
    plan = world.cli("plan")
    run = world.cli("run")
    assert run.code == 0, run
    meta = world.dest_recordings()[(1, 1)]["ext"]
    assert meta["hash"] == dj2_hash(data), meta  # not the hash of the path
    assert meta["path"] == dj2_hash_key(world.dest_names["main"], dj2_hash(data)), meta
    assert world.dest_store().get(meta["path"]) == data
    source, dest = fetch_source(world, ("main",)), fetch_destination(world, ("main",))
    assert_same(world, source, dest, conversions(plan.report))


def test_a_source_object_whose_bytes_do_not_match_its_hash_never_reaches_a_row(
    world: MigrationWorld,
) -> None:
    schema = world.schemas["main"]
    where = "WHERE subject_id = 1 AND session_idx = 1"
    [(digest,)] = world.source_query(f"SELECT ext FROM {quote(schema, 'recording')} {where}")
    world.source_store().put(object_key(schema, bytes(digest)), b"bit rot at the source")
    run = world.cli("run")
    assert run.code == 1, run
    entries = run.tables()
    assert entries[(schema, "recording")]["error"], run
    others = {t: e["error"] for (_, t), e in entries.items() if t != "recording"}
    assert others == dict.fromkeys(others), run
    assert (1, 1) not in world.dest_recordings()
    dest = fetch_destination(world, ("main",))["main"]
    assert not [row for row in dest["recording"]["rows"] if "$error" in row], dest["recording"]


def test_subfolding_and_hash_prefix_of_both_stores_are_honoured(
    unbuilt_world: MigrationWorld,
) -> None:
    world = unbuilt_world
    world.src_stores[SOURCE_STORE]["subfolding"] = (3,)
    world.dst_stores[DEST_STORE].update(subfolding=(2, 2), hash_prefix="blobs")
    world.build()
    plan = world.cli("plan")
    run = world.cli("run")
    assert run.code == 0, run
    store = world.dest_store()
    for row in world.dest_recordings().values():
        for column in ("ext", "att"):
            meta = row[column]
            path = dj2_hash_key(world.dest_names["main"], meta["hash"], (2, 2), "blobs")
            assert meta["path"] == path, meta
            assert dj2_hash(store.get(path)) == meta["hash"]
    source, dest = fetch_source(world, ("main",)), fetch_destination(world, ("main",))
    assert_same(world, source, dest, conversions(plan.report))


def test_a_store_without_a_mapping_keeps_its_name(world: MigrationWorld) -> None:
    text = world.config_text().replace(
        f"[destination_stores.{DEST_STORE}]", "[destination_stores.raw]"
    )
    text = "\n".join(line for line in text.splitlines() if not line.startswith("stores ="))
    plan = world.cli("plan", config=world.config(text, name="same-name.toml"))
    run = world.cli("run", config=world.config(text, name="same-name.toml"))
    assert run.code == 0, run
    for row in world.dest_recordings().values():
        assert row["ext"]["store"] == row["att"]["store"] == SOURCE_STORE, row
    conn = world.connect2()
    world.dj2.call("store", conn=conn, store=SOURCE_STORE, spec=world.dst_stores[DEST_STORE])
    source, dest = fetch_source(world, ("main",)), fetch_destination(world, ("main",))
    assert_same(world, source, dest, conversions(plan.report))
