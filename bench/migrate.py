"""Benchmark: dj-migrate against a bare floor and the script a lab would write, and pgloader.

Issue 19 ("dj-migrate") asks for one run that moves the same DataJoint 0.14 workload with
three contestants and prints the ratios: **at least 10x faster than the script, at most
1.5x the floor**, with peak RSS and round trips per 1,000 rows at 20 ms. For each store
kind (``--stores file,s3``) it:

1. starts private servers: the 0.14 source (``--source mariadb|mysql``, plain TCP), the 2.x
   destination (``--destination postgresql|mysql``) and, for S3, two moto endpoints (the
   source store's and the destination's). File stores live in /dev/shm when it is writable
   (small files on disk would measure the disk); the report says where;
2. builds the workload fast (``bench/migrate_world.py``): ``--rows`` masters, each with an
   internal ``longblob``, a ``blob@`` and an ``attach@``, and 3 part rows each, by bulk SQL
   and objects written in 0.14's layout, then reads a sample back with DataJoint 0.14;
3. runs each contestant into a fresh destination schema and store location, in a process
   of its own, timed from start to exit, its own peak RSS measured
   (``bench/migrate_run.py``); with ``--repeats N`` the field runs N times, alternating,
   and each contestant's fastest attempt counts. **Declaring is timed for none of them**:
   each destination schema is declared beforehand by ``dj-migrate run`` from an empty twin
   of the source schema (the declaring time is printed apart):

   * ``djbridge``: ``.venv-dj2/bin/dj-migrate run --no-progress``;
   * ``floor``: ``python -m bench.migrate_floor``: SQL copy and object copy, no checks;
   * ``script``: ``bench/migrate_script.py``: fetch with DataJoint 0.14, pickle to disk,
     insert with DataJoint 2.x. ``--script-rows N`` (default 1,000) moves only the first N
     masters; its time is then scaled linearly to ``--rows`` and marked ``(extrapolated)``;

4. checks every attempt (untimed): rows, part rows and objects counted at the destination,
   and ``dj-migrate verify`` against the source, which compares every row and object. A
   failed check prints ``WRONG RESULT``.

``--latency-ms RTT`` puts ``bench/latency_proxy.py`` in front of the source database and
the source S3 endpoint with that **round-trip** time (``--latency-ms 20``: 10 ms each way)
and reports the round trips per 1,000 rows that each contestant made through them.
``--big`` moves 2 rows with a 1 GiB ``attach@`` each (file stores; ``--big-mib``), djbridge
and the floor, for the peak RSS target (<= 256 MiB). ``--pgloader`` times Debian's
``pgloader`` on the same tables without external columns against ``dj-migrate run``
(``bench/migrate_sides.py``; target <= 1.5x pgloader).

    .venv/bin/python -m bench.migrate                              # 10,000 rows, file and s3
    .venv/bin/python -m bench.migrate --rows 20 --stores file --script-rows 10
    .venv/bin/python -m bench.migrate --rows 2000 --stores s3 --latency-ms 20
    .venv/bin/python -m bench.migrate --rows 10000 --stores file --big --pgloader
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.latency_proxy import Turns, start_proxy
from bench.link_arena import scratch_root, server_tmpdir
from bench.migrate_run import (
    BenchError,
    Outcome,
    count_objects,
    count_rows,
    declare_tables,
    discard,
    judge,
    load_average,
    make_job,
    run_contestant,
    verify,
)
from bench.migrate_sides import run_big, run_pgloader
from bench.migrate_world import (
    PARTS_PER_ROW,
    S3_BUCKETS,
    World,
    build_workload,
    check_sample,
)
from djbridge.pgsandbox import PostgreSQL
from djbridge.sandbox import MariaDB, MotoS3, MySQL

CONTESTANTS = ("djbridge", "floor", "script")
TABLES = [["recording", ["trace", "notes"]], ["recording__channel", []]]
THREADS = {"file": 4, "s3": 16}
TARGET_FLOOR, TARGET_SCRIPT = 1.5, 10.0


def start_servers(stack: ExitStack, args: argparse.Namespace, scratch: Path) -> World:
    """Start the source, the destination and (for S3) two moto endpoints."""
    services: dict[str, Any] = {
        "source": (MariaDB if args.source == "mariadb" else MySQL)("bench-mig-source"),
        "dest": PostgreSQL("bench-mig-dest") if args.destination == "postgresql"
        else MySQL("bench-mig-dest"),
    }  # fmt: skip
    if "s3" in args.kinds:
        services["s3_source"], services["s3_dest"] = MotoS3("mig-src"), MotoS3("mig-dst")
    for role, service in services.items():
        stack.callback(service.stop)
        with server_tmpdir(scratch / f"tmp-{role}"):
            service.start()
    s3 = {}
    if "s3" in args.kinds:
        for role in ("source", "dest"):
            services[f"s3_{role}"].make_bucket(S3_BUCKETS[role])
            s3[role] = services[f"s3_{role}"].server
    return World(services["source"].server, services["dest"].server, scratch, s3)


def start_network(stack: ExitStack, world: World, rtt_ms: float | None) -> dict[str, Turns]:
    """Put latency proxies in front of the source database and source S3; return counters."""
    if rtt_ms is None:
        return {}
    delay = rtt_ms / 2000
    turns = {"db": Turns()}
    host, port, stop = start_proxy(world.source.host, world.source.port, delay, turns=turns["db"])
    stack.callback(stop)
    world.source_host = f"{host}:{port}"
    if "source" in world.s3:
        s3_host, _, s3_port = world.s3["source"].endpoint.rpartition(":")
        turns["s3"] = Turns()
        host, port, stop = start_proxy(s3_host, int(s3_port), delay, turns=turns["s3"])
        stack.callback(stop)
        world.s3_endpoint = f"{host}:{port}"
    return turns


def attempt(world: World, args: argparse.Namespace, kind: str, name: str, n: int,
            turns: dict[str, Turns]) -> Outcome:  # fmt: skip
    """Declare, run and check one contestant once."""
    job = make_job(world, kind, name, n, TABLES)
    folder = world.scratch / "runs" / f"{kind}-{name}{n}"
    limit = min(args.script_rows, args.rows) if name == "script" else None
    try:
        declared = declare_tables(world, job, folder / "declare")
        print(f"  {kind}: {name} (run {n}) ...", flush=True)
        outcome = run_contestant(world, job, folder, turns, limit, THREADS[kind])
        outcome.steps["declare (untimed)"] = declared
        moved = limit or args.rows
        expect = {"recording": moved, "recording__channel": moved * PARTS_PER_ROW}
        judge(outcome, count_rows(world, job), count_objects(job), verify(world, job, folder),
              expect, 2 * moved, args.rows * (1 + PARTS_PER_ROW))  # fmt: skip
    except BenchError as err:
        outcome = Outcome(name, kind, status=f"FAILED: {err}")
    discard(job)
    if name == "script" and outcome.rows and outcome.rows < args.rows:
        outcome.note = f"(extrapolated from {outcome.rows} rows)"
        outcome.seconds *= args.rows / outcome.rows
        outcome.rows = args.rows
    print(f"    {outcome.seconds:8.2f} s  peak {outcome.peak_mib:6.1f} MiB  {outcome.status} "
          f"{outcome.note}", flush=True)  # fmt: skip
    return outcome


def run_kind(world: World, args: argparse.Namespace, kind: str,
             turns: dict[str, Turns]) -> list[Outcome]:  # fmt: skip
    """Build one kind's workload and run the field ``--repeats`` times; keep each best."""
    print(f"\n{kind} stores: building {args.rows} rows ...", flush=True)
    built = build_workload(world, kind, args.rows)
    problem = check_sample(world, kind, args.rows)
    print(f"  built in {built:.1f} s; DataJoint 0.14 reads a sample back: "
          f"{'ok' if not problem else 'WRONG RESULT: ' + problem}", flush=True)  # fmt: skip
    names = [n for n in CONTESTANTS if not (n == "script" and args.skip_script)]
    runs: dict[str, list[Outcome]] = {n: [] for n in names}
    for n in range(1, args.repeats + 1):
        for name in names:
            runs[name].append(attempt(world, args, kind, name, n, turns))
    best = []
    for outcomes in runs.values():
        good = [o for o in outcomes if o.status == "ok"]
        chosen = min(good, key=lambda o: o.seconds) if good else outcomes[0]
        chosen.steps["all runs (s)"] = [round(o.seconds, 2) for o in outcomes]
        best.append(chosen)
    if problem:
        best[0].status = "WRONG RESULT: fixture: " + problem
    return best


def ratio(a: Outcome | None, b: Outcome | None) -> float | None:
    if a is None or b is None or a.status != "ok" or b.status != "ok" or not b.seconds:
        return None
    return a.seconds / b.seconds


def report(args: argparse.Namespace, results: dict[str, list[Outcome]], where: str) -> None:
    """Print each kind's table, the ratios against the targets, and the round trips."""
    print(f"\nload average (1, 5, 15 min): {load_average()}; file stores in {where}")
    print(f"{args.rows} rows ({PARTS_PER_ROW} parts each), {args.source} -> {args.destination}"
          + (f", {args.latency_ms:g} ms round trips to the source" if args.latency_ms is not None
             else ""))  # fmt: skip
    print("declaring: timed for no contestant (each destination schema is declared beforehand")
    print("by dj-migrate run from an empty twin of the source schema); times are start to exit")
    for kind, outcomes in results.items():
        print(f"\n[{kind} stores]")
        head = f"{'contestant':<11}{'seconds':>10}{'rows/s':>10}{'peak MiB':>10}"
        if args.latency_ms is not None:
            head += f"{'db trips/1k':>13}" + (f"{'s3 trips/1k':>13}" if kind == "s3" else "")
        print(head + "  result")
        for o in outcomes:
            rate = f"{o.rows / o.seconds:>10.0f}" if o.seconds and o.rows else f"{'-':>10}"
            line = f"{o.name:<11}{o.seconds:>10.2f}{rate}{o.peak_mib:>10.1f}"
            if args.latency_ms is not None:
                # the script's round trips are its own (fewer) rows'; scale per 1,000 of them
                moved = min(args.script_rows, args.rows) if o.name == "script" else args.rows
                for server in ["db"] + (["s3"] if kind == "s3" else []):
                    line += f"{o.turns.get(server, 0) * 1000 / max(moved, 1):>13.1f}"
            print(f"{line}  {o.status} {o.note}".rstrip())
        by = {o.name: o for o in outcomes}
        floor, ours, script = (ratio(by.get("djbridge"), by.get("floor")),
                               ratio(by.get("script"), by.get("djbridge")), None)  # fmt: skip
        del script
        for label, value, target, better in (
            ("djbridge / floor", floor, TARGET_FLOOR, "le"),
            ("script / djbridge", ours, TARGET_SCRIPT, "ge"),
        ):
            if value is None:
                print(f"{label}: n/a")
                continue
            met = value <= target if better == "le" else value >= target
            sign = "<=" if better == "le" else ">="
            print(
                f"{label}: {value:.2f}x (target {sign} {target:g}x: {'met' if met else 'MISSED'})"
            )
        for o in outcomes:
            shown = ", ".join(f"{k} {v if isinstance(v, list) else round(v, 2)}"
                              for k, v in o.steps.items())  # fmt: skip
            print(f"  {o.name}: {shown}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000, help="master rows (default 10000)")
    parser.add_argument("--source", choices=("mariadb", "mysql"), default="mariadb")
    parser.add_argument("--destination", choices=("postgresql", "mysql"), default="postgresql")
    parser.add_argument("--stores", default="file,s3", help="file, s3 or file,s3")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs of the field")
    parser.add_argument("--script-rows", type=int, default=1000,
                        help="masters the script moves; its time is scaled to --rows")  # fmt: skip
    parser.add_argument("--skip-script", action="store_true", help="leave the script out")
    parser.add_argument("--skip-main", action="store_true", help="only --big / --pgloader")
    parser.add_argument("--latency-ms", type=float,
                        help="round-trip time added in front of the source database and S3 "
                        "(0 counts round trips without delay)")  # fmt: skip
    parser.add_argument("--big", action="store_true", help="2 rows with a big attach@ each")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of each big attach@")
    parser.add_argument("--pgloader", action="store_true", help="rows alone against pgloader")
    parser.add_argument("--json", type=Path, help="also write the outcomes here")
    args = parser.parse_args(argv)
    args.kinds = [k.strip() for k in args.stores.split(",") if k.strip()]
    if not args.kinds or set(args.kinds) - {"file", "s3"}:
        parser.error(f"--stores: expected file, s3 or file,s3, got {args.stores!r}")
    if args.rows < 1 or args.repeats < 1 or args.script_rows < 1:
        parser.error("--rows, --repeats and --script-rows must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scratch = scratch_root()
    where = "/dev/shm" if str(scratch).startswith("/dev/shm") else "on disk"
    stores = ", ".join(args.kinds)
    print(
        f"migrate: {args.rows} rows, {args.source} -> {args.destination}, stores {stores}; "
        f"scratch {scratch}; load {load_average()}",
        flush=True,
    )
    results: dict[str, list[Outcome]] = {}
    extras: list[str] = []
    started = time.perf_counter()
    try:
        with ExitStack() as stack:
            world = start_servers(stack, args, scratch)
            turns = start_network(stack, world, args.latency_ms)
            if not args.skip_main:
                for kind in args.kinds:
                    results[kind] = run_kind(world, args, kind, turns)
            world.source_host = world.source.address  # the side benchmarks go direct
            world.s3_endpoint = world.s3["source"].endpoint if world.s3 else ""
            if args.pgloader:
                extras += run_pgloader(world, args)
            if args.big:
                extras += run_big(world, args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if results:
        report(args, results, where)
    for line in extras:
        print(line)
    print(f"\nwhole benchmark: {time.perf_counter() - started:.0f} s; load {load_average()}")
    if args.json:
        args.json.write_text(json.dumps(
            {k: [asdict(o) for o in v] for k, v in results.items()} | {"extras": extras},
            indent=2))  # fmt: skip
    bad = [o for v in results.values() for o in v if o.status != "ok"]
    bad_extra = [line for line in extras if "WRONG RESULT" in line or "FAILED" in line]
    return 1 if bad or bad_extra else 0


if __name__ == "__main__":
    raise SystemExit(main())
