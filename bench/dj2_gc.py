"""Benchmark dj-cleaner against DataJoint 2.3's own ``dj.gc`` on the same 2.x stores.

For each database server (a private PostgreSQL 15 and a private MySQL 9.7), each
store backend (S3 on a private moto endpoint, and a file store) and each size N,
one DataJoint 2.x schema gets N rows with a ``<blob@bench>`` value each, inserted
by real DataJoint 2.3 (``tests/dj2/driver.py`` under ``.venv-dj2``); then half of
the rows are deleted, leaving N/2 orphans. Both contestants clean that same store,
one after the other; before the second, the orphans the first deleted are put back
byte for byte, so each starts from the same state. The workload is the same on
both servers, so the summary sets them side by side.

* ``dj.gc``: a fresh DataJoint 2.3 process runs
  ``dj.gc.GarbageCollector(schema, store="bench").collect(dry_run=False)``;
* ``djbridge``: ``dj-cleaner --min-age 0`` in a fresh process.

Each is timed from process start to exit; peak RSS is the child's own high-water
mark (``VmHWM``, read while it runs: ``ru_maxrss`` would also count the pages of this
parent at the fork). Each (backend, N) gets a bucket or directory of its own. After
each run the benchmark counts the live objects lost: paths
that rows reference and the store no longer holds.

    .venv/bin/python -m bench.dj2_gc                       # N = 5,000 and 20,000
    .venv/bin/python -m bench.dj2_gc --sizes 1000 --backends file --servers mysql
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from djbridge.config import DatabaseServer, StorageServer
from djbridge.pgsandbox import PostgreSQL
from djbridge.sandbox import MotoS3, MySQL
from djbridge.stores import Store, open_store, s3_dj_spec
from djbridge.stores.s3 import make_client
from tests.dj2.client import DRIVER, Driver, dj2_python
from tests.dj2.world import SIDES

ROOT = Path(__file__).resolve().parents[1]
STORE = "bench"
LOCATION = "djroot"
TABLE = "Item"
DEFINITION = "id: int32\n---\nv: <blob@bench>\n"
SERVERS: dict[str, Any] = {
    "postgresql": lambda: PostgreSQL("bench"),
    "mysql": lambda: MySQL("bench", tls=False),
}
"""The private database server of each 2.x backend, started on demand."""


@dataclass
class Result:
    """One contestant's run on one store."""

    contestant: str
    server: str
    backend: str
    n: int
    seconds: float
    peak_rss_mb: float
    deleted: int
    live_lost: int


class PeakRss:
    """Follow a child's ``VmHWM`` in a thread until it exits; :attr:`mb` is the last seen."""

    def __init__(self, process: subprocess.Popen[Any]) -> None:
        self.process = process
        self.mb = 0.0
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        status = Path(f"/proc/{self.process.pid}/status")
        while self.process.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.mb = max(self.mb, int(line.split()[1]) / 1024)
            except OSError:
                break
            time.sleep(0.02)

    def wait(self) -> float:
        """Wait for the child; return its peak RSS in MB."""
        self.process.wait()
        self.thread.join()
        return self.mb


def connect_fields(server: DatabaseServer) -> dict[str, Any]:
    return {
        "backend": server.backend,
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "database": server.database,
    }


def run_dj_gc(
    server: DatabaseServer, spec: dict[str, Any], schema: str
) -> tuple[float, float, int]:
    """Run dj.gc in a fresh DataJoint 2.3 process; return (seconds, peak MB, deleted)."""
    requests = [
        {"op": "connect", "name": "gc", **connect_fields(server)},
        {"op": "store", "conn": "gc", "store": STORE, "spec": spec},
        {"op": "gc", "conn": "gc", "schemas": [schema], "store": STORE, "dry_run": False},
        {"op": "quit"},
    ]
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(dj2_python()), str(DRIVER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    peak_rss = PeakRss(process)
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write("".join(json.dumps(r) + "\n" for r in requests))
    process.stdin.close()
    out = process.stdout.read()
    peak = peak_rss.wait()
    seconds = time.perf_counter() - started
    answers = [json.loads(line) for line in out.splitlines()]
    if not all(a["ok"] for a in answers):
        raise RuntimeError(f"dj.gc failed: {answers}")
    return seconds, peak, int(answers[2]["result"]["deleted"])


def run_djbridge(config: Path) -> tuple[float, float, int]:
    """Run dj-cleaner in a fresh process; return (seconds, peak MB, deleted)."""
    report = config.with_suffix(".json")
    command = [str(ROOT / ".venv" / "bin" / "dj-cleaner"), "--config-file", str(config)]
    command += ["--min-age", "0", "--no-progress", "--report", str(report)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    peak = PeakRss(process).wait()
    seconds = time.perf_counter() - started
    [data] = json.loads(report.read_text())
    if process.returncode != 0:
        raise RuntimeError(f"dj-cleaner failed: {data['errors']}")
    return seconds, peak, int(data["deleted"])


class Arena:
    """One server's and backend's store, its dj.config spec, its dj-cleaner TOML, its schema."""

    def __init__(
        self, backend: str, server: DatabaseServer, s3: StorageServer | None, work: Path
    ) -> None:
        work.mkdir()
        self.backend = backend
        self.server = server
        self.side = SIDES[server.backend]
        self.work = work
        if backend == "s3":
            assert s3 is not None
            self.bucket = f"dj2bench-{os.getpid()}-{int(time.time() * 1000) % 100000}"
            make_client(s3).make_bucket(self.bucket)
            self.spec: dict[str, Any] = s3_dj_spec(s3, self.bucket, LOCATION)
            self.store: Store = open_store(s3, bucket=self.bucket, location=LOCATION)
            storage = (
                f'[storage_servers.s3.moto]\nendpoint = "{s3.endpoint}"\n'
                f'access_key = "{s3.access_key}"\nsecret_key = "{s3.secret_key}"\nsecure = false\n'
            )
            where = f'storage_server = "s3.moto"\nbucket = "{self.bucket}"\nlocation = "{LOCATION}"'
        else:
            root = work / "store"
            root.mkdir()
            self.spec = {"protocol": "file", "location": str(root)}
            self.store = open_store(StorageServer("file", "file"), location=str(root))
            storage = "[storage_servers.file.local]\n"
            where = f'storage_server = "file.local"\nlocation = "{root}"'
        self.toml = (
            f"[database_servers.db]\n{self.side.toml(server)}"
            f'host = "{server.host}:{server.port}"\nuser = "{server.user}"\n'
            f'password = "{server.password}"\nuse_tls = false\n\n{storage}\n[[cleaning_runs]]\n'
            f'datajoint = "2"\ndatabase_server = "db"\nstore = "{STORE}"\n{where}\n'
        )

    def build(self, dj2: Driver, n: int) -> tuple[str, dict[str, bytes]]:
        """Make a schema with n rows, delete half; return it and the orphans' bytes.

        On S3, DataJoint writes the rows and objects through a file store first
        (same keys below the location), and the objects are then uploaded in
        parallel: moto takes a request at a time, and DataJoint's one-by-one
        uploads would dominate the run.
        """
        schema = f"bench{self.backend}{n}"
        conn = f"{self.server.backend}{self.backend}{n}"
        staging = self.work / f"staging{n}"
        staging.mkdir()
        spec = {"protocol": "file", "location": str(staging)} if self.backend == "s3" else self.spec
        dj2.call("connect", name=conn, **connect_fields(self.server))
        dj2.call("store", conn=conn, store=STORE, spec=spec)
        dj2.call("declare", conn=conn, schema=schema, table=TABLE, definition=DEFINITION)
        before = {o.key for o in self.store.iter_objects(f"_hash/{schema}/")}
        dj2.call("bulk", conn=conn, schema=schema, table=TABLE, column="v", start=0, count=n)
        dj2.call("delete", conn=conn, schema=schema, table=TABLE, where=f"id >= {n // 2}")
        if self.backend == "s3":
            files = [p for p in staging.rglob("*") if p.is_file()]
            with ThreadPoolExecutor(16) as pool:
                list(
                    pool.map(
                        lambda p: self.store.put(str(p.relative_to(staging)), p.read_bytes()), files
                    )
                )
        live = self.referenced(schema)
        orphans = [o.key for o in self.store.iter_objects(f"_hash/{schema}/") if o.key not in live]
        assert not before
        assert len(orphans) == n - n // 2, (len(orphans), n)
        with ThreadPoolExecutor(16) as pool:
            data = dict(zip(orphans, pool.map(self.store.get, orphans), strict=True))
        return schema, data

    def referenced(self, schema: str) -> set[str]:
        """Return the paths the schema's rows reference."""
        db = self.side.connect(self.server)
        try:
            rows = db.query(f"SELECT {self.side.path('v')} FROM {self.side.table(schema, 'item')}")
        finally:
            db.close()
        return {str(path) for (path,) in rows}

    def lost(self, schema: str) -> int:
        """Return how many referenced objects the store no longer holds."""
        present = {o.key for o in self.store.iter_objects(f"_hash/{schema}/")}
        return len(self.referenced(schema) - present)

    def restore(self, orphans: dict[str, bytes]) -> None:
        """Put the orphans back, byte for byte."""
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda item: self.store.put(*item), orphans.items()))

    def config(self, schema: str) -> Path:
        """Write the dj-cleaner TOML for the schema; return its path."""
        path = self.work / f"{schema}.toml"
        path.write_text(self.toml.replace('store = "', f'schema = "{schema}"\nstore = "', 1))
        return path


def bench_one(arena: Arena, dj2: Driver, n: int) -> list[Result]:
    schema, orphans = arena.build(dj2, n)
    results = []
    for number, contestant in enumerate(("dj.gc", "djbridge")):
        if number:
            arena.restore(orphans)
        if contestant == "dj.gc":
            seconds, peak, deleted = run_dj_gc(arena.server, arena.spec, schema)
        else:
            seconds, peak, deleted = run_djbridge(arena.config(schema))
        server = arena.server.backend
        lost = arena.lost(schema)
        result = Result(contestant, server, arena.backend, n, seconds, peak, deleted, lost)
        print(
            f"  {contestant:9} {server:10} {arena.backend:4} N={n:6}: {seconds:7.2f} s, "
            f"peak RSS {peak:6.1f} MB, deleted {deleted}, live objects lost {result.live_lost}",
            flush=True,
        )
        results.append(result)
    return results


def summary(results: list[Result]) -> list[str]:
    """Return the summary lines: each store backend and N, the servers side by side."""
    by_key = {(r.contestant, r.server, r.backend, r.n): r for r in results}
    servers = list(dict.fromkeys(r.server for r in results))
    lines = ["summary (dj.gc time / djbridge time), servers side by side:"]
    for backend, n in dict.fromkeys((r.backend, r.n) for r in results):
        cells = []
        for server in servers:
            gc_run = by_key.get(("dj.gc", server, backend, n))
            ours = by_key.get(("djbridge", server, backend, n))
            if gc_run is None or ours is None:
                continue
            cells.append(
                f"{server}: dj.gc {gc_run.seconds:.2f} s, djbridge {ours.seconds:.2f} s, "
                f"ratio {gc_run.seconds / ours.seconds:.1f}x, peak RSS "
                f"{gc_run.peak_rss_mb:.0f} / {ours.peak_rss_mb:.0f} MB, "
                f"lost {gc_run.live_lost} / {ours.live_lost}"
            )
        lines.append(f"  {backend:4} N={n:6}: " + " | ".join(cells))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--backends", nargs="+", default=["s3", "file"], choices=["s3", "file"])
    parser.add_argument(
        "--servers", nargs="+", default=list(SERVERS), choices=list(SERVERS),
        help="the database servers of the 2.x schemas (default: both)",
    )  # fmt: skip
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    results: list[Result] = []
    with ExitStack() as stack:
        started: dict[str, DatabaseServer] = {}
        for name in args.servers:  # one after the other: two starts would contend for 2 cores
            started[name] = stack.enter_context(SERVERS[name]()).server
        moto = stack.enter_context(MotoS3("bench"))
        dj2 = stack.enter_context(Driver())
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="dj2bench-", dir="/dev/shm"))
        dj2.call("ping")
        print(f"DataJoint {dj2.version} (dj.gc) vs djbridge; file stores in {tmp}", flush=True)
        for name, server in started.items():
            for backend in args.backends:
                for n in args.sizes:
                    work = Path(tmp) / f"{name}-{backend}{n}"
                    results += bench_one(Arena(backend, server, moto.server, work), dj2, n)
    print()
    print("\n".join(summary(results)))
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
