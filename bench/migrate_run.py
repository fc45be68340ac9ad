"""Running the contestants of ``bench/migrate.py``: one process each, timed, measured, checked.

A contestant is a command line (or two, for the lab's script) run through
``bench/migrate_launch.py``, which reports the wall time from start to exit and the
contestant's own peak RSS. Around it, this module owns:

* the **job** of one attempt (:func:`make_job`): the source schema, a fresh destination
  schema and a fresh destination store location, as the contestant reaches them;
* **declaring** a destination schema beforehand (:func:`declare_tables`): ``dj-migrate run``
  from the source schema's empty twin, so every contestant starts on tables DataJoint 2.x
  declared, with ``~lineage``, and no contestant pays for it (it is not timed);
* **checking** what landed (:func:`inspect_landing`): rows and part rows counted at the
  destination, objects counted in the destination store, and ``dj-migrate verify`` against
  the full source (not timed), which compares every row and every object;
* **counting round trips**: the latency proxies' turns inside the contestant's window.

    job = make_job(world, "file", "floor", 1, tables)
    declare_tables(world, job, scratch)
    outcome = run_contestant(plan, world, job, ["floor"])
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.latency_proxy import Turns
from bench.migrate_world import (
    DEST_STORE,
    World,
    migrate_toml,
    password_env,
    server_dict,
    source_schema,
    source_store,
)
from djbridge.migrate.target import open_destination
from djbridge.stores import store_from_dj_spec

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / "bench" / "migrate_launch.py"
DJ014_PYTHON = ROOT / ".venv" / "bin" / "python"
DJ2_BIN = ROOT / ".venv-dj2" / "bin"
SCRIPT = "bench.migrate_script"  # as a module: bench/numbers.py would shadow numbers
TIMEOUT_S = 7200
MIB = 1024


class BenchError(Exception):
    """A contestant or a setup step failed; the message says which and why."""


@dataclass
class Outcome:
    """One contestant's attempt: time, memory, round trips and what the checks found."""

    name: str
    kind: str
    rows: int = 0  # master rows it moved
    seconds: float = 0.0
    peak_mib: float = 0.0
    turns: dict[str, int] = field(default_factory=dict)
    status: str = "ok"
    note: str = ""
    steps: dict[str, Any] = field(default_factory=dict)


def make_job(world: World, kind: str, name: str, attempt: int,
             tables: list[list[Any]], schema: str = "") -> dict[str, Any]:  # fmt: skip
    """Return one attempt's job: where it reads, and its fresh schema and store location."""
    place = f"{kind}-{name}{attempt}"
    job: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "source": server_dict(world.source_for_contestants()),
        "dest": server_dict(world.dest),
        "source_schema": schema or source_schema(kind),
        "dest_schema": f"m_{kind}_{name}{attempt}".replace("-", "_"),
        "tables": tables,
    }
    if any(columns for _, columns in tables):
        job.update(
            source_store=source_store(kind),
            source_spec=world.source_spec(kind, direct=False),
            dest_store=DEST_STORE,
            dest_spec=world.dest_spec(kind, place),
        )
    return job


def write_config(world: World, job: dict[str, Any], folder: Path, *, source_schema: str = "",
                 direct: bool = False) -> Path:  # fmt: skip
    """Write a ``dj-migrate.toml`` for ``job`` into ``folder`` and return its path.

    ``direct`` reaches the source without the latency proxies (the untimed steps);
    ``source_schema`` replaces the job's (the empty twin, to declare).
    """
    folder.mkdir(parents=True, exist_ok=True)
    view = dict(job, source_schema=source_schema or job["source_schema"])
    if direct and "source_spec" in view:
        view["source_spec"] = world.source_spec(job["kind"])
    proxied = world.source_host
    if direct:
        world.source_host = world.source.address
    try:
        text = migrate_toml(world, view)
    finally:
        world.source_host = proxied
    path = folder / ("dj-migrate.toml" if not source_schema else "declare.toml")
    path.write_text(text)
    return path


def dj_migrate(world: World, command: str, config: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    """Run ``dj-migrate COMMAND`` (untimed); return its exit status and report."""
    report = config.with_suffix(f".{command}.json")
    done = subprocess.run(
        [str(DJ2_BIN / "dj-migrate"), command, "--config-file", str(config), "--no-progress",
         "--report", str(report), *extra],
        capture_output=True, text=True, env=password_env(world), cwd=config.parent,
        timeout=TIMEOUT_S,
    )  # fmt: skip
    parsed = json.loads(report.read_text()) if report.exists() else {}
    if done.returncode not in (0, 1) or not parsed:
        tail = (done.stderr or done.stdout).strip()[-800:]
        raise BenchError(f"dj-migrate {command} exited {done.returncode}: {tail}")
    return done.returncode, parsed


def declare_tables(world: World, job: dict[str, Any], folder: Path) -> float:
    """Declare the job's destination tables from the empty twin (untimed); return seconds."""
    started = time.perf_counter()
    config = write_config(world, job, folder, source_schema=job["source_schema"] + "_empty",
                          direct=True)  # fmt: skip
    code, report = dj_migrate(world, "run", config)
    if code != 0:
        raise BenchError(f"declaring {job['dest_schema']} failed: {json.dumps(report)[:800]}")
    return time.perf_counter() - started


def launch(command: list[str], folder: Path, label: str, env: dict[str, str]) -> dict[str, Any]:
    """Run ``command`` through the launcher; return its seconds, peak KiB and output tail."""
    result = folder / f"{label}.launch.json"
    log = folder / f"{label}.log"
    with log.open("w") as out:
        subprocess.run(
            [sys.executable, "-S", str(LAUNCHER), str(result), "--", *command],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder, timeout=TIMEOUT_S,
        )  # fmt: skip
    measured: dict[str, Any] = json.loads(result.read_text())
    if measured["status"] != 0:
        tail = log.read_text(errors="replace").strip()[-1200:]
        raise BenchError(f"{label} exited {measured['status']}:\n    {tail}")
    return measured


def child_env(world: World) -> dict[str, str]:
    """Return a contestant's environment: this checkout on the path, no venv leftovers."""
    env = password_env(world)
    for leftover in ("VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(leftover, None)
    env["PYTHONPATH"] = str(ROOT)
    env["DJ_SUPPORT_FILEPATH_MANAGEMENT"] = "TRUE"
    return env


def commands(world: World, job: dict[str, Any], folder: Path, script_rows: int | None,
             threads: int) -> list[tuple[str, list[str]]]:  # fmt: skip
    """Return the labelled command lines of one contestant, run one after the other."""
    name = job["name"]
    job_path = folder / "job.json"
    job_path.write_text(json.dumps(job, indent=2))
    if name == "djbridge":
        config = write_config(world, job, folder)
        return [("run", [str(DJ2_BIN / "dj-migrate"), "run", "--no-progress",
                         "--config-file", str(config)])]  # fmt: skip
    if name == "floor":
        return [("floor", [str(DJ2_BIN / "python"), "-m", "bench.migrate_floor", str(job_path),
                           f"--threads={threads}"])]  # fmt: skip
    dump = folder / "dump"
    limit = ["--limit", str(script_rows)] if script_rows else []
    return [
        ("dump", [str(DJ014_PYTHON), "-m", SCRIPT, "dump", str(job_path), str(dump), *limit]),
        ("load", [str(DJ2_BIN / "python"), "-m", SCRIPT, "load", str(job_path), str(dump)]),
    ]


def run_contestant(world: World, job: dict[str, Any], folder: Path, turns: dict[str, Turns],
                   script_rows: int | None = None, threads: int = 8) -> Outcome:  # fmt: skip
    """Run one contestant's commands through the launcher; return its time and memory."""
    outcome = Outcome(job["name"], job["kind"])
    folder.mkdir(parents=True, exist_ok=True)
    env = child_env(world)
    began = time.monotonic()
    before = {server: len(t) for server, t in turns.items()}
    for label, command in commands(world, job, folder, script_rows, threads):
        measured = launch(command, folder, label, env)
        outcome.steps[label] = measured["seconds"]
        outcome.seconds += measured["seconds"]
        outcome.peak_mib = max(outcome.peak_mib, measured["peak_kib"] / MIB)
    ended = time.monotonic()
    for server, counted in turns.items():
        outcome.turns[server] = counted.between(began, ended)
        outcome.turns[f"{server}_all"] = len(counted) - before[server]
    return outcome


def count_rows(world: World, job: dict[str, Any]) -> dict[str, int]:
    """Count each of the job's tables at the destination."""
    dest = open_destination(world.dest)
    try:
        counts = {}
        for name, _ in job["tables"]:
            table = dest.table(job["dest_schema"], name)
            counts[name] = int(dest.db.query(f"SELECT COUNT(*) FROM {table}")[0][0])
        return counts
    finally:
        dest.close()


def count_objects(job: dict[str, Any]) -> int:
    """Count the objects in the job's destination store location."""
    if "dest_spec" not in job:
        return 0
    store = store_from_dj_spec(job["dest_store"], job["dest_spec"])
    return sum(1 for _ in store.iter_objects(""))


def verify(world: World, job: dict[str, Any], folder: Path) -> dict[str, int]:
    """Run ``dj-migrate verify`` against the full source (untimed); return its totals."""
    config = write_config(world, job, folder / "verify", direct=True)
    _, report = dj_migrate(world, "verify", config)
    totals = {"checked": 0, "missing": 0, "extra": 0, "differ": 0, "objects_bad": 0, "errors": 0}
    for schema in report["schemas"]:
        for table in schema["tables"]:
            totals["checked"] += int(table.get("checked") or 0)
            for key in ("missing", "extra", "differ"):
                totals[key] += len(table.get(key) or [])
            totals["objects_bad"] += len(table.get("objects_missing") or [])
            totals["objects_bad"] += len(table.get("objects_wrong") or [])
            totals["errors"] += 1 if table.get("error") else 0
    return totals


def judge(outcome: Outcome, counts: dict[str, int], objects: int, checked: dict[str, int],
          expect: dict[str, int], expect_objects: int, total_rows: int) -> None:  # fmt: skip
    """Mark ``outcome`` WRONG RESULT unless every count and the verification agree."""
    wrong = [
        f"{t}: {counts.get(t)} rows, want {n}" for t, n in expect.items() if counts.get(t) != n
    ]
    if objects != expect_objects:
        wrong.append(f"{objects} objects in the destination store, want {expect_objects}")
    moved = sum(expect.values())
    everything = total_rows
    if checked["missing"] != everything - moved:
        wrong.append(f"verify: {checked['missing']} missing, want {everything - moved}")
    for key in ("extra", "differ", "objects_bad", "errors"):
        if checked[key]:
            wrong.append(f"verify: {checked[key]} {key}")
    outcome.rows = next(iter(expect.values()))
    if wrong:
        outcome.status = "WRONG RESULT: " + "; ".join(wrong)


def discard(job: dict[str, Any]) -> None:
    """Free the destination store location (the /dev/shm pages, moto's memory)."""
    spec = job.get("dest_spec")
    if not spec:
        return
    if spec["protocol"] == "file":
        shutil.rmtree(spec["location"], ignore_errors=True)
        return
    store = store_from_dj_spec(job["dest_store"], spec)
    keys = [o.key for o in store.iter_objects("")]
    for start in range(0, len(keys), 1000):
        store.delete_many(keys[start : start + 1000])


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages, for the report."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())
