"""Deleting through a link on DataJoint 2.x, and rows the source side flags the seed's way.

The source is never written by the link except its outbound table: the source
pipeline's tables and store are the same before the pull and after the deletes.
"""

from __future__ import annotations

import pytest

from djbridge.errors import DatabaseError
from tests.link2.conftest import SAME_BACKEND
from tests.link2.twolabs import TwoLabs

TABLES = ("recording__channel", "recording")
"""The linked source tables, part first: the order to delete them in."""
PULL = "result = Recording().source.pull()\nemit(**summary(result))\n"
DELETE_ONE = """
deleted = (Recording() & {"rec_id": 1}).delete(safemode=False)
emit(deleted=deleted, status=counts(Recording().source.status()),
     ids=sorted(k["rec_id"] for k in Recording().keys()),
     channels=sorted(k["rec_id"] for k in Recording.Channel().keys()))
"""


@pytest.mark.parametrize("pair", SAME_BACKEND, indirect=True)
def test_delete_removes_rows_and_parts_and_unshares(labs: TwoLabs) -> None:
    labs.ready(range(4))
    before = labs.source_fingerprint()
    assert labs.run(PULL).result["rows"] == 4

    run = labs.run(DELETE_ONE)

    assert run.code == 0, run
    assert run.result["deleted"] == 1
    assert run.result["ids"] == [0, 2, 3] and run.result["channels"] == [0, 0, 2, 2, 3, 3]
    assert run.result["status"] == {"Shared": 3, "Unshared": 1}
    assert labs.local_ids() == [0, 2, 3] and 1 not in labs.local_ids("recording__channel")
    assert set(labs.outbound()) == {0, 2, 3}
    assert labs.source_fingerprint() == before  # only the outbound table was written
    # The source may now delete the unshared row; a shared row stays protected.
    part, master = (labs.source.name(labs.src_schema, t) for t in TABLES)
    labs.source.sql(
        f"DELETE FROM {part} WHERE rec_id = 1", f"DELETE FROM {master} WHERE rec_id = 1"
    )
    with pytest.raises(DatabaseError, match="(?i)foreign key"):
        labs.source.sql(
            f"DELETE FROM {part} WHERE rec_id = 2", f"DELETE FROM {master} WHERE rec_id = 2"
        )


SAFEMODE = """
import datajoint as dj

dj.config["safemode"] = True
cancelled = (Recording() & "rec_id < 3").delete()
emit(cancelled=cancelled, ids=sorted(k["rec_id"] for k in Recording().keys()))
deleted = (Recording() & "rec_id < 3").delete()
emit(cancelled=cancelled, deleted=deleted, ids=sorted(k["rec_id"] for k in Recording().keys()))
"""


def test_safemode_asks_once_per_delete_and_no_changes_nothing(labs: TwoLabs) -> None:
    labs.ready(range(4))
    assert labs.run(PULL).result["rows"] == 4
    outbound = labs.outbound()

    run = labs.run(SAFEMODE, stdin="no\nyes\n")

    assert run.code == 0, run
    assert run.result == {"cancelled": 0, "deleted": 3, "ids": [3]}, run
    asked, _, _ = run.stdout.partition('"ids": [0, 1, 2, 3]')
    assert asked.count("Commit deletes?") == 1, run.stdout  # one question for three rows
    assert run.stdout.count("Commit deletes?") == 2, run.stdout
    assert labs.local_ids() == [3]
    assert labs.outbound() == {3: outbound[3]}


FLAGGED = """
flagged = Recording().source.flagged
tainted = counts(Recording().source.status())
(Recording() & Recording().source.flagged).delete()
again = Recording().source.pull()
emit(flagged=flagged, tainted=tainted, status=counts(Recording().source.status()),
     again=summary(again), ids=sorted(k["rec_id"] for k in Recording().keys()))
"""


@pytest.mark.parametrize("pair", SAME_BACKEND, indirect=True)
def test_flagged_rows_become_deprecated(labs: TwoLabs) -> None:
    labs.ready(range(4))
    before = labs.source_fingerprint()
    assert labs.run(PULL).result["rows"] == 4
    labs.flag([{"rec_id": 2}])  # by the source's admin, with DataJoint 2.x, as the seed says
    assert labs.outbound()[2] == ("NONE", "TRUE", "FALSE")

    run = labs.run(FLAGGED, stdin="yes\n")  # DataJoint's safemode is on by default

    assert run.code == 0, run
    assert run.result["flagged"] == [{"rec_id": 2}]
    assert run.result["tainted"] == {"Shared": 3, "Tainted": 1}
    assert run.result["status"] == {"Shared": 3, "Deprecated": 1}
    assert run.result["again"]["rows"] == 0  # a deprecated row is never pulled again
    assert run.result["ids"] == [0, 1, 3] and labs.local_ids() == [0, 1, 3]
    assert labs.outbound()[2] == ("NONE", "TRUE", "TRUE")
    assert labs.source_fingerprint() == before


DOWNSTREAM = """
import datajoint as dj

Recording().source.pull()
schema = dj.Schema("LOCAL", context={"Recording": Recording})


@schema
class Analysis(dj.Computed):
    definition = '''
    # computed locally from a linked recording
    -> Recording
    ---
    score: float64
    '''

    def make(self, key):
        self.insert1(dict(key, score=float(key["rec_id"])))


Analysis.populate()
populated = len(Analysis())
deleted = (Recording() & {"rec_id": 2}).delete(prompt=False)  # 2.x's name for safemode
emit(populated=populated, deleted=deleted, analysed=sorted(k["rec_id"] for k in Analysis().keys()))
"""


def test_a_delete_cascades_to_the_local_labs_own_tables(labs: TwoLabs) -> None:
    labs.ready(range(4))

    run = labs.run(DOWNSTREAM.replace("LOCAL", labs.local_schema))

    assert run.code == 0, run
    assert run.result == {"populated": 4, "deleted": 1, "analysed": [0, 1, 3]}, run
    assert labs.local_ids() == [0, 1, 3] and set(labs.outbound()) == {0, 1, 3}
