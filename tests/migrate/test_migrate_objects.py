"""Must-hold 3 of issue 19: objects in 2.x's own layout, with the source's bytes.

After a run, every ``blob@`` object lies at ``{hash_prefix}/{schema}/{hash}`` of the
destination store with the source's bytes, every ``attach@`` object there as
``name NUL contents``, every ``filepath@`` file at its own relative path; each JSON
holds ``path``, ``store``, ``hash`` and ``size``. dj-cleaner's 2.x run then finds
nothing to delete.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from djbridge.cleaner.cli import main as cleaner_main
from djbridge.layout import DJ2_HASH_PREFIX, dj2_hash_key, object_key
from djbridge.mysql import quote
from tests.dj2.world import SIDES
from tests.migrate.conftest import ONE_SOURCE
from tests.migrate.world import DEST_STORE, MigrationWorld

pytestmark = ONE_SOURCE
BOTH_STORES = pytest.mark.parametrize("store_kind", ["file", "s3"], indirect=True)


def dj2_hash(data: bytes) -> str:
    return base64.b32encode(hashlib.md5(data).digest()).decode().rstrip("=").lower()


def dest_recordings(world: MigrationWorld) -> dict[tuple[int, int], dict[str, Any]]:
    """Return the destination's JSON of every Recording row, by key."""
    table = world.dest_table("main", "recording")
    rows = world.dest_query(f"SELECT subject_id, session_idx, ext, att, fp FROM {table}")
    out = {}
    for subject, session, *values in rows:
        decoded = [json.loads(v) if isinstance(v, str | bytes) else v for v in values]
        out[(int(subject), int(session))] = dict(zip(("ext", "att", "fp"), decoded, strict=True))
    return out


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
    dests = dest_recordings(world)
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


def cleaner_config(world: MigrationWorld) -> Path:
    """A dj-cleaner file with one ``datajoint = "2"`` run per destination schema."""
    server, spec = world.dest, world.dst_stores[DEST_STORE]
    text = (
        f"[database_servers.dest]\n{SIDES[world.backend].toml(server)}"
        f'host = "{server.host}:{server.port}"\nuser = "{server.user}"\n'
        f'password = "{server.password}"\nuse_tls = false\n\n'
    )
    if spec["protocol"] == "s3":
        text += (
            f'[storage_servers.s3.moto]\nendpoint = "{spec["endpoint"]}"\n'
            f'access_key = "{spec["access_key"]}"\nsecret_key = "{spec["secret_key"]}"\n'
            "secure = false\n\n"
        )
        where = f'storage_server = "s3.moto"\nbucket = "{spec["bucket"]}"\n'
    else:
        text += "[storage_servers.file.nas]\n\n"
        where = 'storage_server = "file.nas"\n'
    for schema in world.dest_names.values():
        text += (
            f'[[cleaning_runs]]\ndatajoint = "2"\ndatabase_server = "dest"\n'
            f'schema = "{schema}"\nstore = "{DEST_STORE}"\n{where}'
            f'location = "{spec["location"]}"\n\n'
        )
    path = world.tmp / "cleaner.toml"
    path.write_text(text)
    return path


@BOTH_STORES
def test_dj_cleaner_finds_no_live_object_to_delete_after_a_run(world: MigrationWorld) -> None:
    run = world.cli("run")
    assert run.code == 0, run
    objects = world.dest_objects()
    report_path = world.tmp / "cleaner.json"
    status = cleaner_main([
        "--config-file", str(cleaner_config(world)), "--no-progress", "--dry-run",
        "--min-age", "0", "--report", str(report_path),
    ])  # fmt: skip
    reports = json.loads(report_path.read_text())
    assert status == 0, reports
    assert [r["to_delete"] for r in reports] == [0, 0], reports
    assert reports[0]["referenced"] == 7, reports  # 3 blobs and 4 attachments in main
    assert world.dest_objects() == objects
