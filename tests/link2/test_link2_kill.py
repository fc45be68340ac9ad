"""Slow: pulls and deletes on DataJoint 2.x that are killed or run at once, and big objects.

A pull in small batches is SIGKILLed twice at different points; the next pull
finishes: every source row is local exactly once, with its part rows, and plain 2.x
reads every value as the source has it. A killed delete is finished by the next
one. Two pulls of the same keys started together neither duplicate nor lose a row.
A pull of 300 MiB objects stays within 256 MiB of memory.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from djbridge.errors import DatabaseError
from tests.link2.checks import row_problems
from tests.link2.conftest import SAME_BACKEND
from tests.link2.twolabs import LOCAL_STORE, SOURCE_STORE, TwoLabs, open_db

ROWS = 150
RETRYABLE = ("run again", "deadlock", "lock wait timeout")
PULL = "result = Recording().source.pull()\nemit(**summary(result))\n"
CHECK = """
status = Recording().source.status()
emit(status=counts(status), stuck=status.stuck, verify=Recording().verify().to_dict())
"""

pytestmark = pytest.mark.slow


def kill_when(labs: TwoLabs, body: str, header: str, done: Callable[[int], bool]) -> int:
    """Start ``body``; SIGKILL it once ``done(local rows)``; return the local rows then."""
    table = labs.local.name(labs.local_schema, "recording")
    db = open_db(labs.local.admin if labs.local.backend == "mysql" else labs.local.account)
    process = labs.start(body, header=header)
    deadline = time.monotonic() + 120

    def local_rows() -> int:
        try:
            return int(db.query(f"SELECT COUNT(*) FROM {table}")[0][0])
        except DatabaseError:  # not declared yet
            return 0

    try:
        while time.monotonic() < deadline and process.poll() is None:
            if done(local_rows()):
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        _, err = process.communicate()
        rows = local_rows()
        db.close()
    assert process.returncode == -signal.SIGKILL, f"it ended by itself: {err[-2000:]}"
    return rows


@pytest.mark.parametrize("pair", SAME_BACKEND, indirect=True)
def test_a_killed_pull_is_finished_by_the_next(labs: TwoLabs) -> None:
    source = labs.ready(range(ROWS), "small", read=True)
    header = labs.header(batch_size=5)

    first = kill_when(labs, PULL, header, lambda rows: rows >= 10)
    second = kill_when(labs, PULL, header, lambda rows: rows >= first + 10)
    assert 10 <= first < second < ROWS

    run = labs.run(PULL, header=header)

    assert run.code == 0, run
    assert run.result["states"] == {"Shared": ROWS} and run.result["failed"] == [], run
    assert labs.local_ids() == list(range(ROWS))
    assert labs.local_ids("recording__channel") == sorted(list(range(ROWS)) * 2)
    check = labs.run(CHECK)
    assert check.result["status"] == {"Shared": ROWS} and check.result["stuck"] == [], check
    assert check.result["verify"]["ok"] is True, check
    local = labs.read_local()
    assert not row_problems(source, local), "\n".join(row_problems(source, local)[:40])


@pytest.mark.parametrize("pair", SAME_BACKEND, indirect=True)
def test_two_pulls_at_once_neither_duplicate_nor_lose_rows(labs: TwoLabs) -> None:
    labs.ready(range(ROWS), "small")
    header = labs.header(batch_size=5)

    pulls = [labs.start(PULL, header=header) for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in pulls]

    for process, (_, err) in zip(pulls, outputs, strict=True):
        # Each finishes, or says clearly that the other was in the way; a rerun then converges.
        if process.returncode != 0:
            assert any(hint in err.lower() for hint in RETRYABLE), err[-3000:]
            again = labs.run(PULL, header=header)
            assert again.code == 0, again
    assert labs.local_ids() == list(range(ROWS))
    assert labs.local_ids("recording__channel") == sorted(list(range(ROWS)) * 2)
    check = labs.run(CHECK)
    assert check.result["status"] == {"Shared": ROWS} and check.result["stuck"] == [], check
    assert check.result["verify"]["ok"] is True, check


DELETE = "emit(deleted=Recording().delete(safemode=False))\n"


@pytest.mark.parametrize("pair", SAME_BACKEND, indirect=True)
def test_a_killed_delete_is_finished_by_the_next(labs: TwoLabs) -> None:
    labs.ready(range(ROWS), "small")
    assert labs.run(PULL).result["rows"] == ROWS
    header = labs.header(batch_size=2)

    first = kill_when(labs, DELETE, header, lambda rows: rows <= ROWS - 10)
    second = kill_when(labs, DELETE, header, lambda rows: rows <= first - 10)
    assert 0 < second < first < ROWS

    run = labs.run(DELETE, header=header)

    assert run.code == 0, run
    assert labs.local_ids() == [] and labs.local_ids("recording__channel") == []
    assert labs.outbound() == {}  # every entity unshared: the source may delete it again
    check = labs.run(CHECK)
    assert check.result["status"] == {"Unshared": ROWS} and check.result["stuck"] == [], check


PEAK = """
result = Recording().source.pull()
verified = Recording().verify()
# VmHWM is this process's own peak: ru_maxrss would start from the peak of the process
# that spawned it (a vfork'ed child keeps it across exec), here the whole test session's.
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
emit(**summary(result), ok=verified.ok, peak_mib=peak / 1024)
"""


@pytest.mark.parametrize("pair", ["postgresql-to-postgresql"], indirect=True)
def test_memory_stays_bounded_whatever_the_object_size(labs: TwoLabs) -> None:
    big = 300 << 20
    labs.ready([1], "small", big=big)  # a 300 MiB attachment and a 300 MiB file object

    run = labs.run(PEAK, timeout=600)

    assert run.code == 0, run
    assert run.result["rows"] == 1 and run.result["bytes"] >= 2 * big, run
    assert run.result["ok"] is True, run
    assert run.result["peak_mib"] <= 256, run.result
    sizes = {
        name: sorted(o.size for o in labs.store(name).iter_objects("") if o.size > big)
        for name in (SOURCE_STORE, LOCAL_STORE)
    }
    assert len(sizes[LOCAL_STORE]) == 2 and sizes[LOCAL_STORE] == sizes[SOURCE_STORE], sizes
