"""The two side benchmarks of ``bench/migrate.py``: big attachments, and rows against pgloader.

* :func:`run_big` (``--big``): 2 rows with a 1 GiB ``attach@`` each on file stores, the
  attachments sparse files (a distinct first line, then zeros) written straight into the
  0.14 layout. djbridge (``dj-migrate run``) and the floor each move them into a fresh,
  pre-declared destination; the issue's target is djbridge's **peak RSS <= 256 MiB**.
* :func:`run_pgloader` (``--pgloader``): the same master and part tables without external
  columns (``bench_mig_rows``: the key, a label and the internal ``longblob``), moved by
  Debian's ``pgloader`` with its default settings into a schema renamed ``pgl_rows``, and by
  ``dj-migrate run`` into a fresh schema. **Declaring is timed for both** here, as pgloader
  creates its tables as part of its run; a second ``dj-migrate run`` on tables declared
  beforehand (untimed) shows the copy alone. The target is djbridge's time <= 1.5x
  pgloader's.
  pgloader logs in with ``mysql_native_password``, which MariaDB has and MySQL 9.7 no
  longer has; without ``pgloader`` or against a MySQL source, the comparison is skipped
  with a note (install it with ``apt-get install -y pgloader``).

Both return the lines to print at the end of the report.

    lines = run_big(world, args) + run_pgloader(world, args)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.migrate_run import (
    BenchError,
    Outcome,
    child_env,
    count_objects,
    count_rows,
    declare_tables,
    discard,
    judge,
    launch,
    load_average,
    make_job,
    run_contestant,
    verify,
)
from bench.migrate_world import (
    PARTS_PER_ROW,
    World,
    build_big,
    build_rows_only,
    build_workload,
    source_schema,
)
from djbridge.mysql import connect, quote
from djbridge.postgres import connect_pg, pg_quote

TARGET_RSS_MIB = 256
TARGET_PGLOADER = 1.5
PGLOADER_USER, PGLOADER_PASS = "pgl", "pgl-bench-pw"
PGLOADER_SCHEMA = "pgl_rows"
MIB = 1 << 20


def run_big(world: World, args: argparse.Namespace) -> list[str]:
    """Move 2 rows with a big attachment each with djbridge and the floor; report memory."""
    print(f"\nbig: building 2 rows with a {args.big_mib} MiB attach@ each ...", flush=True)
    built = build_big(world, 2, args.big_mib * MIB)
    print(f"  built in {built:.1f} s", flush=True)
    tables = [["big", ["payload"]]]
    lines = [f"\n[big: 2 rows, {args.big_mib} MiB attach@ each, file stores; "
             f"load {load_average()}]"]  # fmt: skip
    for name in ("djbridge", "floor"):
        job = make_job(world, "big", name, 1, tables, source_schema("big"))
        folder = world.scratch / "runs" / f"big-{name}"
        try:
            declare_tables(world, job, folder / "declare")
            print(f"  big: {name} ...", flush=True)
            outcome = run_contestant(world, job, folder, {}, None, 2)
            judge(outcome, count_rows(world, job), count_objects(job), verify(world, job, folder),
                  {"big": 2}, 2, 2)  # fmt: skip
        except BenchError as err:
            outcome = Outcome(name, "big", status=f"FAILED: {err}")
        discard(job)
        target = ""
        if name == "djbridge" and outcome.status == "ok":
            met = outcome.peak_mib <= TARGET_RSS_MIB
            target = f"(target <= {TARGET_RSS_MIB} MiB: {'met' if met else 'MISSED'})"
        lines.append(f"{name:<10}{outcome.seconds:>9.2f} s  peak {outcome.peak_mib:7.1f} MiB  "
                     f"{target} {outcome.status}")  # fmt: skip
        print("  " + lines[-1], flush=True)
    return lines


def pgloader_command(world: World, folder: Path) -> Path:
    """Write pgloader's load file (MySQL/MariaDB -> PostgreSQL) and return its path."""
    src, dest = world.source, world.dest
    text = (
        "LOAD DATABASE\n"
        f"  FROM mysql://{PGLOADER_USER}:{PGLOADER_PASS}@{src.host}:{src.port}/"
        f"{source_schema('rows')}\n"
        f"  INTO postgresql://{dest.user}:{dest.password}@{dest.host}:{dest.port}/"
        f"{dest.database or 'postgres'}\n"
        f"  ALTER SCHEMA '{source_schema('rows')}' RENAME TO '{PGLOADER_SCHEMA}';\n"
    )
    path = folder / "rows.load"
    path.write_text(text)
    return path


def pgloader_account(world: World) -> None:
    """Create the read-only account pgloader logs in with (``mysql_native_password``)."""
    db = connect(world.source)
    try:
        db.execute(f"CREATE USER IF NOT EXISTS '{PGLOADER_USER}'@'%' "
                   f"IDENTIFIED BY '{PGLOADER_PASS}'")  # fmt: skip
        db.execute(f"GRANT SELECT ON {quote(source_schema('rows'))}.* TO '{PGLOADER_USER}'@'%'")
    finally:
        db.close()


def pgloader_counts(world: World) -> dict[str, int]:
    """Count pgloader's rows in PostgreSQL."""
    pg = connect_pg(world.dest)
    try:
        return {t: int(pg.query(f"SELECT COUNT(*) FROM {pg_quote(PGLOADER_SCHEMA, t)}")[0][0])
                for t in ("recording", "recording__channel")}  # fmt: skip
    finally:
        pg.close()


def ensure_rows_schema(world: World, args: argparse.Namespace) -> str:
    """Build ``bench_mig_rows`` from a kind's workload (built now if the main part did not)."""
    kind = args.kinds[0]
    db = connect(world.source)
    try:
        exists = db.schema_exists(source_schema(kind))
    finally:
        db.close()
    if not exists:
        build_workload(world, kind, args.rows)
    return f"built in {build_rows_only(world, kind):.1f} s"


def run_pgloader(world: World, args: argparse.Namespace) -> list[str]:
    """Time pgloader and ``dj-migrate run`` on the rows alone; return the report's lines."""
    head = (
        f"\n[rows alone: {args.rows} rows + {args.rows * PARTS_PER_ROW} parts, no external columns]"
    )
    binary = shutil.which("pgloader")
    if binary is None or args.destination != "postgresql" or args.source != "mariadb":
        why = (
            "pgloader is not installed (apt-get install -y pgloader)"
            if binary is None
            else "pgloader needs a MariaDB source (mysql_native_password) and PostgreSQL"
        )
        return [head, f"skipped: {why}"]  # fmt: skip
    print(f"\nrows alone: {ensure_rows_schema(world, args)}", flush=True)
    pgloader_account(world)
    folder = world.scratch / "runs" / "pgloader"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [head + f"; load {load_average()}"]
    expect = {"recording": args.rows, "recording__channel": args.rows * PARTS_PER_ROW}
    try:
        print("  rows: pgloader ...", flush=True)
        command = [binary, "--no-ssl-cert-verification", str(pgloader_command(world, folder))]
        measured = launch(command, folder, "pgloader", child_env(world))
        counts = pgloader_counts(world)
        status = "ok" if counts == expect else f"WRONG RESULT: {counts}, want {expect}"
        pgl = Outcome("pgloader", "rows", args.rows, measured["seconds"],
                      measured["peak_kib"] / 1024, status=status)  # fmt: skip
    except (BenchError, subprocess.SubprocessError) as err:
        pgl = Outcome("pgloader", "rows", status=f"FAILED: {err}")
    outcomes = [pgl]
    for n, declared in ((1, False), (2, True)):
        outcomes.append(rows_by_djbridge(world, folder / f"dj{n}", n, declared, expect))
    for o in outcomes:
        rate = f"{o.rows / o.seconds:>9.0f} rows/s" if o.seconds else ""
        lines.append(
            f"{o.name:<24}{o.seconds:>9.2f} s {rate}  peak {o.peak_mib:7.1f} MiB  {o.status}"
        )
    for ours in outcomes[1:]:
        if pgl.status == "ok" and ours.status == "ok":
            value = ours.seconds / pgl.seconds
            met = "met" if value <= TARGET_PGLOADER else "MISSED"
            lines.append(
                f"{ours.name} / pgloader: {value:.2f}x (target <= {TARGET_PGLOADER:g}x: {met})"
            )
    return lines


def rows_by_djbridge(
    world: World, folder: Path, n: int, declared: bool, expect: dict[str, int]
) -> Outcome:
    """Run ``dj-migrate run`` on the rows alone: declaring timed, or done beforehand."""
    tables: list[list[Any]] = [["recording", []], ["recording__channel", []]]
    job = make_job(world, "rows", "djbridge", n, tables, source_schema("rows"))
    label = "djbridge (pre-declared)" if declared else "djbridge"
    try:
        if declared:
            declare_tables(world, job, folder / "declare")
        print(f"  rows: {label} ...", flush=True)
        ours = run_contestant(world, job, folder, {}, None)
        checked = verify(world, job, folder)
        judge(ours, count_rows(world, job), 0, checked, expect, 0, sum(expect.values()))
    except BenchError as err:
        ours = Outcome("djbridge", "rows", status=f"FAILED: {err}")
    ours.name = label
    return ours
