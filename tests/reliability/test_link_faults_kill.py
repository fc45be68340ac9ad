"""SIGKILL a pull or a delete at seeded points; one resume run must converge.

Each test builds one source pipeline (8 recordings, two parts, blob@ and attach@
columns: 32 objects) and runs the operation once without faults in a forked child
to record its *trace*: every statement on either server, each local commit and
each object write, labelled with the step it belongs to. :func:`kill_plan` then
picks event numbers with ``random.Random(seed)`` so that every label is hit at
least once (``put`` three times), plus uniformly drawn ones. For each point a fresh
link (new outbound and local schemas over the same source) runs the operation in
a child that SIGKILLs itself at that event; then one resume run of the same
operation, and the checks of :mod:`tests.reliability.faults`: settled states,
local == source on the shared keys, no half rows, every tracked object present,
``dj-cleaner`` reclaims exactly the orphans, every row fetches equal to the source.

Every third pull kill also flags one entity that the kill left *Activated*
(outbound row, no local row) before resuming, as the source lab may: the state
machine must deprecate it, and the objects the killed run had already copied for
it become orphans that the cleaner must reclaim.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.linkworld import World, build_pipeline
from tests.reliability.faults import (
    DELETE_STEPS,
    PULL_STEPS,
    Key,
    Lane,
    Zygote,
    flag,
    kill_plan,
    new_lane,
    outbound,
    table_rows,
    verify_all,
)

FLAGGED_BEFORE_DELETE: set[Key] = {(1, 1), (2, 5)}


def run_ok(zygote: Zygote, lane: Lane, op: str) -> dict[str, Any]:
    case = lane.case(op)
    [code] = zygote.run([case])
    report = Lane.report(case)
    assert code == 0, report.get("trace", report)
    return report


def activated_keys(lane: Lane) -> list[Key]:
    local = {r[:2] for r in table_rows(lane.world, "local", "recording")}
    return sorted(k for k, v in outbound(lane.world).items() if v[0] == "PULL" and k not in local)


def kill_matrix(
    zygote: Zygote, world: World, schema_factory: Any, tmp_path: Path,
    op: str, total: int, seed: int,
) -> Counter[str]:  # fmt: skip
    source = build_pipeline(world, n=8)["Recording"]
    steps = PULL_STEPS if op == "pull" else DELETE_STEPS
    flagged = FLAGGED_BEFORE_DELETE if op == "delete" else set()

    def prepared(name: str) -> Lane:
        lane = new_lane(world, schema_factory, name, batch_size=3)
        if op == "delete":
            run_ok(zygote, lane, "pull")
            flag(lane.world, flagged)
        return lane

    reference = prepared("reference")
    trace = run_ok(zygote, reference, op)["events"]
    verify_all(reference.world, op, source, tmp_path, deprecated=flagged)

    killed: Counter[str] = Counter()
    reclaimed = 0
    for number, at in enumerate(kill_plan(trace, steps, total, seed)):
        lane = prepared(f"kill{at}")
        case = lane.case(op, kill={"at": at})
        [code] = zygote.run([case])
        note = Lane.report(case).get("note")
        assert code == -9, Lane.report(case)
        assert note == {"at": at, "label": trace[at - 1]}, "the run diverged from the reference"
        killed[note["label"]] += 1
        deprecated = set(flagged)
        if op == "pull" and number % 3 == 0 and (stuck := activated_keys(lane)):
            flag(lane.world, stuck[-1:])
            deprecated.add(stuck[-1])
        run_ok(zygote, lane, op)
        reclaimed += verify_all(lane.world, op, source, tmp_path, deprecated=deprecated)
    assert set(steps) <= set(killed)
    if op == "pull":
        assert reclaimed > 0, "no kill left orphans: the cleaner step proved nothing"
    return killed


@pytest.mark.slow
@pytest.mark.parametrize(("world", "op", "total", "seed"), [
    ("file", "pull", 22, 5), ("file", "delete", 16, 6),
    ("s3", "pull", 10, 7), ("s3", "delete", 6, 8),
], indirect=["world"])  # fmt: skip
def test_sigkill_at_seeded_points_then_one_resume_converges(
    zygote: Zygote, world: World, schema_factory: Any, tmp_path: Path,
    op: str, total: int, seed: int,
) -> None:  # fmt: skip
    killed = kill_matrix(zygote, world, schema_factory, tmp_path, op, total, seed)
    assert sum(killed.values()) >= total
