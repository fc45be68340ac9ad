"""Slow: a pull or a delete SIGKILLed before each of its statements is finished by the next one.

The kill points come from the link's own statement tracer (the hook
``tests/reliability`` uses under DataJoint 0.14): a pull or delete of two keys, in
batches of one, is killed just before its k-th statement on either server, for every
k. Each kill uses two keys of its own, so one process can first finish the previous
kill's keys (the next pull, or the next delete, of the same keys) and report them,
then start the next kill. Every pair must converge: pulled keys *Shared* with their
part rows and verify clean, deleted keys *Unshared* with nothing local, none stuck.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.link2.conftest import SAME_BACKEND
from tests.link2.twolabs import TwoLabs

ROWS = 100
FINISH = {
    "pull": """
pulled = (Recording().source & PREVIOUS).pull()
""",
    "delete": """
deleted = (Recording() & PREVIOUS).delete(safemode=False)
""",
}
STEP = """
import os
import signal

if PREVIOUS:
FINISH    status = (Recording().source & PREVIOUS).status()
    emit(keys=PREVIOUS, status=counts(status), stuck=status.stuck,
         local=sorted(k["rec_id"] for k in (Recording() & PREVIOUS).keys()),
         parts=len(Recording.Channel() & PREVIOUS),
         verify=(Recording() & PREVIOUS).verify().to_dict())
events = 0


def tracer(sql, params):
    global events
    events += 1
    if events == KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)


core = Recording._core
core.linked.ensure_connected()
core.linked.source_db.tracer = core.linked.local_db.tracer = tracer
if KEYS:
    VERB
    emit(events=events)
"""
VERBS = {
    "pull": "(Recording().source & KEYS).pull()",
    "delete": "(Recording() & KEYS).delete(safemode=False)",
}


def step(op: str, previous: list[dict[str, int]], keys: list[dict[str, int]], kill_at: int) -> str:
    """Return the script that finishes ``previous``, then runs ``op`` on ``keys``, killed."""
    finish = "".join(f"    {line}\n" for line in FINISH[op].strip().splitlines())
    return (
        STEP.replace("FINISH", finish)
        .replace("VERB", VERBS[op])
        .replace("PREVIOUS", json.dumps(previous))
        .replace("KEYS", json.dumps(keys))
        .replace("KILL_AT", str(kill_at))
    )


def converged(op: str, found: dict[str, Any], keys: list[dict[str, int]]) -> list[str]:
    """Return what is wrong with two keys after a kill and one more pull or delete."""
    ids = sorted(k["rec_id"] for k in keys)
    want = {
        "pull": ({"Shared": 2}, ids, 4),
        "delete": ({"Unshared": 2}, [], 0),
    }[op]
    have = (found["status"], found["local"], found["parts"])
    problems = [f"{ids}: status, local rows, part rows {have}, not {want}"] if have != want else []
    if found["stuck"]:
        problems.append(f"{ids}: stuck {found['stuck']}")
    if op == "pull" and not found["verify"]["ok"]:
        problems.append(f"{ids}: verify {found['verify']}")
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("op", ["pull", "delete"])
@pytest.mark.parametrize("pair", SAME_BACKEND, indirect=True)
def test_a_kill_before_any_statement_is_finished_by_the_next_run(labs: TwoLabs, op: str) -> None:
    labs.ready(range(ROWS), "small")
    header = labs.header(batch_size=1)
    if op == "delete":
        assert labs.run("emit(**summary(Recording().source.pull()))\n").result["rows"] == ROWS
    counted = labs.run(step(op, [], [{"rec_id": 0}, {"rec_id": 1}], 0), header=header)
    assert counted.code == 0, counted
    statements = counted.result["events"]
    assert 4 <= statements <= ROWS // 2 - 2, counted

    problems: list[str] = []
    previous = [{"rec_id": 0}, {"rec_id": 1}]
    for k in range(1, statements + 2):  # the last one only finishes the previous kill
        keys = [{"rec_id": 2 * k}, {"rec_id": 2 * k + 1}] if k <= statements else []
        run = labs.run(step(op, previous, keys, k), header=header)
        killed = run.code == -9
        assert killed or not keys, f"step {k} of {statements} was never reached: {run}"
        assert run.result is not None and run.result.get("keys") == previous, run
        problems += [f"killed at {k - 1}: {p}" for p in converged(op, run.result, previous)]
        previous = keys
    assert not problems, "\n".join(problems)
