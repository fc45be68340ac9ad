"""The bare floor of a migration: the same rows and objects copied with no checks at all.

``bench/migrate.py`` runs this module in a process of its own (``python -m
bench.migrate_floor JOB.json``) on a destination schema whose tables ``dj-migrate`` has
declared beforehand, untimed, as it did for every contestant. Timed, from process start:

1. three SELECTs on the source: every master row, every part row, every
   ``~external_<store>`` row (none for a table without external columns);
2. every object copied into the 2.x layout (``_hash/<schema>/<base32 of the MD5>``) with a
   thread pool and the same store client (``djbridge.stores``): a blob unchanged
   (``Store.copy``: a file copy, or GET and PUT between the two S3 endpoints), an
   attachment streamed with its name and a NUL byte in front (``stream_copy``);
3. the rows inserted with multi-row INSERTs in one transaction, the external columns as
   the JSON DataJoint 2.x reads (``hash``, ``path``, ``schema``, ``store``, ``size``),
   written directly; the blobs' bytes as they are (0.14 and 2.x pack alike).

No batches, no presence checks, no checksums, no resume: that is dj-migrate's work, and
the cost the benchmark measures. Rows are held in memory, all at once.

    python -m bench.migrate_floor JOB.json --threads 16
"""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from djbridge.config import DatabaseServer
from djbridge.layout import dj2_hash_key, object_key, tracking_table
from djbridge.migrate.target import Destination, open_destination
from djbridge.mysql import Database, connect, quote
from djbridge.stores import Store, store_from_dj_spec, stream_copy


def dj2_key(schema: str, digest: bytes) -> tuple[str, str]:
    """Return the 2.x hash (base32 of the MD5) and the object's key in a 2.x store."""
    text = base64.b32encode(digest).decode("ascii").rstrip("=").lower()
    return text, dj2_hash_key(schema, text)


def copy_objects(
    job: dict[str, Any], tracked: Sequence[dict[str, Any]], threads: int
) -> dict[bytes, Any]:
    """Copy every tracked object into the destination store; return its JSON by 0.14 hash."""
    src: Store = store_from_dj_spec(job["source_store"], job["source_spec"])
    dst: Store = store_from_dj_spec(job["dest_store"], job["dest_spec"])
    schema = job["dest_schema"]

    def one(row: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        digest, name = bytes(row["hash"]), row["attachment_name"]
        source_key = object_key(job["source_schema"], digest, name)
        text, key = dj2_key(schema, digest)
        header = name.encode() + b"\0" if name else b""
        if header:
            stream_copy(src, source_key, dst, key, header=header)
        else:
            dst.copy(src, source_key, key)
        meta = {"hash": text, "path": key, "schema": schema, "store": job["dest_store"],
                "size": int(row["size"]) + len(header)}  # fmt: skip
        return digest, meta

    with ThreadPoolExecutor(threads) as pool:
        return dict(pool.map(one, tracked))


def rows_of(db: Database, schema: str, table: str) -> list[dict[str, Any]]:
    """Return every row of one source table, as dicts."""
    return db.query_dicts(f"SELECT * FROM {quote(schema, table)}")


def write_rows(dest: Destination, schema: str, table: str, rows: Sequence[dict[str, Any]],
               objects: dict[bytes, Any], external: Sequence[str]) -> None:  # fmt: skip
    """Insert ``rows``, each external column replaced by its object's JSON."""
    if not rows:
        return
    columns = list(rows[0])
    out = []
    for row in rows:
        values = []
        for column in columns:
            value = row[column]
            if column in external and value is not None:
                value = dest.json_param(objects[bytes(value)])
            values.append(value)
        out.append(values)
    dest.insert(schema, table, columns, out)


def migrate(job: dict[str, Any], threads: int) -> dict[str, int]:
    """Do the whole copy; return what was copied."""
    source = connect(DatabaseServer(**job["source"]))
    dest = open_destination(DatabaseServer(**job["dest"]))
    src_schema, dst_schema = job["source_schema"], job["dest_schema"]
    try:
        tables = job["tables"]  # parents first: [[name, [external columns]], ...]
        read = {name: rows_of(source, src_schema, name) for name, _ in tables}
        tracked: list[dict[str, Any]] = []
        if job.get("source_store"):
            external = quote(src_schema, tracking_table(job["source_store"]))
            tracked = source.query_dicts(f"SELECT hash, size, attachment_name FROM {external}")
        objects = copy_objects(job, tracked, threads)
        with dest.transaction():
            for name, columns in tables:
                write_rows(dest, dst_schema, name, read[name], objects, columns)
        return {"rows": sum(len(r) for r in read.values()), "objects": len(objects)}
    finally:
        source.close()
        dest.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bare-floor contestant of bench/migrate.py.")
    parser.add_argument("job", type=Path, help="job file written by bench/migrate.py")
    parser.add_argument("--threads", type=int, default=8, help="concurrent object copies")
    args = parser.parse_args(argv)
    job = json.loads(args.job.read_text())
    print(json.dumps(migrate(job, args.threads)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
