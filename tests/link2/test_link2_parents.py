"""A parent linked into the local schema first keeps the foreign key, on DataJoint 2.x.

The 0.14 link keeps a foreign key whose parent the lab linked into the same local
schema before; a parent that is not there is dropped and its columns kept. Here the
source's ``Recording`` references ``Subject`` (a secondary foreign key). The lab
links ``Subject`` first, then ``Recording``: plain 2.x must show the local
recording's parent as the local subject, joins and the parent's cascade must work,
and a recording whose subject is not local must not arrive without it.
"""

from __future__ import annotations

import re

import pytest

from tests.dj2.client import Driver
from tests.link2.checks import row_problems
from tests.link2.conftest import SAME_BACKEND
from tests.link2.twolabs import TwoLabs

PULL_SUBJECTS = """
result = (Subject().source & {restriction!r}).pull()
emit(**summary(result), local=sorted(k["subject_id"] for k in Subject().keys()))
"""
PULL_RECORDINGS = """
import datajoint as dj

try:
    Recording().source.pull()
    error = None
except Exception as err:
    error = f"{type(err).__name__}: {err}"
subject = dj.FreeTable(dj.conn(), Recording.parents()[0])
emit(error=error, parents=Recording.parents(),
     local=sorted(k["rec_id"] for k in Recording().keys()),
     joined=len(Recording() * subject), status=counts(Recording().source.status()))
"""


def subject_header(labs: TwoLabs) -> str:
    """The seed's decorator for ``Subject``, with an outbound table of its own."""
    return labs.header("Subject").replace("'Outbound'", "'SubjectOutbound'")


def bare(name: str) -> str:
    return re.sub(r'[`"]', "", name)


@pytest.mark.parametrize("pair", SAME_BACKEND, indirect=True)
def test_a_parent_linked_first_keeps_the_foreign_key(labs: TwoLabs, dj2: Driver) -> None:
    source = labs.ready(range(4), "small", read=True)

    first = labs.run(PULL_SUBJECTS.format(restriction={"subject_id": 1}),
                     header=subject_header(labs))  # fmt: skip
    assert first.code == 0 and first.result["local"] == [1], first

    run = labs.run(PULL_RECORDINGS)

    assert run.code == 0, run
    assert [bare(p) for p in run.result["parents"]] == [f"{labs.local_schema}.subject"], run
    # Subject 2 is not local: its recordings (1 and 3) wait, named; the others arrive and join.
    error = run.result["error"]
    assert error.startswith("LinkError: pull: 2 of 4 entities failed"), run
    assert "{'subject_id': 2}" in error and f"{labs.local_schema}" in error, error
    assert "pull that parent row into it first" in error, error
    assert (run.result["local"], run.result["joined"]) == ([0, 2], 2), run
    # 1 and 3 wait mid-pull (Activated), as after any failed copy; the next pull ends it.
    assert run.result["status"] == {"Shared": 2, "Activated": 2}, run

    rest = labs.run(PULL_SUBJECTS.format(restriction={}), header=subject_header(labs))
    assert rest.code == 0 and rest.result["local"] == [1, 2], rest
    again = labs.run(PULL_RECORDINGS)
    assert again.code == 0 and again.result["error"] is None, again
    assert (again.result["local"], again.result["joined"]) == ([0, 1, 2, 3], 4), again
    local = labs.read_local()
    assert not row_problems(source, local), "\n".join(row_problems(source, local))

    tables = labs.structure(dj2, labs.local, labs.local_schema)
    parents = [[bare(p), m] for p, m in tables["recording"]["parents"]]
    assert parents == [[f"{labs.local_schema}.subject", {"subject_id": "subject_id"}]]
