"""What ``bench/link2.py`` measures, and how it is shown: workloads, outcomes, the tables.

A :class:`Workload` says what one pull moves and what must land; an :class:`Outcome` is
one contestant's attempt at it (times, peak RSS, round trips, what the checks found). The
rule for every ratio is the same: each contestant's fastest good pull, djbridge's over the
floor's (target <= 1.5x); a big workload is judged on djbridge's peak RSS (<= 256 MiB).

    lines = report(world, load, [djbridge, floor])   # one workload's table and ratio
    final_table(world, lines)                          # every workload in one table
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.link2_world import World

TARGET_RATIO, TARGET_RSS_MIB = 1.5, 256


@dataclass
class Workload:
    """One thing to pull: a source table (and parts), its stores and what must land."""

    kind: str  # "file" or "s3": where both stores live
    area: str  # the source store's folder: "file", "s3" or "big"
    label: str  # as the report names it
    source_schema: str
    table: str  # the class name given to the decorator
    tables: list[tuple[str, dict[str, str]]]  # SQL names (master first), codec per column
    rows: int
    parts: int
    objects: int
    check_ids: list[int] = field(default_factory=list)  # read back by plain 2.x
    value_bytes: int = 0  # big rows: each object's size, an attachment's name and NUL aside


@dataclass
class Outcome:
    """One contestant's attempt: its times, memory, round trips and what the checks found."""

    name: str
    label: str
    run: int
    status: str = "ok"
    pull_s: float = 0.0
    setup_s: float = 0.0  # djbridge: the decorator; floor: connecting
    import_s: float = 0.0
    process_s: float = 0.0
    peak_mib: float = 0.0
    copied: dict[str, int] = field(default_factory=dict)
    landed: dict[str, Any] = field(default_factory=dict)
    trips: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)  # the floor's read, copy, insert
    runs: list[list[float]] = field(default_factory=list)  # every run's [pull s, peak MiB]


def ratio(outcomes: Sequence[Outcome]) -> float | None:
    """Return djbridge's best pull time over the floor's, when both finished."""
    by = {o.name: o for o in outcomes if o.status == "ok"}
    if "djbridge" not in by or "floor" not in by or not by["floor"].pull_s:
        return None
    return by["djbridge"].pull_s / by["floor"].pull_s


def describe(world: World, load: Workload) -> str:
    """Return the heading of one workload's table: sizes, servers, stores, network."""
    where = "/dev/shm" if str(world.scratch).startswith("/dev/shm") else "on disk"
    stores = f"file stores in {where}" if load.kind == "file" else "S3 (one moto endpoint)"
    if world.turns is None:
        net = "no added latency"
    elif world.rtt_ms:
        net = f"+{world.rtt_ms:g} ms per round trip to the source database"
    else:
        net = "a proxy without delay in front of the source database, counting round trips"
    return (f"[{load.label}: {load.rows} rows, {load.parts} part rows, {load.objects} objects; "
            f"{world.backend} -> {world.backend}; {stores}; {net}]")  # fmt: skip


def report(world: World, load: Workload, outcomes: Sequence[Outcome]) -> list[str]:
    """Print one workload's table, every run and the verdict; return its final-table line."""
    print("\n" + describe(world, load))
    head = f"  {'contestant':<10}{'pull s':>8}{'setup s':>9}{'process s':>10}{'peak MiB':>10}"
    trips = world.turns is not None
    print(head + (f"{'db trips/1k rows':>18}{'(whole process)':>16}" if trips else "") + "  result")
    for o in outcomes:
        line = (f"  {o.name:<10}{o.pull_s:>8.2f}{o.setup_s:>9.2f}{o.process_s:>10.2f}"
                f"{o.peak_mib:>10.1f}")  # fmt: skip
        if trips:
            pull, whole = (o.trips.get(k, 0) * 1000 / load.rows for k in ("db", "db_process"))
            line += f"{pull:>18.0f}{whole:>16.0f}"
        print(f"{line}  {o.status}")
    print_runs(load, outcomes)
    value = ratio(outcomes)
    print_verdict(load, outcomes, value)
    return [summary_line(load, outcomes, value)]


def print_runs(load: Workload, outcomes: Sequence[Outcome]) -> None:
    """Print each contestant's S3 requests, every run's pull and peak RSS, the floor's phases."""
    for o in outcomes:
        if "s3" in o.trips:
            print(f"  {o.name} S3 requests in its pull: {o.trips['s3']} "
                  f"({o.trips['s3'] / max(load.objects, 1):.2f} per object)")  # fmt: skip
    for o in outcomes:
        shown = ", ".join(f"{pull:.2f} s / {peak:.0f} MiB" for pull, peak in o.runs)
        print(f"  {o.name} runs (pull / peak RSS): {shown}")
        if o.phases:
            print(f"  {o.name} phases of its best run: "
                  + ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in o.phases.items()))  # fmt: skip


def print_verdict(load: Workload, outcomes: Sequence[Outcome], value: float | None) -> None:
    """Print the ratio against its target, and for big rows djbridge's peak RSS against 256."""
    dj = next((o for o in outcomes if o.name == "djbridge"), None)
    if load.value_bytes and dj is not None:
        met = "met" if dj.status == "ok" and dj.peak_mib <= TARGET_RSS_MIB else "MISSED"
        print(f"  djbridge peak RSS: {dj.peak_mib:.1f} MiB (target <= {TARGET_RSS_MIB} MiB: {met})")
    if value is None:
        print("  djbridge / floor: n/a")
        return
    met = "met" if value <= TARGET_RATIO else "MISSED"
    target = "" if load.value_bytes else f" (target <= {TARGET_RATIO:g}x: {met})"
    print(f"  djbridge / floor: {value:.2f}x{target}")


def summary_line(load: Workload, outcomes: Sequence[Outcome], value: float | None) -> str:
    """Return one workload's line of the final table."""
    by = {o.name: o for o in outcomes}
    dj, fl = by["djbridge"], by["floor"]
    trips = f"{dj.trips['db'] * 1000 / load.rows:.0f}" if "db" in dj.trips else "-"
    s3 = "/".join(f"{o.trips['s3'] / load.objects:.2f}" if "s3" in o.trips else "-"
                  for o in (dj, fl))  # fmt: skip
    shown = f"{value:.2f}x" if value is not None else "n/a"
    ok = "ok" if dj.status == fl.status == "ok" else "CHECK"
    return (f"{load.label:<24}{dj.pull_s:>9.2f}{dj.setup_s:>9.2f}{fl.pull_s:>9.2f}{shown:>8}"
            f"{dj.peak_mib:>9.1f}{fl.peak_mib:>9.1f}{trips:>12}{s3:>12}  {ok}")  # fmt: skip


def final_table(world: World, lines: list[str]) -> None:
    """Print every workload's figures in one compact table."""
    net = f"{world.rtt_ms:g} ms RTT" if world.rtt_ms else "no added latency"
    print(f"\n== link2 figures ({world.backend}, {net}; load {load_average()}) ==")
    print(f"{'workload':<24}{'dj pull':>9}{'dj decl':>9}{'floor':>9}{'ratio':>8}"
          f"{'dj MiB':>9}{'fl MiB':>9}{'db trips/1k':>12}{'s3 req/obj':>12}")  # fmt: skip
    print(f"{'':<24}{'s':>9}{'s':>9}{'s':>9}{'':>8}{'peak':>9}{'peak':>9}{'(dj pull)':>12}"
          f"{'(dj/floor)':>12}")  # fmt: skip
    for line in lines:
        print(line)


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages, for the report."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())
