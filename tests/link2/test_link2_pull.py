"""Pulls on DataJoint 2.x: restricted with ``&``, idempotent, counted by status(), with a bar."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from tests.link2.conftest import SAME_BACKEND
from tests.link2.runner import write_config
from tests.link2.twolabs import TwoLabs

RESTRICTED = """
def local_ids():
    return sorted(key["rec_id"] for key in Recording().keys())


source = Recording().source
first = (source & "kind = 'imaging'").pull()          # recordings 1 and 4
after_first = local_ids()
by_key = (Recording().source & [{"rec_id": 0}]).pull()
middle = counts(Recording().source.status())
again = (Recording().source & "kind = 'imaging'").pull()
rest = Recording().source.pull()
last = Recording().source.pull()
status = Recording().source.status()
emit(
    first=summary(first), after_first=after_first, by_key=summary(by_key), middle=middle,
    again=summary(again), rest=summary(rest), last=summary(last), final=counts(status),
    stuck=status.stuck, ids=local_ids(), parts=len(Recording.Channel()),
    browse=len(Recording().source & "rec_id >= 3"),
)
"""
NOTHING = {"rows": 0, "parts": 0, "objects": 0, "bytes": 0, "failed": []}


@pytest.mark.parametrize("pair", SAME_BACKEND, indirect=True)
def test_restricted_pulls_then_pulls_of_nothing_new(labs: TwoLabs) -> None:
    labs.ready(range(5))

    run = labs.run(RESTRICTED)

    assert run.code == 0, run
    r = run.result
    assert (r["first"]["rows"], r["first"]["parts"], r["after_first"]) == (2, 4, [1, 4]), run
    assert r["first"]["states"] == {"Shared": 2} and r["first"]["objects"] > 0
    assert (r["by_key"]["rows"], r["by_key"]["states"]) == (1, {"Shared": 1})
    assert r["middle"] == {"Shared": 3, "Unshared": 2}
    assert r["again"] == {**NOTHING, "states": {"Shared": 2}}  # a second pull copies nothing
    assert (r["rest"]["rows"], r["rest"]["parts"], r["rest"]["states"]) == (2, 4, {"Shared": 5})
    assert r["last"] == {**NOTHING, "states": {"Shared": 5}}
    assert (r["final"], r["stuck"]) == ({"Shared": 5}, [])
    assert (r["ids"], r["parts"], r["browse"]) == ([0, 1, 2, 3, 4], 10, 2)
    assert labs.local_ids() == [0, 1, 2, 3, 4]
    assert labs.local_ids("recording__channel") == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert labs.outbound() == {n: ("NONE", "FALSE", "FALSE") for n in range(5)}


PROGRESS = """
import sys

(Recording().source & "rec_id < 2").pull()  # no bar unless asked (stderr is no terminal here)
print("@@bar", file=sys.stderr, flush=True)
Recording().source.pull(display_progress=True)
emit(ok=True)
"""


def test_display_progress_draws_a_bar_counting_rows_and_bytes(labs: TwoLabs) -> None:
    labs.ready(range(4))

    run = labs.run(PROGRESS)

    assert run.code == 0 and run.result == {"ok": True}, run
    quiet, shown = run.stderr.split("@@bar\n")
    assert "%|" not in quiet and "PULL" not in quiet, quiet
    assert re.search(r"PULL.*100%\|.*\| 4/4", shown), shown  # every requested row counted
    assert re.search(r"\d (B|kB|MB)\b", shown), shown  # and the bytes copied beside it


def test_backend_and_database_default_to_the_local_ones(labs: TwoLabs) -> None:
    labs.ready(range(2))  # the source pipeline, in the source lab's PostgreSQL database
    local = labs.local.account
    labs.source.sql(f"GRANT CREATE ON DATABASE {labs.source.database} TO {local.user}")
    write_config(labs.workdir, replace(local, database=labs.source.database), labs.stores)

    run = labs.run(
        "emit(**summary(Recording().source.pull()))\n", header=labs.header(backend=False)
    )

    assert run.code == 0 and run.result["rows"] == 2, run
    assert "backend=" not in labs.header(backend=False)
    assert labs.source.tables(labs.local_schema) == ["recording", "recording__channel", "~lineage"]
