"""Benchmark dj-cleaner against the bare floor and the original datajoint-cleaner 0.1.

For each backend (a file store and an S3 store on a private moto endpoint) and each
contestant, a fresh, identical store of N objects is built under one schema
folder; half of them are referenced by rows of ``~external_bench`` on a private
MariaDB (inserted in bulk with SQL), half are orphans. Each contestant runs as a
child process and is timed from start to exit; its peak memory is the child's
``ru_maxrss``. Every contestant must leave exactly the N/2 referenced objects.

* ``djbridge``: the installed ``dj-cleaner`` with ``--min-age 0``;
* ``floor``: the same store client, the hash set, a listing and bulk deletes,
  with no checks at all (no shape test, no re-check, no spool);
* ``original``: ``datajoint-cleaner==0.1`` from PyPI in a throwaway venv (S3 only;
  it does not support file stores).

    .venv/bin/python bench/cleaner.py                 # N = 100,000, both backends
    .venv/bin/python bench/cleaner.py --n 2000 --backends file
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from djbridge.config import DatabaseServer, StorageServer
from djbridge.layout import object_key, tracking_table
from djbridge.mysql import connect, quote
from djbridge.sandbox import MariaDB, MotoS3
from djbridge.stores import Store, open_store
from djbridge.stores.s3 import make_client

SCHEMA = "bench_clean"
STORE = "bench"
LOCATION = "bench"
PAYLOAD = b"x" * 64
ORIGINAL_VENV = Path(tempfile.gettempdir()) / "djb-cleaner-orig-venv"
EXTERNAL_DDL = """
CREATE TABLE {table} (
  `hash` binary(16) NOT NULL COMMENT ':uuid:hash of contents',
  `size` bigint unsigned NOT NULL,
  `attachment_name` varchar(255) DEFAULT NULL,
  `filepath` varchar(1000) DEFAULT NULL,
  `contents_hash` binary(16) DEFAULT NULL,
  `timestamp` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (`hash`)
) ENGINE=InnoDB
"""


@dataclass
class Result:
    """One contestant's run on one backend."""

    backend: str
    contestant: str
    seconds: float
    peak_mb: float
    remaining: int
    note: str = ""


def digest(i: int) -> bytes:
    return hashlib.md5(str(i).encode()).digest()


def key_of(i: int) -> str:
    return object_key(SCHEMA, digest(i))


def seed_database(server: DatabaseServer, n: int) -> None:
    db = connect(server)
    try:
        db.execute(f"CREATE DATABASE IF NOT EXISTS {quote(SCHEMA)}")
        table = quote(SCHEMA, tracking_table(STORE))
        db.execute(EXTERNAL_DDL.format(table=table))
        rows = [(digest(i), len(PAYLOAD)) for i in range(0, n, 2)]
        for start in range(0, len(rows), 5000):
            db.executemany(
                f"INSERT INTO {table} (hash, size) VALUES (%s, %s)", rows[start : start + 5000]
            )
    finally:
        db.close()


def seed_store(store: Store, n: int, threads: int) -> None:
    def put(chunk: range) -> None:
        for i in chunk:
            store.put(key_of(i), PAYLOAD)

    step = max(1, n // (threads * 8))
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, [range(s, min(n, s + step)) for s in range(0, n, step)]))


def run_child(argv: list[str], cwd: Path | None = None) -> tuple[float, float, str]:
    """Run a child process; return (seconds, peak RSS in MB, stderr tail)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        err.seek(0)
        tail = err.read().decode(errors="replace")[-600:]
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {tail}")
    return seconds, usage.ru_maxrss / 1024, tail


def floor_child(spec: dict[str, Any]) -> None:
    """Run the bare floor: hash set, listing and bulk delete with the same client, no checks."""
    db_server = DatabaseServer(**spec["db"])
    storage = StorageServer(**spec["storage"])
    store = open_store(storage, bucket=spec["bucket"], location=spec["location"])
    db = connect(db_server)
    table = quote(SCHEMA, tracking_table(STORE))
    live = {bytes(h) for (h,) in db.stream(f"SELECT hash FROM {table}")}
    batch: list[str] = []
    for obj in store.iter_objects(f"{SCHEMA}/"):
        if bytes.fromhex(obj.key.rpartition("/")[2]) not in live:
            batch.append(obj.key)
    for start in range(0, len(batch), 1000):
        store.delete_many(batch[start : start + 1000])
    db.close()


def toml_for(db: DatabaseServer, storage: StorageServer, bucket: str, location: str) -> str:
    kind = "file" if storage.kind == "file" else "minio"
    text = (
        f'[database_servers.bench]\nhost = "{db.host}:{db.port}"\nuser = "{db.user}"\n'
        f'password = "{db.password}"\nuse_tls = false\n\n[storage_servers.{kind}.bench]\n'
    )
    if kind == "minio":
        text += (
            f'endpoint = "{storage.endpoint}"\naccess_key = "{storage.access_key}"\n'
            f'secret_key = "{storage.secret_key}"\nsecure = false\n'
        )
    run = (
        f'\n[[cleaning_runs]]\ndatabase_server = "bench"\nschema = "{SCHEMA}"\n'
        f'store = "{STORE}"\nstorage_server = "{kind}.bench"\nlocation = "{location}"\n'
    )
    if bucket:
        run += f'bucket = "{bucket}"\n'
    return text + run


def original_toml(db: DatabaseServer, storage: StorageServer, bucket: str) -> str:
    """Return the original's config; it passes host/user/password/port to pymysql.connect."""
    return (
        f'[database_servers.bench]\nhost = "{db.host}"\nport = {db.port}\n'
        f'user = "{db.user}"\npassword = "{db.password}"\n\n'
        f'[storage_servers.minio.bench]\nendpoint = "{storage.endpoint}"\n'
        f'access_key = "{storage.access_key}"\nsecret_key = "{storage.secret_key}"\n'
        f'secure = false\n\n[[cleaning_runs]]\ndatabase_server = "bench"\nschema = "{SCHEMA}"\n'
        f'store = "{STORE}"\nstorage_server = "minio.bench"\nbucket = "{bucket}"\n'
        f'location = "{LOCATION}"\n'
    )


def original_cleaner() -> Path | None:
    """Install datajoint-cleaner 0.1 into a throwaway venv once; return its dj-cleaner."""
    script = ORIGINAL_VENV / "bin" / "dj-cleaner"
    if script.exists():
        return script
    try:
        subprocess.run([sys.executable, "-m", "venv", str(ORIGINAL_VENV)], check=True)
        subprocess.run(
            [str(ORIGINAL_VENV / "bin" / "pip"), "install", "-q", "datajoint-cleaner==0.1"],
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, OSError) as err:
        print(f"  original: cannot install datajoint-cleaner==0.1: {err}", file=sys.stderr)
        return None
    return script if script.exists() else None


class Bench:
    """Builds a fresh store per contestant and times it."""

    def __init__(self, args: argparse.Namespace, db: DatabaseServer) -> None:
        self.args = args
        self.db = db
        self.work = Path(tempfile.mkdtemp(prefix="djb-bench-cleaner-", dir=args.file_root))
        self.results: list[Result] = []

    def fresh(
        self, backend: str, s3: MotoS3 | None, name: str
    ) -> tuple[Store, StorageServer, str, str]:
        """Build a store of N objects for one contestant; return it and where it is."""
        n = self.args.n
        started = time.perf_counter()
        if backend == "file":
            root = self.work / name
            storage = StorageServer("bench", "file")
            store = open_store(storage, location=str(root))
            bucket, location = "", str(root)
        else:
            assert s3 is not None
            storage = s3.server
            bucket, location = f"bench-{name}", LOCATION
            s3.make_bucket(bucket)
            store = open_store(storage, bucket=bucket, location=location)
        seed_store(store, n, self.args.threads if backend == "s3" else 4)
        print(f"  seeded {n} objects for {name} in {time.perf_counter() - started:.1f} s")
        return store, storage, bucket, location

    def count(self, store: Store) -> int:
        """Count the objects left in the schema folder."""
        return sum(1 for _ in store.iter_objects(f"{SCHEMA}/"))

    def contestants(self, backend: str) -> list[str]:
        """Return who runs on ``backend`` (the original supports S3 only)."""
        names = ["djbridge", "floor"]
        if backend == "s3" and not self.args.no_original:
            names.append("original")
        return names

    def run(self, backend: str, s3: MotoS3 | None) -> None:
        """Build a fresh store for each contestant on ``backend`` and time it."""
        script = Path(sys.executable).parent / "dj-cleaner"
        for name in self.contestants(backend):
            store, storage, bucket, location = self.fresh(backend, s3, f"{backend}-{name}")
            cwd = self.work / f"cwd-{backend}-{name}"
            cwd.mkdir()
            note = ""
            if name == "djbridge":
                (cwd / "c.toml").write_text(toml_for(self.db, storage, bucket, location))
                argv = [str(script), "-c", "c.toml", "--min-age", "0", "--no-progress"]
            elif name == "floor":
                spec = {
                    "db": asdict(self.db),
                    "storage": asdict(storage),
                    "bucket": bucket,
                    "location": location,
                }
                argv = [sys.executable, __file__, "--floor-child", json.dumps(spec)]
            else:
                original = original_cleaner()
                if original is None:
                    continue
                (cwd / "datajoint-cleaner.toml").write_text(original_toml(self.db, storage, bucket))
                argv = [str(original)]
            seconds, peak, _ = run_child(argv, cwd)
            remaining = self.count(store)
            if remaining != self.args.n // 2 + self.args.n % 2:
                note = "WRONG RESULT"
            self.results.append(Result(backend, name, seconds, peak, remaining, note))
            print(f"  {name:<9} {seconds:8.2f} s  peak {peak:7.1f} MB  left {remaining} {note}")
            self.discard(backend, store, s3, bucket, location)

    def discard(
        self, backend: str, store: Store, s3: MotoS3 | None, bucket: str, location: str
    ) -> None:
        """Remove a contestant's store so the next one starts on an equally loaded server."""
        if backend == "file":
            shutil.rmtree(location, ignore_errors=True)
            return
        assert s3 is not None
        keys = [o.key for o in store.iter_objects("")]
        for start in range(0, len(keys), 1000):
            store.delete_many(keys[start : start + 1000])
        make_client(s3.server).remove_bucket(bucket)

    def report(self) -> None:
        """Print the table of results and the ratios."""
        print(
            f"\nN = {self.args.n} objects ({self.args.n // 2} orphans); file store in {self.work}"
        )
        print(f"{'backend':<8}{'contestant':<11}{'seconds':>9}{'peak MB':>9}{'left':>8}")
        for r in self.results:
            row = f"{r.backend:<8}{r.contestant:<11}{r.seconds:>9.2f}{r.peak_mb:>9.1f}"
            print(f"{row}{r.remaining:>8} {r.note}")
        for backend in sorted({r.backend for r in self.results}):
            times = {r.contestant: r.seconds for r in self.results if r.backend == backend}
            ratios = [f"djbridge/floor = {times['djbridge'] / times['floor']:.2f}"]
            if "original" in times:
                ratios.append(f"djbridge/original = {times['djbridge'] / times['original']:.2f}")
            print(f"{backend}: " + ", ".join(ratios))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="objects per store (default 100000)")
    parser.add_argument("--backends", default="file,s3", help="comma-separated: file, s3")
    parser.add_argument("--threads", type=int, default=16, help="seeding threads for S3")
    parser.add_argument("--file-root", default="/dev/shm" if Path("/dev/shm").is_dir() else None)
    parser.add_argument("--no-original", action="store_true", help="skip datajoint-cleaner 0.1")
    parser.add_argument("--floor-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_child:
        floor_child(json.loads(args.floor_child))
        return 0
    backends = [b for b in args.backends.split(",") if b]
    with MariaDB("bench-clean") as maria:
        seed_database(maria.server, args.n)
        bench = Bench(args, maria.server)
        try:
            for backend in backends:
                print(f"{backend}:")
                if backend == "s3":
                    with MotoS3("bench-clean-s3") as s3:
                        bench.run("s3", s3)
                else:
                    bench.run("file", None)
            bench.report()
        finally:
            shutil.rmtree(bench.work, ignore_errors=True)
    bad = [r for r in bench.results if r.note]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
