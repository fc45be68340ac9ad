"""Two processes on one link at once, and a source lab flagging rows during a pull.

Both processes are children forked by the driver (``driver.py``) with their own
connections, released together by a barrier file after each has decorated its
class, so their batches really interleave on the servers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from djbridge.link.states import Persisted, State, classify
from tests.integration.linkworld import World, build_pipeline
from tests.reliability.faults import (
    Key,
    Lane,
    Zygote,
    flag,
    new_lane,
    outbound,
    source_keys,
    table_rows,
    verify_all,
)

RETRYABLE = ("run again", "Deadlock", "Lock wait timeout")


@pytest.mark.parametrize(
    ("world", "rounds"), [("file", 4), pytest.param("s3", 2, marks=pytest.mark.slow)],
    indirect=["world"],
)  # fmt: skip
def test_two_processes_pulling_overlapping_keys_at_once(
    zygote: Zygote, world: World, schema_factory: Any, tmp_path: Path, rounds: int
) -> None:
    source = build_pipeline(world, n=12)["Recording"]
    first, second = list(range(0, 8)), list(range(4, 12))
    for attempt in range(rounds):
        lane = new_lane(world, schema_factory, f"pair{attempt}")
        go = tmp_path / f"go{attempt}"
        cases = [
            lane.case("pull", rec_ids=ids, batch_size=size, ready=str(tmp_path / f"r{attempt}{n}"),
                      go=str(go))
            for n, (ids, size) in enumerate([(first, 2), (second, 3)])
        ]  # fmt: skip
        zygote.start(cases)
        deadline = time.monotonic() + 60
        while not all(Path(c["ready"]).exists() for c in cases) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()
        codes = zygote.wait()
        reports = [Lane.report(c) for c in cases]
        for code, report in zip(codes, reports, strict=True):
            # Each finishes, or says clearly that another process was in the way.
            assert code == 0 or (
                code == 3 and report["module"].startswith("djbridge")
                and any(hint in report["error"] for hint in RETRYABLE)
            ), report  # fmt: skip
        for code, case in zip(codes, cases, strict=True):
            if code != 0:  # one rerun of the process that gave way converges
                again = lane.case("pull", rec_ids=case["rec_ids"], batch_size=case["batch_size"])
                assert zygote.run([again]) == [0], Lane.report(again)
        if codes == [0, 0]:
            # The two pulls ran at the same time and together copied every row once.
            assert max(r["began"] for r in reports) < min(r["ended"] for r in reports)
            assert sum(r["copied"] for r in reports) == 12
        both = {k for k in source_keys(world) if k[1] in set(first) | set(second)}
        verify_all(lane.world, "pull", source, tmp_path, keys=both)
        assert len(table_rows(lane.world, "local", "recording")) == 12


def state_of(lane: Lane, key: Key) -> State:
    out = outbound(lane.world)
    local = {r[:2] for r in table_rows(lane.world, "local", "recording")}
    process, flagged, _ = out.get(key, ("NONE", "FALSE", "FALSE"))
    return classify(Persisted(True, key in out, key in local, process, flagged == "TRUE"))


@pytest.mark.parametrize("world", ["file"], indirect=True)
@pytest.mark.parametrize(("label", "nth"), [
    ("start_pull", 2),     # batch 1 Activated, the rest not yet started
    ("put", 15),           # batch 1 committed, batch 2 copying
    ("insert_part", 3),    # batch 2 inside its local transaction
    ("finish_pull", 2),    # all committed, the bookkeeping half done
])  # fmt: skip
def test_source_flags_rows_while_a_pull_runs(
    zygote: Zygote, world: World, schema_factory: Any, tmp_path: Path, label: str, nth: int
) -> None:
    """Flag one entity in each state the paused pull shows; nothing is lost.

    The pull reads states at the start of each round, so an entity flagged after
    that is still copied and ends *Tainted* (flagged, present locally), the state
    in which the local lab sees it in ``.source.flagged`` and deletes it. An
    entity flagged while it is Activated and the pull is killed would end
    *Deprecated* (see the SIGKILL matrix); here the pull runs to its end.
    """
    source = build_pipeline(world, n=9)["Recording"]
    lane = new_lane(world, schema_factory, "flags")
    go = tmp_path / "go"
    case = lane.case("pull", kill={"action": "pause", "label": label, "nth": nth, "go": str(go)})
    zygote.start([case])
    note = Path(case["result"]).with_suffix(".note")
    deadline = time.monotonic() + 60
    while not note.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert note.exists(), "the pull never reached the pause point"
    by_state: dict[State, Key] = {}
    for key in sorted(outbound(lane.world)):
        by_state.setdefault(state_of(lane, key), key)
    flagged = set(by_state.values())
    flag(lane.world, flagged)
    go.touch()
    assert zygote.wait() == [0], Lane.report(case)
    final = {key: state_of(lane, key) for key in source_keys(world)}
    assert {k for k, s in final.items() if s in (State.TAINTED, State.DEPRECATED)} == flagged
    assert all(s is State.SHARED for k, s in final.items() if k not in flagged)
    deprecated = {k for k in flagged if final[k] is State.DEPRECATED}
    verify_all(lane.world, "pull", source, tmp_path, deprecated=deprecated)
    # A second pull changes nothing: flagged rows are not pulled again or dropped.
    assert zygote.run([lane.case("pull")]) == [0]
    assert {key: state_of(lane, key) for key in source_keys(world)} == final
