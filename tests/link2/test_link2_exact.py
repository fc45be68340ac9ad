"""A pull on DataJoint 2.x brings every value exactly, into the local lab's own store and schema.

The source lab builds its pipeline with DataJoint 2.x; the link runs as the seed's
code in a folder configured like a 2.x lab's; then a fresh 2.x process that knows
only the local store reads the local table and its part, and must fetch what the
source fetches: every value, attachment, ``<object@>`` file and folder, ``<npy@>``
array and ``<filepath@>`` file. The source's tables and store stay byte for byte
as they were.
"""

from __future__ import annotations

import pytest

from tests.dj2.client import Driver
from tests.link2.checks import layout_problems, row_problems, structure_problems
from tests.link2.conftest import SAME_BACKEND
from tests.link2.twolabs import TwoLabs

PULL = """
result = Recording().source.pull()
emit(
    **summary(result), table=Recording.full_table_name, part=Recording.Channel.__name__,
    local=len(Recording()), local_parts=len(Recording.Channel()),
)
"""


@pytest.mark.parametrize("store_kind", ["file", "s3"], indirect=True)
@pytest.mark.parametrize("pair", SAME_BACKEND, indirect=True)
def test_pull_brings_every_value_exactly(labs: TwoLabs) -> None:
    labs.ready(range(6))  # 0 and 3 hold NULLs; odd ones a file object, even ones a folder
    before = labs.source_fingerprint()
    source = labs.read_source()

    run = labs.run(PULL)

    assert run.code == 0, run
    result = run.result
    assert (result["rows"], result["parts"], result["states"]) == (6, 12, {"Shared": 6}), run
    assert result["failed"] == [] and result["objects"] > 0 and result["bytes"] > 0
    assert labs.local_schema in result["table"] and result["part"] == "Channel"
    assert (result["local"], result["local_parts"]) == (6, 12)
    local = labs.read_local()
    assert not row_problems(source, local), "\n".join(row_problems(source, local))
    assert local["parts"]["Channel"]["join"] == 12  # a join on rec_id, in plain 2.x
    assert not layout_problems(labs, source, local), "\n".join(layout_problems(labs, source, local))
    assert labs.source_fingerprint() == before


@pytest.mark.parametrize("pair", SAME_BACKEND, indirect=True)
def test_local_tables_mirror_the_source_but_not_its_absent_parent(
    labs: TwoLabs, dj2: Driver
) -> None:
    labs.ready(range(2))
    run = labs.run(PULL)
    assert run.code == 0, run

    source = labs.structure(dj2, labs.source, labs.src_schema)
    local = labs.structure(dj2, labs.local, labs.local_schema)
    problems = structure_problems(labs, source, local)
    assert not problems, "\n".join(problems)
    # The foreign key to subject is gone; its column and values stay.
    assert labs.local.sql(
        f"SELECT rec_id, subject_id FROM {labs.local.name(labs.local_schema, 'recording')} "
        "ORDER BY rec_id"
    ) == [(0, 1), (1, 2)]
