"""Links between a PostgreSQL and a MySQL lab, both ways: pull, verify, repair and delete.

The table is the cross-backend set (ints, varchar, json, bool, ``<blob@>``,
``<attach@>``, ``<object@>`` and the part's ``<blob@>``). Values are compared by
value: MySQL keeps a ``bool`` as a tinyint, and each server orders JSON keys its
own way. A value the local backend cannot hold is refused before anything is
written.
"""

from __future__ import annotations

import pytest

from tests.link2.checks import layout_problems, row_problems
from tests.link2.conftest import CROSS_BACKEND
from tests.link2.twolabs import LOCAL_STORE, TwoLabs

PULL_AND_VERIFY = """
result = Recording().source.pull()
emit(**summary(result), verify=Recording().verify().to_dict())
"""
REPAIR_AND_DELETE = """
repaired = Recording().verify(repair=True)
deleted = (Recording() & {"rec_id": 1}).delete(safemode=False)
emit(repaired=repaired.to_dict(), deleted=deleted, status=counts(Recording().source.status()))
"""


@pytest.mark.parametrize("pair", CROSS_BACKEND, indirect=True)
def test_pull_verify_repair_and_delete_across_backends(labs: TwoLabs) -> None:
    source = labs.ready(range(4), "small", read=True)
    before = labs.source_fingerprint()

    run = labs.run(PULL_AND_VERIFY)

    assert run.code == 0, run
    assert (run.result["rows"], run.result["parts"]) == (4, 8), run
    assert run.result["verify"]["ok"] is True and run.result["verify"]["checked"] == 4, run
    local = labs.read_local()
    assert not row_problems(source, local, loose=True), row_problems(source, local, loose=True)
    assert local["parts"]["Channel"]["join"] == 8
    assert not layout_problems(labs, source, local), layout_problems(labs, source, local)

    gone = local["master"]["json"]["[2]"]["att"]["path"]
    labs.store(LOCAL_STORE).delete_many([gone])
    run = labs.run(REPAIR_AND_DELETE)

    assert run.code == 0, run
    assert [o["key"] for o in run.result["repaired"]["repaired"]] == [gone], run
    assert gone in labs.objects(LOCAL_STORE)
    assert run.result["deleted"] == 1 and run.result["status"] == {"Shared": 3, "Unshared": 1}
    assert labs.local_ids() == [0, 2, 3] and set(labs.outbound()) == {0, 2, 3}
    assert labs.source_fingerprint() == before


REFUSED = """
try:
    from link import link

    @link({args})
    class Recording:
        pass

    Recording().source.pull()
except Exception as err:
    emit(error=type(err).__name__, message=str(err))
else:
    emit(error=None)
"""


@pytest.mark.parametrize("pair", ["mysql-to-postgresql"], indirect=True)
def test_a_column_the_local_backend_cannot_hold_is_refused_first(labs: TwoLabs) -> None:
    labs.ready(range(2))  # the full table: its uuid column cannot be kept by 2.3.5 on PostgreSQL
    before = labs.source_fingerprint()
    decorator = labs.header().split("@link(")[1].split(")\nclass")[0]

    run = labs.run(REFUSED.format(args=decorator), header="")

    assert run.code == 0 and run.result is not None, run
    assert run.result["error"] is not None, run
    assert "uid" in run.result["message"], run.result
    assert labs.local.tables(labs.local_schema) == []
    assert labs.source.tables(labs.out_schema) == []
    assert labs.source_fingerprint() == before
