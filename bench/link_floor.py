"""The bare floor of a link pull: the same rows and objects copied with no link logic.

``bench/link_pull.py`` runs this module as its own process (``python -m
bench.link_floor``), with a job file (see ``link_workload.py``), and compares the
link tools against it. What it does, exactly:

*Setup (not timed):* declare the destination tables ``Recording`` and
``Recording.Channel`` in a fresh local schema with DataJoint, with every external
column on the destination store (this also creates ``~external_<dst>``); open
one connection to each server with djbridge's ``mysql.connect`` (the source as
the link account, both with TLS) and open both stores with ``djbridge.stores``.

*Pull (timed, wall clock):*

1. three SELECTs on the source: all master rows, all part rows, and the
   ``~external_<src>`` rows that the masters reference;
2. copy every referenced object from the source store to the destination store
   with a thread pool (``Store.copy``: a file copy between directories, or GET
   from one S3 endpoint and PUT to the other), keys from DataJoint's layout;
3. one multi-row INSERT of the raw ``~external_<dst>`` rows (hash, size,
   attachment_name, filepath, contents_hash, timestamp);
4. one local transaction with multi-row INSERTs of the raw master rows and then
   the raw part rows (the 16-byte hashes go in as they are: nothing is decoded).

It keeps no state, checks no sizes or checksums, and handles no restriction,
resume or conflict: that is the link's job, and the cost the benchmark measures.

    python -m bench.link_floor JOB.json --threads 16
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.link_driver import RESULT_MARK
from bench.link_workload import TABLE, declare_recording, read_job
from djbridge.config import DatabaseServer
from djbridge.layout import object_key
from djbridge.mysql import Database, connect, quote
from djbridge.stores import Store, store_from_dj_spec

EXTERNAL_COLUMNS = ("hash", "size", "attachment_name", "filepath", "contents_hash", "timestamp")


@dataclass
class Sides:
    """The open connections and stores of one floor run."""

    source: Database
    local: Database
    src_store: Store
    dst_store: Store


def server(name: str, host: str, user: str, password: str) -> DatabaseServer:
    address, _, port = host.rpartition(":")
    return DatabaseServer(name, address, user, password, port=int(port), use_tls=True)


def setup(job: dict[str, Any]) -> Sides:
    """Declare the destination tables and open both servers and both stores."""
    import datajoint as dj

    local = job["local"]
    dj.config["stores"] = {job["dst_store"]: job["dj_stores"][job["dst_store"]]}
    conn = dj.Connection(local["host"], local["user"], local["password"], use_tls=True)
    declare_recording(dj.Schema(job["local_schema"], connection=conn), job["dst_store"])
    conn.close()
    source = server("source", job["source_host"], os.environ["LINK_USER"], os.environ["LINK_PASS"])
    return Sides(
        source=connect(source),
        local=connect(server("local", local["host"], local["user"], local["password"])),
        src_store=store_from_dj_spec(job["src_store"], job["dj_stores"][job["src_store"]]),
        dst_store=store_from_dj_spec(job["dst_store"], job["dj_stores"][job["dst_store"]]),
    )


def read_source(sides: Sides, job: dict[str, Any]) -> tuple[list[dict[str, Any]], ...]:
    """Read master rows, part rows and the referenced ``~external`` rows (three queries)."""
    schema, master = job["source_schema"], TABLE.lower()
    masters = sides.source.query_dicts(f"SELECT * FROM {quote(schema, master)}")
    parts = sides.source.query_dicts(f"SELECT * FROM {quote(schema, master + '__channel')}")
    external = quote(schema, f"~external_{job['src_store']}")
    used = (
        f"SELECT trace FROM {quote(schema, master)} UNION SELECT notes FROM {quote(schema, master)}"
    )
    columns = ", ".join(EXTERNAL_COLUMNS)
    objects = sides.source.query_dicts(f"SELECT {columns} FROM {external} WHERE hash IN ({used})")
    return masters, parts, objects


def copy_objects(
    sides: Sides, job: dict[str, Any], objects: list[dict[str, Any]], threads: int
) -> int:
    """Copy every object store to store, concurrently; return the bytes copied."""

    def one(row: dict[str, Any]) -> int:
        name = row["attachment_name"]
        source_key = object_key(job["source_schema"], row["hash"], name)
        key = object_key(job["local_schema"], row["hash"], name)
        return sides.dst_store.copy(sides.src_store, source_key, key)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return sum(pool.map(one, objects))


def insert_rows(db: Database, schema: str, table: str, rows: Sequence[dict[str, Any]]) -> None:
    """Insert raw rows with one multi-row INSERT (PyMySQL batches ``executemany``)."""
    if not rows:
        return
    columns = list(rows[0])
    names = ", ".join(quote(c) for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    sql = f"INSERT INTO {quote(schema, table)} ({names}) VALUES ({marks})"
    db.executemany(sql, [tuple(row[c] for c in columns) for row in rows])


def pull(sides: Sides, job: dict[str, Any], threads: int) -> dict[str, Any]:
    """Do the timed work: read, copy objects, insert tracking rows, insert rows."""
    clock = [time.perf_counter()]
    masters, parts, objects = read_source(sides, job)
    clock.append(time.perf_counter())
    copied = copy_objects(sides, job, objects, threads)
    clock.append(time.perf_counter())
    schema, master = job["local_schema"], TABLE.lower()
    insert_rows(sides.local, schema, f"~external_{job['dst_store']}", objects)
    with sides.local.transaction():
        insert_rows(sides.local, schema, master, masters)
        insert_rows(sides.local, schema, master + "__channel", parts)
    clock.append(time.perf_counter())
    read_s, copy_s, insert_s = (b - a for a, b in zip(clock, clock[1:], strict=False))
    return {
        "read_s": read_s,
        "copy_s": copy_s,
        "insert_s": insert_s,
        "rows": len(masters),
        "parts": len(parts),
        "objects": len(objects),
        "bytes": copied,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bare-floor contestant of bench/link_pull.py.")
    parser.add_argument("job", help="job file written by bench/link_pull.py")
    parser.add_argument("--threads", type=int, default=16, help="concurrent object copies")
    args = parser.parse_args(argv)
    job = read_job(args.job)
    started = time.perf_counter()
    sides = setup(job)
    ready = time.perf_counter()
    window = [time.monotonic()]  # as bench/link_driver.py reports it
    counts = pull(sides, job, args.threads)
    window.append(time.monotonic())
    done = time.perf_counter()
    sides.source.close()
    sides.local.close()
    result = {"setup_s": ready - started, "pull_s": done - ready, "pull_window": window, **counts}
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
