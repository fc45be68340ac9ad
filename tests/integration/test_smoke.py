"""End-to-end plumbing: DataJoint on a private MariaDB with externally stored data."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from djbridge.config import DatabaseServer, StorageServer
from djbridge.mysql import connect
from tests.conftest import dj_connection, s3_store_spec


def declare_and_round_trip(
    server: DatabaseServer, schema_name: str, tmp_path: Path, store: str
) -> list[str]:
    import datajoint as dj

    schema = dj.Schema(schema_name, connection=dj_connection(server))

    @schema
    class Recording(dj.Manual):
        definition = f"""
        recording_id : int
        ---
        trace : blob@{store}
        notes : attach@{store}
        """

    rng = np.random.default_rng(7)
    sent: dict[int, tuple[Any, bytes]] = {}
    for rid in range(3):
        trace = rng.normal(size=(50, rid + 2))
        body = rng.bytes(3000 + rid)
        path = tmp_path / f"notes-{rid}.bin"
        path.write_bytes(body)
        Recording.insert1({"recording_id": rid, "trace": trace, "notes": str(path)})
        sent[rid] = (trace, body)

    download = tmp_path / "download"
    download.mkdir()
    for row in Recording.fetch(as_dict=True, download_path=str(download), order_by="recording_id"):
        trace, body = sent[row["recording_id"]]
        np.testing.assert_array_equal(row["trace"], trace)
        assert Path(row["notes"]).read_bytes() == body
        assert Path(row["notes"]).name == f"notes-{row['recording_id']}.bin"
    db = connect(server)
    try:
        hashes = db.query(
            f"SELECT hash, size, attachment_name FROM `{schema_name}`.`~external_{store}`"
        )
    finally:
        db.close()
    assert len(hashes) == 6  # three blobs, three attachments
    return [h.hex() for h, _, _ in hashes]


def test_round_trip_with_s3_store(
    source_server: DatabaseServer,
    s3_a: StorageServer,
    bucket_factory: Callable[[StorageServer], str],
    schema_factory: Callable[..., str],
    dj_stores: dict[str, Any],
    tmp_path: Path,
) -> None:
    from djbridge.stores import open_store

    bucket = bucket_factory(s3_a)
    dj_stores["smoke"] = s3_store_spec(s3_a, bucket, "dj/smoke")
    schema = schema_factory("source")
    hashes = declare_and_round_trip(source_server, schema, tmp_path, "smoke")
    store = open_store(s3_a, bucket=bucket, location="dj/smoke")
    listed = {o.key.rsplit("/", 1)[1].split(".", 1)[0] for o in store.iter_objects(f"{schema}/")}
    assert listed == set(hashes)


def test_round_trip_with_file_store(
    source_server: DatabaseServer,
    schema_factory: Callable[..., str],
    dj_stores: dict[str, Any],
    tmp_path: Path,
    file_root: Path,
) -> None:
    dj_stores["smokefile"] = {"protocol": "file", "location": str(file_root)}
    schema = schema_factory("source")
    hashes = declare_and_round_trip(source_server, schema, tmp_path, "smokefile")
    on_disk = [p for p in (file_root / schema).rglob("*") if p.is_file()]
    assert {p.name.split(".", 1)[0] for p in on_disk} == set(hashes)
    blob = next(p for p in on_disk if "." not in p.name)
    assert hashlib.md5(blob.read_bytes()).hexdigest() == blob.name


def test_source_requires_tls_and_local_is_plain(
    source_server: DatabaseServer, local_server: DatabaseServer
) -> None:
    for server, expected in ((source_server, True), (local_server, False)):
        db = connect(server)
        try:
            cipher = db.query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")[0][1]
        finally:
            db.close()
        assert bool(cipher) is expected, server.name


@pytest.mark.parametrize("tls", [True, None])
def test_tls_preference_falls_back_to_plain(local_server: DatabaseServer, tls: bool | None) -> None:
    from dataclasses import replace

    from djbridge.errors import DatabaseError

    server = replace(local_server, use_tls=tls)
    if tls:
        with pytest.raises(DatabaseError, match="SSL"):
            connect(server)
    else:
        db = connect(server)
        assert db.query("SELECT 1") == [(1,)]
        db.close()
