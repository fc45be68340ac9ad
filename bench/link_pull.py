"""Benchmark: pull one workload with djbridge's link, datajoint-link 0.11, and the bare floor.

Issue 4 ("Speed: batches, not rows") asks for one run that times three
contestants on the same workload, on file stores and on S3 stores, and prints
the ratios. This script is that run. For each store kind it:

1. starts private servers with ``djbridge.sandbox`` (``bench/link_arena.py``): a
   source and a local MariaDB, **both with TLS** (datajoint-link 0.11 calls
   ``dj.Connection`` without ``use_tls``, which fails against a plain server with
   PyMySQL >= 1.1), and for S3 two moto endpoints, the source store on one and
   the destination on the other. File stores live under ``/dev/shm``: small files
   on a disk cost ~0.7 ms each and would measure the disk, not the tools. Each
   mariadbd gets a tmpdir of its own there too (``link_arena.server_tmpdir``);
2. builds the source workload with DataJoint (``bench/link_workload.py``): N
   ``Recording`` rows, each with a ``blob@`` (~2 KB) and an ``attach@`` (4 KB),
   and 3 ``Recording.Channel`` part rows each; and a link account with
   ``SELECT, REFERENCES`` on the source schema and ``ALL`` on the outbound schema;
3. runs each contestant in a process of its own, into a fresh local schema, a
   fresh outbound table and a fresh destination store location:

   * ``original``: datajoint-link 0.11 from PyPI in a throwaway venv (made once
     under /tmp, then reused), driven by ``bench/link_driver.py``. 0.11 inverts its
     ``stores`` mapping, so it is given ``{destination: source}``, the direction
     it really reads; it remaps only ``attach@``, so its ``blob@`` objects land
     in the *source* store (under the local schema's folder). Reported, not fixed;
   * ``floor``: ``python -m bench.link_floor``, the same reads, object copies and raw
     multi-row INSERTs with no link logic;
   * ``djbridge``: the same driver run with this repository's venv, ``from link
     import link``, and ``stores={source: destination}`` as the README says.
     Skipped, with a note, while ``link`` is not importable there;

4. checks what landed (rows, parts, objects in the destination store, objects
   written into the source store) and prints wall-clock times and ratios. The
   ratios use the pull time alone; the setup column is the decoration (link
   tools: connecting, declaring the local tables) or the floor's table
   declaration, and the process column is the whole child process. With
   ``--repeat N`` each contestant runs N times (each into fresh places) and its
   fastest pull counts: this machine is often shared with other test runs. The
   tables and ratios are ``bench/link_report.py``'s.

**Two labs far apart** (issue 10): ``--latency-ms D`` puts a latency proxy
(``bench/latency_proxy.py``) with a one-way delay of D ms in front of the source
database and, for S3, the source S3 endpoint, and every contestant reaches the
source through them (``link_arena.start_network``); the local side stays direct.
The proxies count request-response turns, and the report gives each contestant's
**round trips per 1,000 rows** inside its pull window (the children report that
window in ``time.monotonic()``, one clock for the whole machine). ``--latency-ms 0``
counts without delay. 0.11 makes a few dozen round trips per row, so
``--original-rows N`` lets it pull a source of N rows of its own; its time per row
is then scaled linearly to ``--rows``, and every such figure is marked extrapolated.

    .venv/bin/python -m bench.link_pull                       # 1,000 rows, file and s3
    .venv/bin/python -m bench.link_pull --rows 50 --stores file --skip-original
    .venv/bin/python -m bench.link_pull --repeat 3 --json /tmp/link_pull.json
    .venv/bin/python -m bench.link_pull --stores s3 --latency-ms 10 --original-rows 100
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.link_arena import (
    LINK_PASS,
    LINK_USER,
    OUTBOUND_SCHEMA,
    Arena,
    Network,
    build_source,
    create_link_account,
    scratch_root,
    start_network,
    start_services,
)
from bench.link_driver import RESULT_MARK
from bench.link_report import Outcome, Plan, as_json, report
from bench.link_workload import PARTS_PER_ROW, TABLE, make_job
from djbridge.config import DatabaseServer
from djbridge.mysql import connect, quote
from djbridge.stores import store_from_dj_spec

ROOT = Path(__file__).resolve().parents[1]  # the checkout, so children find ``bench``
DRIVER = ROOT / "bench" / "link_driver.py"
REPO_PYTHON = sys.executable
ORIGINAL_VENV = Path("/tmp/djbridge-bench-link011")
ORIGINAL_PACKAGE = "datajoint-link==0.11"
CONTESTANTS = ("original", "floor", "djbridge")
# The floor's copy threads, the fastest measured on this 2-core machine: file copies in
# /dev/shm are CPU-bound (more threads only add GIL contention); moto wants many requests.
FLOOR_THREADS = {"file": 4, "s3": 16}
TIMEOUT_S = 1800


class BenchError(Exception):
    """A contestant or a setup step failed; the message says which and why."""


def ensure_original_venv(venv: Path) -> Path:
    """Return the python of a venv holding datajoint-link 0.11; create the venv if needed.

    DataJoint is pinned to the version in this repository's venv: left alone, pip
    would resolve datajoint-link's loose requirement to DataJoint 2, which 0.11
    cannot use.
    """
    python = venv / "bin" / "python"
    dj_version = metadata.version("datajoint")
    probe = f"import link, datajoint; assert datajoint.__version__ == {dj_version!r}"
    if (
        python.exists()
        and subprocess.run([python, "-c", probe], capture_output=True).returncode == 0
    ):
        return python
    print(f"  installing {ORIGINAL_PACKAGE} (datajoint=={dj_version}) into {venv} ...")
    subprocess.run([REPO_PYTHON, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run([*pip, ORIGINAL_PACKAGE, f"datajoint=={dj_version}"], capture_output=True)
    if done.returncode != 0:
        raise BenchError(f"pip install {ORIGINAL_PACKAGE} failed: {done.stderr.decode()[-800:]}")
    return python


def djbridge_link_available() -> bool:
    """Return whether ``from link import link`` works in this repository's venv."""
    probe = subprocess.run(
        [REPO_PYTHON, "-c", "from link import link"], capture_output=True, cwd=tempfile.gettempdir()
    )
    return probe.returncode == 0


def contestant_job(
    arena: Arena, name: str, attempt: int, services: dict[str, Any], network: Network
) -> dict[str, Any]:
    """Describe one contestant's pull: its own local schema, outbound table and destination.

    The contestant reaches the source database and the source S3 endpoint at the
    addresses ``network`` gives (latency proxies, in that mode); the local side is direct.
    """
    local: DatabaseServer = services["local"].server
    src, dst = arena.src_store, arena.dst_store
    # 0.11 reads the mapping as {destination: source} (peers.md §1.3); the README says
    # {source: destination}, and that is what djbridge gets.
    link_stores = {dst: src} if name == "original" else {src: dst}
    src_spec = arena.spec("src")
    if arena.kind == "s3" and network.s3_endpoint:
        src_spec["endpoint"] = network.s3_endpoint
    return make_job(
        source_host=network.source_host,
        source_schema=arena.source_schema,
        outbound_schema=OUTBOUND_SCHEMA,
        outbound_table=f"{arena.kind.capitalize()}{name.capitalize()}{attempt}Outbound",
        local_schema=f"bench_{arena.kind}_{name}{attempt}",
        local={
            "host": f"{local.host}:{local.port}",
            "user": local.user,
            "password": local.password,
        },
        dj_stores={src: src_spec, dst: arena.spec("dst", f"{name}{attempt}")},
        link_stores=link_stores,
        src_store=src,
        dst_store=dst,
    )


def command_for(name: str, job_path: Path, pythons: dict[str, Path], threads: int) -> list[str]:
    """Return the command line that runs contestant ``name`` on ``job_path``."""
    if name == "floor":
        return [REPO_PYTHON, "-m", "bench.link_floor", str(job_path), f"--threads={threads}"]
    return [str(pythons[name]), str(DRIVER), str(job_path)]


def run_process(
    name: str, command: list[str], workdir: Path
) -> tuple[dict[str, float], list[str], tuple[float, float]]:
    """Run one contestant; return its timings (plus ``process_s``), warnings and pull window."""
    env = {**os.environ, "LINK_USER": LINK_USER, "LINK_PASS": LINK_PASS}
    for leftover in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(leftover, None)
    if name == "floor":  # it runs as ``-m bench.link_floor``; the link tools get no bench
        env["PYTHONPATH"] = str(ROOT)
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=workdir, timeout=TIMEOUT_S
    )
    elapsed = time.perf_counter() - started
    marked = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode != 0 or not marked:
        tail = (done.stderr or done.stdout).strip().splitlines()[-12:]
        raise BenchError(f"{name} exited {done.returncode}:\n    " + "\n    ".join(tail))
    result = json.loads(marked[-1][len(RESULT_MARK) :])
    timings = {k: float(v) for k, v in result.items() if k.endswith("_s")}
    timings["process_s"] = elapsed
    warned = sorted({line.strip() for line in done.stderr.splitlines() if "Warning:" in line})
    began, ended = result["pull_window"]
    return timings, warned[:5], (float(began), float(ended))


def column_stores(db: Any, schema: str) -> dict[str, str]:
    """Return ``{column: "blob@store"}`` for the local master's external columns."""
    rows = db.query(
        "SELECT column_name, column_comment FROM information_schema.columns "
        "WHERE table_schema=%s AND table_name=%s AND column_comment LIKE ':%%@%%:%%'",
        (schema, TABLE.lower()),
    )
    return {str(name): str(comment).split(":")[1] for name, comment in rows}


def inspect_landing(arena: Arena, job: dict[str, Any], local: DatabaseServer) -> dict[str, Any]:
    """Count what a contestant left: local rows and parts, and objects in each store."""
    schema = job["local_schema"]
    db = connect(local)
    try:
        (rows,) = db.query(f"SELECT COUNT(*) FROM {quote(schema, TABLE.lower())}")[0]
        (parts,) = db.query(f"SELECT COUNT(*) FROM {quote(schema, TABLE.lower() + '__channel')}")[0]
        columns = column_stores(db, schema)
    finally:
        db.close()
    dst = store_from_dj_spec(arena.dst_store, job["dj_stores"][arena.dst_store])
    src = store_from_dj_spec(arena.src_store, arena.spec("src"))  # direct, not via a proxy
    return {
        "rows": int(rows),
        "parts": int(parts),
        "dst_objects": sum(1 for _ in dst.iter_objects(f"{schema}/")),
        "src_objects": sum(1 for _ in src.iter_objects(f"{schema}/")),
        "columns": columns,
    }


def judge(name: str, checks: dict[str, Any], rows: int) -> str:
    """Return ``ok`` or what is wrong with a contestant's result.

    Every contestant must land all rows and parts. djbridge and the floor must put
    both objects of every row into the destination store and none into the source
    store; 0.11 is known to keep ``blob@`` in the source store, so for it the
    object counts are reported, not judged.
    """
    wrong = []
    if checks["rows"] != rows or checks["parts"] != rows * PARTS_PER_ROW:
        wrong.append(
            f"rows {checks['rows']}/{rows}, parts {checks['parts']}/{rows * PARTS_PER_ROW}"
        )
    if name != "original" and (checks["dst_objects"] != 2 * rows or checks["src_objects"]):
        wrong.append(
            f"objects: {checks['dst_objects']} in destination (want {2 * rows}), "
            f"{checks['src_objects']} written into the source store (want 0)"
        )
    return "ok" if not wrong else "WRONG: " + "; ".join(wrong)


def count_turns(
    kind: str, network: Network, before: dict[str, int], window: tuple[float, float]
) -> dict[str, int]:
    """Return the proxies' turns inside the pull window and since ``before`` (the process).

    A file-store run counts the database alone: its source store is no S3 endpoint.
    """
    counted = {}
    for server, turns in network.turns.items():
        if server == "s3" and kind != "s3":
            continue
        counted[server] = turns.between(*window)
        counted[f"{server}_process"] = len(turns) - before[server]
    return counted


def run_attempt(
    plan: Plan, arena: Arena, name: str, attempt: int, services: dict[str, Any], network: Network
) -> Outcome:
    """Run one contestant once on one store kind and check what it left behind."""
    job = contestant_job(arena, name, attempt, services, network)
    rows = plan.rows_for(name)
    workdir = Path(tempfile.mkdtemp(prefix=f"{arena.kind}-{name}-", dir=plan.scratch))
    if arena.kind == "file":
        Path(job["dj_stores"][arena.dst_store]["location"]).mkdir(parents=True, exist_ok=True)
    job_path = workdir / "job.json"
    job_path.write_text(json.dumps(job, indent=2))
    print(f"  {arena.kind}: {name} pulling {rows} rows (run {attempt}) ...", flush=True)
    before = {server: len(turns) for server, turns in network.turns.items()}
    try:
        command = command_for(name, job_path, plan.pythons, plan.threads[arena.kind])
        timings, warned, window = run_process(name, command, workdir)
    except (BenchError, subprocess.TimeoutExpired) as err:
        return Outcome(name, status=f"FAILED: {err}")
    trips = count_turns(arena.kind, network, before, window)
    checks = inspect_landing(arena, job, services["local"].server)
    checks["warnings"] = warned
    return Outcome(name, judge(name, checks, rows), timings, checks, rows, trips)


def run_one(
    plan: Plan, arena: Arena, name: str, services: dict[str, Any], network: Network
) -> Outcome:
    """Run one contestant ``plan.repeat`` times, each into fresh places; keep the fastest pull."""
    if name in plan.unavailable:
        return Outcome(name, status=plan.unavailable[name])
    runs = []
    for attempt in range(1, plan.repeat + 1):
        outcome = run_attempt(plan, arena, name, attempt, services, network)
        if outcome.status != "ok":
            return outcome
        runs.append(outcome)
    best = min(runs, key=lambda o: o.timings["pull_s"])
    best.checks["pull_runs_s"] = [round(o.timings["pull_s"], 3) for o in runs]
    return best


def source_schema(plan: Plan, kind: str, name: str) -> str:
    """Return the source schema contestant ``name`` pulls: a smaller one for fewer rows."""
    return f"bench_src_{kind}" + ("" if plan.rows_for(name) == plan.rows else "_few")


def run_kind(plan: Plan, kind: str, services: dict[str, Any], network: Network) -> list[Outcome]:
    """Build the source workloads for one store kind and run every contestant on theirs."""
    arenas: dict[str, Arena] = {}
    for name in plan.contestants:
        schema = source_schema(plan, kind, name)
        if schema not in arenas:
            arena = arenas[schema] = Arena(kind, schema, plan.scratch)
            if kind == "s3":
                arena.s3_source = services["s3_source"].server
                arena.s3_dest = services["s3_dest"].server
            rows = plan.rows_for(name)
            built = build_source(arena, services["source"].server, rows)
            print(f"  {kind}: source workload of {rows} rows built in {built:.1f} s", flush=True)
    return [
        run_one(plan, arenas[source_schema(plan, kind, name)], name, services, network)
        for name in plan.contestants
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000, help="source master rows (default 1000)")
    parser.add_argument("--stores", default="file,s3", help="store kinds: file, s3 or file,s3")
    parser.add_argument(
        "--skip-original", action="store_true", help="do not run datajoint-link 0.11"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument(
        "--threads", type=int, help="the floor's concurrent copies (default: file 4, s3 16)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per contestant; fastest counts")
    parser.add_argument("--original-venv", type=Path, default=ORIGINAL_VENV, help="0.11's venv")
    parser.add_argument(
        "--original-rows",
        type=int,
        help="rows 0.11 pulls, from a source of its own (default: --rows); its time is "
        "then extrapolated to --rows",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        help="one-way delay of proxies in front of the source database and source S3 "
        "(10 means 20 ms round trips); they also count round trips. 0 counts without delay",
    )
    args = parser.parse_args(argv)
    args.kinds = [k.strip() for k in args.stores.split(",") if k.strip()]
    if not args.kinds or set(args.kinds) - {"file", "s3"}:
        parser.error(f"--stores: expected file, s3 or file,s3, got {args.stores!r}")
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be at least 1")
    if args.original_rows is not None and not 1 <= args.original_rows <= args.rows:
        parser.error("--original-rows must be between 1 and --rows")
    if args.latency_ms is not None and args.latency_ms < 0:
        parser.error("--latency-ms must not be negative")
    return args


def make_plan(args: argparse.Namespace, scratch: Path) -> Plan:
    """Decide the contestants and find (or make) the python each one runs with."""
    pythons: dict[str, Path] = {"floor": Path(REPO_PYTHON), "djbridge": Path(REPO_PYTHON)}
    unavailable: dict[str, str] = {}
    contestants = ["floor", "djbridge"] if args.skip_original else list(CONTESTANTS)
    if not args.skip_original:
        pythons["original"] = ensure_original_venv(args.original_venv)
    if not djbridge_link_available():
        unavailable["djbridge"] = "not available (link not importable)"
        print("djbridge: not available (link not importable)")
    threads = {k: args.threads or FLOOR_THREADS[k] for k in ("file", "s3")}
    return Plan(
        args.rows,
        args.kinds,
        contestants,
        pythons,
        unavailable,
        threads,
        args.repeat,
        scratch,
        original_rows=args.original_rows or args.rows,
        latency_ms=args.latency_ms,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scratch = scratch_root()
    try:
        plan = make_plan(args, scratch)
        print(f"link_pull: {plan.rows} rows on {', '.join(plan.kinds)} stores; scratch {scratch}")
        with ExitStack() as stack:
            services = start_services(stack, plan.kinds, scratch)
            schemas = {source_schema(plan, k, n) for k in plan.kinds for n in plan.contestants}
            create_link_account(services["source"].server, sorted(schemas))
            delay = None if plan.latency_ms is None else plan.latency_ms / 1000
            network = start_network(stack, services, delay)
            results = {kind: run_kind(plan, kind, services, network) for kind in plan.kinds}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for kind, outcomes in results.items():
        report(plan, kind, outcomes)
    if args.json:
        args.json.write_text(json.dumps(as_json(plan, results), indent=2))
        print(f"\nresults written to {args.json}")
    failed = [
        o for outs in results.values() for o in outs if o.status.startswith(("FAILED", "WRONG"))
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
