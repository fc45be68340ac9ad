"""What one run of ``bench/link_pull.py`` decided and measured, and how it is shown.

The orchestrator (``bench/link_pull.py``) fills a :class:`Plan` from its flags and
one :class:`Outcome` per contestant and store kind; this module turns them into the
printed tables and the ``--json`` document. It keeps one rule for every ratio: a
contestant's pull time is scaled to the run's row count before it is compared, so a
contestant that ran on fewer rows (datajoint-link 0.11 with ``--original-rows``,
which grows linearly with the rows) is compared on its **extrapolated** time, and
every such figure is labelled so. Round trips are counted by the latency proxies
(``bench/latency_proxy.py``) inside each contestant's pull window, and shown per
1,000 rows.

    plan = Plan(rows=1000, kinds=["s3"], ...)
    report(plan, "s3", outcomes)              # the tables, the ratios, the notes
    json.dumps(as_json(plan, {"s3": outcomes}))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Plan:
    """What one run does: rows, store kinds, contestants and the python each one uses."""

    rows: int
    kinds: list[str]
    contestants: list[str]
    pythons: dict[str, Path]
    unavailable: dict[str, str]
    threads: dict[str, int]
    repeat: int
    scratch: Path
    original_rows: int
    latency_ms: float | None = None

    def rows_for(self, name: str) -> int:
        """Return how many source rows contestant ``name`` pulls."""
        return self.original_rows if name == "original" else self.rows


@dataclass
class Outcome:
    """What one contestant measured and what the checks found afterwards.

    ``round_trips`` holds the proxies' turns by server: ``db`` and ``s3`` inside the
    pull window, ``db_process`` and ``s3_process`` over the whole child process.
    """

    name: str
    status: str = "ok"
    timings: dict[str, float] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    rows: int = 0
    round_trips: dict[str, int] = field(default_factory=dict)

    def scaled_pull_s(self, rows: int) -> float:
        """Return the pull time scaled linearly from this contestant's rows to ``rows``."""
        return self.timings["pull_s"] * rows / self.rows

    def per_thousand(self, server: str) -> float | None:
        """Return the round trips to ``server`` (``db`` or ``s3``) per 1,000 rows pulled."""
        count = self.round_trips.get(server)
        return None if count is None else count * 1000 / self.rows


def ratios(plan: Plan, outcomes: Sequence[Outcome]) -> dict[str, float | None]:
    """Return the pull-time ratios the issue asks for (``None`` where one side is missing).

    Times are first scaled to ``plan.rows``: exact for contestants that pulled them
    all, extrapolated for one that ran on fewer (see :func:`extrapolated`).
    """
    pull = {o.name: o.scaled_pull_s(plan.rows) for o in outcomes if o.status == "ok"}

    def ratio(top: str, bottom: str) -> float | None:
        a, b = pull.get(top), pull.get(bottom)
        return a / b if a is not None and b else None

    return {
        "djbridge/floor": ratio("djbridge", "floor"),
        "original/djbridge": ratio("original", "djbridge"),
        "original/floor": ratio("original", "floor"),
    }


def extrapolated(plan: Plan, outcomes: Sequence[Outcome]) -> list[Outcome]:
    """Return the contestants that ran on fewer rows than ``plan.rows`` and finished."""
    return [o for o in outcomes if o.status == "ok" and o.rows != plan.rows]


def describe_stores(kind: str, plan: Plan) -> str:
    if kind == "file":
        return f"file stores in {plan.scratch} (tmpfs)"
    return "S3 stores: source and destination on two moto endpoints"


def describe_network(kind: str, plan: Plan) -> str:
    if plan.latency_ms is None:
        return "no latency proxies: every server on loopback, round trips not counted"
    through = (
        "the source database and the source S3 endpoint" if kind == "s3" else "the source database"
    )
    if not plan.latency_ms:
        return f"proxies without delay in front of {through}, counting round trips"
    rtt = 2 * plan.latency_ms
    return f"+{rtt:g} ms per round trip ({plan.latency_ms:g} ms each way) to {through}"


def report(plan: Plan, kind: str, outcomes: Sequence[Outcome]) -> None:
    """Print one store kind's table of times, landed rows and objects, and the ratios."""
    print(f"\n{describe_stores(kind, plan)}; {plan.rows} rows, {2 * plan.rows} objects")
    print(f"  network: {describe_network(kind, plan)}")
    head = f"  {'contestant':<10} {'pull s':>8} {'setup s':>8} {'process s':>9}"
    print(head + f" {'rows':>6} {'parts':>6} {'dst obj':>7} {'src obj':>7}  local columns")
    for o in outcomes:
        if not o.timings:
            print(f"  {o.name:<10} {o.status}")
            continue
        t, c = o.timings, o.checks
        cols = ", ".join(f"{k}:{v}" for k, v in sorted(c["columns"].items()))
        print(
            f"  {o.name:<10} {t['pull_s']:>8.2f} {t['setup_s']:>8.2f} {t['process_s']:>9.2f}"
            f" {c['rows']:>6} {c['parts']:>6} {c['dst_objects']:>7} {c['src_objects']:>7}  {cols}"
        )
        if o.status != "ok":
            print(f"  {'':<10} {o.status}")
    print_per_row(plan, outcomes)
    shown = [f"{k} {v:.2f}x" for k, v in ratios(plan, outcomes).items() if v is not None]
    late = extrapolated(plan, outcomes)
    label = f" [{', '.join(o.name for o in late)} extrapolated]" if late else ""
    print(
        "  ratios (pull time)" + label + ": " + (", ".join(shown) or "none (too few contestants)")
    )
    print_notes(plan, kind, outcomes)


def print_per_row(plan: Plan, outcomes: Sequence[Outcome]) -> None:
    """Print each contestant's time per row, its ratio to the floor and its round trips."""
    done = [o for o in outcomes if o.status == "ok"]
    floor = next((o for o in done if o.name == "floor"), None)
    print(
        f"  {'contestant':<10} {'rows':>6} {'pull s':>8} {'ms/row':>8} {'x floor':>9}"
        f" {'db trips/1k rows':>17} {'s3 trips/1k rows':>17}"
    )
    for o in done:
        versus = (
            f"{o.scaled_pull_s(plan.rows) / floor.scaled_pull_s(plan.rows):.2f}x" if floor else "-"
        )
        trips = [o.per_thousand(server) for server in ("db", "s3")]
        shown = [f"{n:>17,.0f}" if n is not None else f"{'-':>17}" for n in trips]
        mark = "*" if o.rows != plan.rows else " "
        print(
            f"  {o.name:<10} {o.rows:>6} {o.timings['pull_s']:>8.2f}"
            f" {1000 * o.timings['pull_s'] / o.rows:>8.2f} {versus:>8}{mark} {' '.join(shown)}"
        )
    for o in extrapolated(plan, done):
        print(
            f"  * {o.name} ran on {o.rows} rows, x floor per row; EXTRAPOLATED to {plan.rows}"
            f" rows: {o.scaled_pull_s(plan.rows):.1f} s pull (measured {o.timings['pull_s']:.2f} s)"
        )


def print_notes(plan: Plan, kind: str, outcomes: Sequence[Outcome]) -> None:
    """Print the floor's phases, the runs behind each best time, and the tools' warnings."""
    for o in outcomes:
        t = o.timings
        if o.name == "floor" and "copy_s" in t:
            print(
                f"  floor phases: read {t['read_s']:.2f} s, copy {t['copy_s']:.2f} s "
                f"({plan.threads[kind]} threads), insert {t['insert_s']:.2f} s"
            )
        if len(o.checks.get("pull_runs_s", ())) > 1:
            print(f"  {o.name} pull runs (s): {o.checks['pull_runs_s']}")
        if o.round_trips:
            whole = ", ".join(
                f"{server} {o.round_trips[f'{server}_process']}"
                for server in ("db", "s3")
                if f"{server}_process" in o.round_trips
            )
            print(f"  {o.name} round trips over the whole process (setup included): {whole}")
        for line in o.checks.get("warnings", ()):
            print(f"  {o.name} warned: {line[:150]}")


def as_json(plan: Plan, results: dict[str, list[Outcome]]) -> dict[str, Any]:
    return {
        "rows": plan.rows,
        "original_rows": plan.original_rows,
        "latency_ms_one_way": plan.latency_ms,
        "file_store_root": str(plan.scratch),
        "floor_threads": plan.threads,
        "repeat": plan.repeat,
        "kinds": {
            kind: {
                "contestants": {
                    o.name: {
                        "status": o.status,
                        "rows": o.rows,
                        "timings": o.timings,
                        "checks": o.checks,
                        "round_trips": o.round_trips,
                        "round_trips_per_1000_rows": {
                            server: o.per_thousand(server)
                            for server in ("db", "s3")
                            if server in o.round_trips
                        },
                    }
                    for o in outcomes
                },
                "ratios": ratios(plan, outcomes),
                "extrapolated_pull_s": {
                    o.name: o.scaled_pull_s(plan.rows) for o in extrapolated(plan, outcomes)
                },
            }
            for kind, outcomes in results.items()
        },
    }
