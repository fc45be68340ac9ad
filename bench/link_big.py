"""Benchmark: memory and time of a pull with big objects and big rows.

Issue 10 ("link at lab scale") sets two memory targets for the pulling process,
measured here, not in a test: at most 256 MiB peak RSS for

* ``attach``: 2 rows, each with a 1 GiB ``attach@`` object, file store to file
  store and S3 to S3 (two moto endpoints);
* ``longblob``: 400 rows, each with a 4 MiB internal ``longblob`` (no store).

For attachments a fourth contestant, ``md5``, only reads and hashes the source
objects, one thread per object: the checksum bound. A pull must compute that MD5
(it is what DataJoint records), so no verifying copy beats it. On a machine with
few cores and a warm page cache this bound, not the copy, sets the pace: the
report prints djbridge against it as well as against the floor.

and a time target: within 1.5x of a bare streaming copy of the same bytes (the
floor: no checks, one row at a time, ``bench/link_big_child.py``), and faster
than datajoint-link 0.11. Each contestant (``original`` = 0.11 from PyPI in a
throwaway venv, ``floor``, ``djbridge``) runs in a process of its own against
the same source; its peak RSS is read with ``os.wait4`` when it exits. Both
MariaDB servers use TLS (0.11 cannot connect without). Stores and data
directories live on disk under /tmp: these objects are big, not many.

    .venv/bin/python -m bench.link_big                          # both workloads, 1 GiB objects
    .venv/bin/python -m bench.link_big --workload attach --size-mib 64 --stores file
    .venv/bin/python -m bench.link_big --workload longblob --rows 100 --skip-original
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.link_pull import ensure_original_venv
from djbridge.config import DatabaseServer
from djbridge.layout import object_key, tracking_table
from djbridge.mysql import connect, quote
from djbridge.sandbox import MariaDB, MotoS3
from djbridge.stores import s3_dj_spec, store_from_dj_spec

HERE = Path(__file__).resolve().parent
CHILD = HERE / "link_big_child.py"
ORIGINAL_VENV = Path("/tmp/djb-link011-big")
LINK_USER, LINK_PASS = "benchlink", "bench-link-pw"
MIB = 1 << 20
RESULT_MARK = "BENCH-RESULT "
TARGET_RSS_MIB = 256


@dataclass
class Outcome:
    """One contestant's run on one workload."""

    workload: str
    stores: str
    name: str
    pull_s: float | None = None
    peak_rss_mib: float | None = None
    landed: str = ""
    error: str = ""


def dj_connection(server: DatabaseServer) -> Any:
    import datajoint as dj

    return dj.Connection(f"{server.host}:{server.port}", server.user, server.password,
                         use_tls=True)  # fmt: skip


def write_random(path: Path, size: int) -> None:
    """Write ``size`` random bytes to ``path``, a chunk at a time."""
    with path.open("wb") as out:
        left = size
        while left:
            n = min(left, 16 * MIB)
            out.write(os.urandom(n))
            left -= n


def build_attach(source: DatabaseServer, schema: str, store: str, rows: int, size: int,
                 scratch: Path) -> None:  # fmt: skip
    """Declare ``Big`` (an attach@ column) and insert ``rows`` objects of ``size`` bytes."""
    import datajoint as dj

    db = dj.Schema(schema, connection=dj_connection(source))

    @db
    class Big(dj.Manual):
        definition = f"""
        big_id : int
        ---
        payload : attach@{store}
        """

    for i in range(rows):
        path = scratch / f"payload-{i}.bin"
        write_random(path, size)
        Big.insert1({"big_id": i, "payload": str(path)})
        path.unlink()


def build_longblob(source: DatabaseServer, schema: str, rows: int, size: int) -> None:
    """Declare ``Frame`` (an internal longblob) and insert ``rows`` blobs of ``size`` bytes."""
    import datajoint as dj
    import numpy as np

    db = dj.Schema(schema, connection=dj_connection(source))

    @db
    class Frame(dj.Manual):
        definition = """
        frame_id : int
        ---
        pixels : longblob
        """

    rng = np.random.default_rng(3)
    for i in range(rows):
        Frame.insert1({"frame_id": i, "pixels": rng.integers(0, 255, size, dtype=np.uint8)})


def grant_link_account(source: DatabaseServer, schemas: Sequence[str]) -> None:
    db = connect(source)
    try:
        db.execute(f"CREATE USER IF NOT EXISTS '{LINK_USER}'@'%' IDENTIFIED BY '{LINK_PASS}'")
        for schema in schemas:
            db.execute(f"GRANT SELECT, REFERENCES ON {quote(schema)}.* TO '{LINK_USER}'@'%'")
        db.execute(f"GRANT ALL PRIVILEGES ON `bench\\_out\\_%`.* TO '{LINK_USER}'@'%'")
    finally:
        db.close()


def server_dict(server: DatabaseServer) -> dict[str, Any]:
    """Return the keyword arguments that rebuild ``server`` in a child process."""
    return dataclasses.asdict(server)


def run_child(python: str, job: dict[str, Any], scratch: Path) -> tuple[float, float]:
    """Run one contestant; return (pull seconds, its peak RSS in MiB, as it reports it)."""
    job_path = scratch / f"job-{job['role']}-{job['local_schema']}.json"
    job_path.write_text(json.dumps(job))
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"))
    if python != sys.executable:
        env.pop("PYTHONPATH")  # 0.11's venv must import its own ``link``
    done = subprocess.run([python, str(CHILD), str(job_path)], capture_output=True, text=True,
                          env=env, timeout=3600)  # fmt: skip
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{job['role']} failed: {done.stderr.strip()[-600:]}")
    result = json.loads(lines[-1][len(RESULT_MARK) :])
    return float(result["pull_s"]), float(result["peak_rss_kib"]) / 1024


@dataclass
class Arena:
    """The servers and stores of one run, and where scratch files go."""

    source: DatabaseServer
    local: DatabaseServer
    scratch: Path
    s3: dict[str, Any]

    def store_spec(self, kind: str, role: str, location: str) -> dict[str, Any]:
        """Return a dj.config store: a directory under scratch, or a bucket on one endpoint."""
        if kind == "file":
            path = self.scratch / location
            path.mkdir(parents=True, exist_ok=True)
            return {"protocol": "file", "location": str(path)}
        server = self.s3[role].server
        return s3_dj_spec(server, f"bench-{role}", location)


def source_objects(arena: Arena, schema: str, store: str, local_schema: str) -> list[list[str]]:
    """Return [source key, destination key, attachment name] for each object of ``schema``."""
    db = connect(arena.source)
    try:
        rows = db.query(f"SELECT hash, attachment_name FROM {quote(schema, tracking_table(store))}")
    finally:
        db.close()
    return [[object_key(schema, h, a), object_key(local_schema, h, a), a] for h, a in rows]


def check_landing(arena: Arena, outcome: Outcome, job: dict[str, Any], expect_rows: int) -> None:
    """Count the rows and objects that arrived; a wrong count marks the outcome."""
    db = connect(arena.local)
    try:
        table = next(t for t in job["floor_tables"] if not t.startswith("~"))
        rows = db.query(f"SELECT COUNT(*) FROM {quote(job['local_schema'], table)}")[0][0]
    finally:
        db.close()
    objects = 0
    if job["objects"]:
        dst = store_from_dj_spec(job["dst_store"], job["dj_stores"][job["dst_store"]])
        objects = sum(1 for _ in dst.iter_objects(job["local_schema"] + "/"))
    outcome.landed = f"{rows} rows, {objects} objects"
    if rows != expect_rows or objects != len(job["objects"]):
        outcome.error = f"landed {outcome.landed}, expected {expect_rows} rows"


def clean_up(arena: Arena, job: dict[str, Any]) -> None:
    """Drop the contestant's local schema and destination objects (disk and moto memory)."""
    db = connect(arena.local)
    try:
        db.execute(f"DROP DATABASE IF EXISTS {quote(job['local_schema'])}")
    finally:
        db.close()
    if job["objects"]:
        dst = store_from_dj_spec(job["dst_store"], job["dj_stores"][job["dst_store"]])
        dst.delete_many([o.key for o in dst.iter_objects(job["local_schema"] + "/")])


def run_workload(arena: Arena, args: argparse.Namespace, workload: str, kind: str,
                 pythons: dict[str, str]) -> list[Outcome]:  # fmt: skip
    """Build one workload's source, then run every contestant on it."""
    tag = f"{workload}_{kind}".replace("-", "_")
    src_schema, src_store, dst_store = f"bench_src_{tag}", f"src{kind}", f"dst{kind}"
    spec_kind = "file" if kind == "none" else kind  # longblob rows use no store at all
    dj_stores = {src_store: arena.store_spec(spec_kind, "source", f"src-{tag}")}
    started = time.perf_counter()
    import datajoint as dj

    dj.config["stores"] = dj_stores
    if workload == "attach":
        build_attach(arena.source, src_schema, src_store, 2, args.size_mib * MIB, arena.scratch)
        table, floor_tables, rows = "Big", [tracking_table(src_store), "big"], 2
    else:
        build_longblob(arena.source, src_schema, args.rows, args.blob_mib * MIB)
        table, floor_tables, rows = "Frame", ["frame"], args.rows
    grant_link_account(arena.source, [src_schema])
    print(f"  source built in {time.perf_counter() - started:.1f} s", flush=True)
    outcomes = []
    contestants = dict(pythons)
    if workload == "attach":  # the checksum bound: hashing alone, no copy
        contestants["md5"] = sys.executable
    for name, python in contestants.items():
        local_schema = f"bench_loc_{name}_{tag}"
        stores = dict(dj_stores, **{dst_store: arena.store_spec(spec_kind, "dest", f"dst-{tag}")})
        job = {
            "role": name if name in ("floor", "md5") else "link", "table": table,
            "source_address": f"{arena.source.host}:{arena.source.port}",
            "source": server_dict(arena.source), "local_server": server_dict(arena.local),
            "local": {"address": f"{arena.local.host}:{arena.local.port}",
                      "user": arena.local.user, "password": arena.local.password},
            "link_user": LINK_USER, "link_pass": LINK_PASS, "source_schema": src_schema,
            "outbound_schema": f"bench_out_{name}_{tag}", "local_schema": local_schema,
            "dj_stores": stores, "src_store": src_store, "dst_store": dst_store,
            # 0.11 reads its mapping the other way round: {destination: source}.
            "link_stores": ({dst_store: src_store} if name == "original" else
                            {src_store: dst_store}) if workload == "attach" else {},
            "floor_tables": floor_tables,
            "objects": source_objects(arena, src_schema, src_store, local_schema)
            if workload == "attach" else [],
        }  # fmt: skip
        outcome = Outcome(workload, kind if workload == "attach" else "none", name)
        try:
            outcome.pull_s, outcome.peak_rss_mib = run_child(python, job, arena.scratch)
            if name == "md5":
                outcome.landed = f"{len(job['objects'])} objects hashed"
            else:
                check_landing(arena, outcome, job, rows)
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            outcome.error = str(err)
        if name != "md5":
            clean_up(arena, job)
        print(f"  {name:9s} {fmt(outcome.pull_s, 's')}  peak {fmt(outcome.peak_rss_mib, 'MiB')}"
              f"  {outcome.landed} {outcome.error}", flush=True)  # fmt: skip
        outcomes.append(outcome)
    return outcomes


def fmt(value: float | None, unit: str) -> str:
    return "   n/a" if value is None else f"{value:7.1f} {unit}"


def report(outcomes: Sequence[Outcome]) -> None:
    """Print the table with the ratios the issue asks for."""
    print("\nworkload  stores  contestant  pull       peak RSS    /floor  0.11/djbridge")
    bounds = []
    groups: dict[tuple[str, str], dict[str, Outcome]] = {}
    for o in outcomes:
        groups.setdefault((o.workload, o.stores), {})[o.name] = o
    for (workload, stores), by_name in groups.items():
        floor, ours, original = (by_name.get(n) for n in ("floor", "djbridge", "original"))
        if (md5 := by_name.get("md5")) is not None and (over := ratio(ours, md5)) is not None:
            bounds.append(f"{workload} {stores}: djbridge / md5 = {over:.2f}x, "
                          f"md5 / floor = {show(ratio(md5, floor)).strip()}")  # fmt: skip
        for o in by_name.values():
            vs_floor = ratio(o, floor)
            vs_ours = ratio(original, ours) if o.name == "djbridge" else None
            mark = ""
            if o.name == "djbridge" and o.peak_rss_mib is not None:
                mark = "  (target <= 256 MiB: " + (
                    "met)" if o.peak_rss_mib <= TARGET_RSS_MIB else "MISSED)"
                )
            print(
                f"{workload:9s} {stores:7s} {o.name:10s} {fmt(o.pull_s, 's')} "
                f"{fmt(o.peak_rss_mib, 'MiB')}  {show(vs_floor)}  {show(vs_ours)}{mark}"
            )
    if bounds:
        print("checksum bound (md5: DataJoint's MD5 of the source objects, one thread each, "
              "no copy):\n  " + "\n  ".join(bounds))  # fmt: skip


def ratio(a: Outcome | None, b: Outcome | None) -> float | None:
    if a is None or b is None or not a.pull_s or not b.pull_s or a.error or b.error:
        return None
    return a.pull_s / b.pull_s


def show(value: float | None) -> str:
    return "  n/a " if value is None else f"{value:5.2f}x"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", default="attach,longblob", help="attach, longblob or both")
    parser.add_argument("--stores", default="file,s3", help="store kinds for attach: file, s3")
    parser.add_argument("--size-mib", type=int, default=1024, help="attach object size (MiB)")
    parser.add_argument("--rows", type=int, default=400, help="longblob rows")
    parser.add_argument("--blob-mib", type=int, default=4, help="longblob size per row (MiB)")
    parser.add_argument("--skip-original", action="store_true", help="leave out 0.11")
    parser.add_argument("--json", type=Path, help="also write the outcomes to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pythons = {"floor": sys.executable, "djbridge": sys.executable}
    if not args.skip_original:
        pythons = {"original": str(ensure_original_venv(ORIGINAL_VENV)), **pythons}
    kinds = args.stores.split(",")
    scratch = Path(tempfile.mkdtemp(prefix="djb-bench-big-", dir="/tmp"))
    outcomes: list[Outcome] = []
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, True)
        source = stack.enter_context(MariaDB("bench-source", tls=True))
        local = stack.enter_context(MariaDB("bench-local", tls=True))
        s3: dict[str, Any] = {}
        if "s3" in kinds and "attach" in args.workload:
            for role in ("source", "dest"):
                s3[role] = stack.enter_context(MotoS3(f"bench-s3-{role}"))
                s3[role].make_bucket(f"bench-{role}")
        arena = Arena(source.server, local.server, scratch, s3)
        for workload in args.workload.split(","):
            for kind in kinds if workload == "attach" else ["none"]:
                print(f"{workload} ({kind}):", flush=True)
                outcomes += run_workload(arena, args, workload, kind, pythons)
    report(outcomes)
    if args.json:
        args.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=2))
    return 0 if all(not o.error for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
