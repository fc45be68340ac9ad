"""Benchmark dj-cleaner against the bare floor and the original datajoint-cleaner 0.1.

For each backend (a file store and an S3 store on a private moto endpoint) and each
contestant, a fresh, identical store of N objects is built under one schema
folder; half of them are referenced by rows of ``~external_bench`` on a private
database server (Oracle MySQL 9.7 by default, or MariaDB 10.11; inserted in bulk with
SQL), half are orphans. Each contestant runs as a
child process and is timed from start to exit; its peak memory is the child's
``ru_maxrss``. Every contestant must leave exactly the N/2 referenced objects.

* ``djbridge``: the installed ``dj-cleaner`` with ``--min-age 0``;
* ``floor``: the same store client, the hash set, a listing and bulk deletes,
  with no checks at all (no shape test, no re-check, no spool);
* ``original``: ``datajoint-cleaner==0.1`` from PyPI in a throwaway venv (S3 only;
  it does not support file stores).

    .venv/bin/python -m bench.cleaner                 # N = 100,000, both backends, MySQL 9.7
    .venv/bin/python -m bench.cleaner --n 20000 --backends s3 --repeats 3 --server mariadb
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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from djbridge.config import DatabaseServer, StorageServer
from djbridge.layout import object_key, tracking_table
from djbridge.mysql import Database, connect, quote
from djbridge.sandbox import SERVER_KINDS, MotoS3
from djbridge.stores import Store, open_store
from djbridge.stores.s3 import make_client

SCHEMA = "bench_clean"
STORE = "bench"
LOCATION = "bench"
PAYLOAD = b"x" * 64
ROOT = Path(__file__).resolve().parents[1]  # the checkout, so children find ``bench``
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
    """One contestant's run on one backend, in one section of the benchmark."""

    backend: str
    contestant: str
    seconds: float
    peak_mb: float
    remaining: int
    note: str = ""
    section: str = "speed"
    moto_cpu: float | None = None  # CPU seconds the moto server spent during the run


@dataclass(frozen=True)
class Setup:
    """Where a contestant runs: its (possibly proxied) servers, store and schema."""

    db: DatabaseServer
    storage: StorageServer
    bucket: str
    location: str
    schema: str = SCHEMA


def digest(i: int) -> bytes:
    return hashlib.md5(str(i).encode()).digest()


def key_of(i: int, schema: str = SCHEMA) -> str:
    return object_key(schema, digest(i))


def create_tracking_table(db: Database, schema: str) -> str:
    """Create ``schema`` and its empty ``~external_bench``; return the quoted table."""
    db.execute(f"CREATE DATABASE IF NOT EXISTS {quote(schema)}")
    table = quote(schema, tracking_table(STORE))
    db.execute(EXTERNAL_DDL.format(table=table))
    return table


def seed_database(server: DatabaseServer, n: int, schema: str = SCHEMA) -> None:
    """Track the even-numbered objects of ``0 .. n-1`` in ``schema`` (the odd ones are orphans)."""
    db = connect(server)
    try:
        table = create_tracking_table(db, schema)
        rows = [(digest(i), len(PAYLOAD)) for i in range(0, n, 2)]
        for start in range(0, len(rows), 5000):
            db.executemany(
                f"INSERT INTO {table} (hash, size) VALUES (%s, %s)", rows[start : start + 5000]
            )
    finally:
        db.close()


def seed_store(store: Store, n: int, threads: int, key: Callable[[int], str] = key_of) -> None:
    def put(chunk: range) -> None:
        for i in chunk:
            store.put(key(i), PAYLOAD)

    step = max(1, n // (threads * 8))
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, [range(s, min(n, s + step)) for s in range(0, n, step)]))


def run_child(argv: list[str], cwd: Path | None = None) -> tuple[float, float, str]:
    """Run a child process; return (seconds, peak RSS in MB, stderr tail)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
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
    schema = spec.get("schema", SCHEMA)
    table = quote(schema, tracking_table(STORE))
    live = {bytes(h) for (h,) in db.stream(f"SELECT hash FROM {table}")}
    batch: list[str] = []
    for obj in store.iter_objects(f"{schema}/"):
        if bytes.fromhex(obj.key.rpartition("/")[2]) not in live:
            batch.append(obj.key)
    for start in range(0, len(batch), 1000):
        store.delete_many(batch[start : start + 1000])
    db.close()


def toml_for(setup: Setup) -> str:
    db, storage = setup.db, setup.storage
    kind = "file" if storage.kind == "file" else "minio"
    text = (
        f'[database_servers.bench]\nhost = "{db.host}:{db.port}"\nuser = "{db.user}"\n'
        f'password = "{db.password}"\nuse_tls = {str(bool(db.use_tls)).lower()}\n\n'
        f"[storage_servers.{kind}.bench]\n"
    )
    if kind == "minio":
        text += (
            f'endpoint = "{storage.endpoint}"\naccess_key = "{storage.access_key}"\n'
            f'secret_key = "{storage.secret_key}"\nsecure = false\n'
        )
    run = (
        f'\n[[cleaning_runs]]\ndatabase_server = "bench"\nschema = "{setup.schema}"\n'
        f'store = "{STORE}"\nstorage_server = "{kind}.bench"\nlocation = "{setup.location}"\n'
    )
    if setup.bucket:
        run += f'bucket = "{setup.bucket}"\n'
    return text + run


def original_toml(setup: Setup) -> str:
    """Return the original's config; it passes host/user/password/port to pymysql.connect."""
    db, storage = setup.db, setup.storage
    return (
        f'[database_servers.bench]\nhost = "{db.host}"\nport = {db.port}\n'
        f'user = "{db.user}"\npassword = "{db.password}"\n\n'
        f'[storage_servers.minio.bench]\nendpoint = "{storage.endpoint}"\n'
        f'access_key = "{storage.access_key}"\nsecret_key = "{storage.secret_key}"\n'
        f'secure = false\n\n[[cleaning_runs]]\ndatabase_server = "bench"\n'
        f'schema = "{setup.schema}"\nstore = "{STORE}"\nstorage_server = "minio.bench"\n'
        f'bucket = "{setup.bucket}"\nlocation = "{setup.location}"\n'
    )


def moto_cpu(s3: MotoS3 | None) -> float | None:
    """Return the CPU seconds (user + system) the moto child has used so far."""
    if s3 is None or s3.process is None:
        return None
    fields = Path(f"/proc/{s3.process.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    """Builds a fresh store per contestant, times it and collects the results."""

    def __init__(self, args: argparse.Namespace, db: DatabaseServer) -> None:
        self.args = args
        self.db = db
        self.work = Path(tempfile.mkdtemp(prefix="djb-bench-cleaner-", dir=args.file_root))
        self.results: list[Result] = []

    def fresh(self, backend: str, s3: MotoS3 | None, name: str, n: int) -> tuple[Store, Setup]:
        """Build a store of ``n`` objects for one contestant; return it and where it is."""
        started = time.perf_counter()
        if backend == "file":
            root = self.work / name
            storage = StorageServer("bench", "file")
            store = open_store(storage, location=str(root))
            setup = Setup(self.db, storage, "", str(root))
        else:
            assert s3 is not None
            bucket = f"bench-{name}"
            s3.make_bucket(bucket)
            store = open_store(s3.server, bucket=bucket, location=LOCATION)
            setup = Setup(self.db, s3.server, bucket, LOCATION)
        seed_store(store, n, self.args.threads if backend == "s3" else 4)
        print(f"  seeded {n} objects for {name} in {time.perf_counter() - started:.1f} s")
        return store, setup

    def argv(self, name: str, setup: Setup, cwd: Path, flags: Sequence[str] = ()) -> list[str]:
        """Write the contestant's configuration into ``cwd``; return its command line."""
        if name.startswith("djbridge"):
            (cwd / "c.toml").write_text(toml_for(setup))
            script = Path(sys.executable).parent / "dj-cleaner"
            return [str(script), "-c", "c.toml", "--min-age", "0", "--no-progress", *flags]
        if name.startswith("floor"):
            spec = {
                "db": asdict(setup.db),
                "storage": asdict(setup.storage),
                "bucket": setup.bucket,
                "location": setup.location,
                "schema": setup.schema,
            }
            return [sys.executable, "-m", "bench.cleaner", "--floor-child", json.dumps(spec)]
        original = original_cleaner()
        if original is None:
            return []
        (cwd / "datajoint-cleaner.toml").write_text(original_toml(setup))
        return [str(original)]

    def contest(
        self,
        section: str,
        backend: str,
        name: str,
        setup: Setup,
        s3: MotoS3 | None,
        store: Store,
        expected: int,
        flags: Sequence[str] = (),
    ) -> Result | None:
        """Run one contestant as a child process and record its time, memory and result."""
        cwd = Path(tempfile.mkdtemp(prefix=f"cwd-{backend}-{name}-", dir=self.work))
        argv = self.argv(name, setup, cwd, flags)
        if not argv:
            return None
        cpu_before = moto_cpu(s3)
        seconds, peak, _ = run_child(argv, cwd)
        cpu_after = moto_cpu(s3)
        moto = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
        remaining = count(store, setup.schema)
        note = "" if remaining == expected else f"WRONG RESULT (expected {expected} left)"
        result = Result(backend, name, seconds, peak, remaining, note, section, moto)
        self.results.append(result)
        shown = f"  moto {moto:6.2f} s CPU" if moto is not None else ""
        print(f"  {name:<20} {seconds:8.2f} s  peak {peak:7.1f} MB  left {remaining}{shown} {note}")
        return result

    def run(self, backend: str, s3: MotoS3 | None) -> None:
        """Run the speed section: each contestant on its own fresh store of N objects.

        On S3, ``djbridge`` (the default ``--jobs``) runs beside ``djbridge-jobs1``
        (``--jobs 1``), and the whole field runs ``--repeats`` times, alternating, so
        that the ratios come from one run.
        """
        names = ["djbridge", "floor"]
        if backend == "s3":
            names.insert(1, "djbridge-jobs1")
            if not self.args.no_original:
                names.append("original")
        n = self.args.n
        for _ in range(self.args.repeats):
            for name in names:
                store, setup = self.fresh(backend, s3, f"{backend}-{name}", n)
                flags = ["--jobs", "1"] if name == "djbridge-jobs1" else []
                self.contest("speed", backend, name, setup, s3, store, n // 2 + n % 2, flags)
                discard(store, setup, s3)

    def report(self) -> None:
        """Print the table of results and the ratios, section by section."""
        print(f"\nthe file stores lived in {self.work}")
        for section in dict.fromkeys(r.section for r in self.results):
            rows = [r for r in self.results if r.section == section]
            print(f"\n[{section}]")
            print(f"{'backend':<16}{'contestant':<21}{'seconds':>9}{'peak MB':>9}{'left':>9}  moto")
            for r in rows:
                line = f"{r.backend:<16}{r.contestant:<21}{r.seconds:>9.2f}{r.peak_mb:>9.1f}"
                moto = f"{r.moto_cpu:6.2f}" if r.moto_cpu is not None else "     -"
                print(f"{line}{r.remaining:>9}  {moto} {r.note}")
            for backend in dict.fromkeys(r.backend for r in rows):
                print(
                    f"{backend}: " + ratios({r.contestant: r for r in rows if r.backend == backend})
                )


def ratios(results: dict[str, Result]) -> str:
    """Return each djbridge run's time (and peak memory) relative to the floor and the original."""
    out = []
    for name, result in results.items():
        for peer in ("floor", "original"):
            if name.startswith("djbridge") and peer in results:
                other = results[peer]
                out.append(
                    f"{name}/{peer} = {result.seconds / other.seconds:.2f} "
                    f"(peak {result.peak_mb / other.peak_mb:.2f})"
                )
    return ", ".join(out)


def db_version(server: DatabaseServer) -> str:
    """Return the server's ``VERSION()``, for the report."""
    db = connect(server)
    try:
        return str(db.query("SELECT VERSION()")[0][0])
    finally:
        db.close()


def count(store: Store, schema: str = SCHEMA) -> int:
    """Count the objects left in the schema folder."""
    return sum(1 for _ in store.iter_objects(f"{schema}/"))


def discard(store: Store, setup: Setup, s3: MotoS3 | None) -> None:
    """Remove a contestant's store so the next one starts on an equally loaded server."""
    if setup.storage.kind == "file":
        shutil.rmtree(setup.location, ignore_errors=True)
        return
    assert s3 is not None
    keys = [o.key for o in store.iter_objects("")]
    for start in range(0, len(keys), 1000):
        store.delete_many(keys[start : start + 1000])
    make_client(s3.server).remove_bucket(setup.bucket)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="objects per store (default 100000)")
    parser.add_argument("--backends", default="file,s3", help="comma-separated: file, s3")
    parser.add_argument("--threads", type=int, default=16, help="seeding threads for S3")
    parser.add_argument("--file-root", default="/dev/shm" if Path("/dev/shm").is_dir() else None)
    parser.add_argument("--no-original", action="store_true", help="skip datajoint-cleaner 0.1")
    parser.add_argument(
        "--sections", default="speed", help="comma-separated: speed, memory, latency"
    )
    parser.add_argument("--memory-rows", type=int, default=2_000_000, help="tracking rows")
    parser.add_argument("--memory-objects", type=int, default=1_000_000, help="file objects")
    parser.add_argument("--latency-n", type=int, default=20_000, help="S3 objects")
    parser.add_argument("--latency-rtt-ms", default="20,200", help="round trips to add")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs of the field")
    parser.add_argument(
        "--server", choices=sorted(SERVER_KINDS), default="mysql",
        help="the database server: Oracle MySQL 9.7 (default) or MariaDB 10.11",
    )  # fmt: skip
    parser.add_argument("--floor-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_child:
        floor_child(json.loads(args.floor_child))
        return 0
    from bench import cleaner_scale

    sections = [s for s in args.sections.split(",") if s]
    backends = [b for b in args.backends.split(",") if b]
    # TLS on, as a lab's server has it: datajoint-cleaner 0.1 logs in to MySQL 9 over TLS.
    with SERVER_KINDS[args.server]("bench-clean", tls=True) as db, MotoS3("bench-clean-s3") as s3:
        print(f"database server: {args.server} ({db_version(db.server)})")
        bench = Bench(args, db.server)
        try:
            if "speed" in sections:
                seed_database(db.server, args.n)
                for backend in backends:
                    print(f"speed, {backend}, N = {args.n} ({args.n // 2} orphans):")
                    bench.run(backend, s3 if backend == "s3" else None)
            if "memory" in sections:
                cleaner_scale.memory(bench, s3)
            if "latency" in sections:
                cleaner_scale.latency(bench, s3)
            bench.report()
        finally:
            shutil.rmtree(bench.work, ignore_errors=True)
    bad = [r for r in bench.results if r.note]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
