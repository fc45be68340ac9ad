"""The cleaner benchmark at scale: memory with millions of rows, and time over a slow network.

Two sections of ``python -m bench.cleaner``, kept here so that module stays readable:

* ``memory``: ``--memory-rows`` tracking rows (2,000,000 by default, bulk-filled in
  SQL by ``bench/seqrows.py``, on MariaDB and MySQL alike) against a file store in
  ``/dev/shm`` holding ``--memory-objects`` objects (half of them orphans), dry run
  and real run; and the same rows against a small S3 store, where datajoint-cleaner
  0.1 can run too. Peak RSS is what matters here: djbridge streams both sides, the
  floor and the original hold every hash in memory.
* ``latency``: ``--latency-n`` S3 objects (half orphans), with the latency proxy in
  front of the S3 endpoint and the database at each of ``--latency-rtt-ms``, for
  djbridge with its default ``--jobs`` (by the measured round trip) and with
  ``--jobs 1``, and for the serial floor. The moto
  column is the CPU time moto itself spent, which bounds every contestant here.

    .venv/bin/python -m bench.cleaner --sections memory,latency
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

from bench.cleaner import (
    LOCATION,
    PAYLOAD,
    Bench,
    Setup,
    create_tracking_table,
    discard,
    key_of,
    seed_database,
    seed_store,
)
from bench.latency_proxy import start_proxy
from bench.seqrows import hash_of, hash_sql, in_chunks
from djbridge.config import StorageServer
from djbridge.layout import object_key
from djbridge.mysql import connect
from djbridge.sandbox import MotoS3
from djbridge.stores import open_store

MEMORY_SCHEMA = "bench_mem"
LATENCY_SCHEMA = "bench_lat"


def seq_digest(i: int) -> bytes:
    """Return the hash that :func:`seed_rows` gives row ``i`` on the server."""
    return hash_of(f"x{i}")


def seed_rows(bench: Bench, rows: int) -> None:
    """Fill ``bench_mem.~external_bench`` with ``rows`` rows, 100,000 a statement."""
    db = connect(bench.db)
    try:
        table = create_tracking_table(db, MEMORY_SCHEMA)
        digest, size = hash_sql("CONCAT('x', seq)"), len(PAYLOAD)
        sql = f"INSERT INTO {table} (hash, size) SELECT {digest}, {size} FROM {{numbers}} AS s"
        in_chunks(db, sql, 1, rows)
    finally:
        db.close()


def write_files(root: Path, numbers: range) -> None:
    """Write one object per number straight into a file store directory."""
    for i in numbers:
        path = root / object_key(MEMORY_SCHEMA, seq_digest(i))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(PAYLOAD)


def memory(bench: Bench, s3: MotoS3) -> None:
    """Run the memory section: millions of rows, on a file store and on a small S3 store."""
    rows, objects = bench.args.memory_rows, bench.args.memory_objects
    started = time.perf_counter()
    seed_rows(bench, rows)
    half = objects // 2
    live, orphans = range(1, half + 1), range(rows + 1, rows + 1 + half)
    root = bench.work / "memory-store"
    write_files(root, live)
    write_files(root, orphans)
    seeded = time.perf_counter() - started
    print(f"memory: {rows} rows, {objects} file objects, seeded in {seeded:.0f} s")
    storage = StorageServer("bench", "file")
    store = open_store(storage, location=str(root))
    setup = Setup(bench.db, storage, "", str(root), MEMORY_SCHEMA)
    backend = f"file {rows // 1000}k rows"
    bench.contest(
        "memory", backend, "djbridge --dry-run", setup, None, store, objects, ["--dry-run"]
    )
    bench.contest("memory", backend, "djbridge", setup, None, store, half)
    write_files(root, orphans)
    bench.contest("memory", backend, "floor", setup, None, store, half)
    shutil.rmtree(root, ignore_errors=True)
    small = 2000
    backend = f"s3 {rows // 1000}k rows"
    for name in ("djbridge", "original", "floor"):
        bucket = f"bench-mem-{name}"
        s3.make_bucket(bucket)
        s3_store = open_store(s3.server, bucket=bucket, location=LOCATION)
        numbers = [*range(1, small // 2 + 1), *range(rows + 1, rows + 1 + small // 2)]
        for i in numbers:
            s3_store.put(object_key(MEMORY_SCHEMA, seq_digest(i)), PAYLOAD)
        s3_setup = Setup(bench.db, s3.server, bucket, LOCATION, MEMORY_SCHEMA)
        bench.contest("memory", backend, name, s3_setup, s3, s3_store, small // 2)
        discard(s3_store, s3_setup, s3)


def latency(bench: Bench, s3: MotoS3) -> None:
    """Run the latency section: S3 through the proxy at each round-trip time."""
    n = bench.args.latency_n
    seed_database(bench.db, n, LATENCY_SCHEMA)
    bucket = "bench-latency"
    s3.make_bucket(bucket)
    store = open_store(s3.server, bucket=bucket, location=LOCATION)

    def key(i: int) -> str:
        return key_of(i, LATENCY_SCHEMA)

    seed_store(store, n, bench.args.threads, key)
    orphans = [i for i in range(n) if i % 2]
    rtts = [0.0] + [float(ms) for ms in bench.args.latency_rtt_ms.split(",") if ms]
    for rtt in rtts:
        print(f"latency: {n} S3 objects, +{rtt:g} ms per round trip")
        stops = []
        db, storage = bench.db, s3.server
        if rtt:
            db_host, db_port, stop_db = start_proxy(db.host, db.port, rtt / 2000)
            s3_host, _, s3_port = storage.endpoint.rpartition(":")
            proxy_host, proxy_port, stop_s3 = start_proxy(s3_host, int(s3_port), rtt / 2000)
            stops = [stop_db, stop_s3]
            db = replace(db, host=db_host, port=db_port)
            storage = replace(storage, endpoint=f"{proxy_host}:{proxy_port}")
        setup = Setup(db, storage, bucket, LOCATION, LATENCY_SCHEMA)
        backend = f"s3+{rtt:g}ms"
        try:
            for name, flags in (
                ("djbridge", []),  # the default: key ranges by the measured round trip
                ("djbridge --jobs 1", ["--jobs", "1"]),
                ("floor", []),
            ):
                bench.contest("latency", backend, name, setup, s3, store, n - len(orphans), flags)
                for i in orphans:
                    store.put(key(i), PAYLOAD)
        finally:
            for stop in stops:
                stop()
    discard(store, Setup(bench.db, s3.server, bucket, LOCATION, LATENCY_SCHEMA), s3)
    default = {r.backend: r.seconds for r in bench.results if r.contestant == "djbridge"}
    serial = {r.backend: r.seconds for r in bench.results if r.contestant == "djbridge --jobs 1"}
    for rtt in rtts[1:]:
        where = f"s3+{rtt:g}ms"
        print(
            f"latency: djbridge at +{rtt:g} ms / direct = {default[where] / default['s3+0ms']:.2f}"
            f", / its --jobs 1 = {default[where] / serial[where]:.2f}"
        )
