"""A pull on DataJoint 2.x brings every value exactly, into the local lab's own store and schema.

The source lab builds its pipeline with DataJoint 2.x; the link runs as the seed's
code in a folder configured like a 2.x lab's; then a fresh 2.x process that knows
only the local store reads the local table and its part, and must fetch what the
source fetches: every value, attachment, ``<object@>`` file and folder, ``<npy@>``
array and ``<filepath@>`` file. The source's tables and store stay byte for byte
as they were, and plain 2.x sees the local tables as the source's (attributes,
defaults, comments, indexes, part), but for the foreign key to an absent parent.
"""

from __future__ import annotations

import json

import pytest

from tests.dj2.client import Driver
from tests.link2.checks import layout_problems, row_problems, structure_problems
from tests.link2.conftest import SAME_BACKEND
from tests.link2.twolabs import LOCAL_STORE, SOURCE_STORE, TwoLabs

PULL = """
result = Recording().source.pull()
emit(
    **summary(result), table=Recording.full_table_name, part=Recording.Channel.__name__,
    local=len(Recording()), local_parts=len(Recording.Channel()),
)
"""


@pytest.mark.parametrize("store_kind", ["file", "s3"], indirect=True)
@pytest.mark.parametrize("pair", SAME_BACKEND, indirect=True)
def test_pull_brings_every_value_exactly(labs: TwoLabs, dj2: Driver) -> None:
    # 0 and 3 hold NULLs; odd ones a file object, even ones a folder.
    source = labs.ready(range(6), read=True)
    before = labs.source_fingerprint()

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
    # The tables as plain 2.x sees them: the same but for the foreign key to the absent
    # subject, whose column and values stay.
    tables = labs.structure(dj2, labs.source, labs.src_schema)
    problems = structure_problems(labs, tables, labs.structure(dj2, labs.local, labs.local_schema))
    assert not problems, "\n".join(problems)
    assert [(r["rec_id"], r["subject_id"]) for r in local["master"]["rows"]] == [
        (n, 1 + n % 2) for n in range(6)
    ]


KEYS = [("spike sort ü", 1), ("spike sort ü", 2), ("o'neil", 1)]
"""Protocol keys: a text and a number; the first holds a file object, the second a folder,
the third NULLs."""
PULL_PROTOCOLS = """
first = (Protocol().source & {"name": "o'neil"}).pull()
rest = Protocol().source.pull()
emit(first=summary(first), rest=summary(rest), table=Protocol.table_name)
"""
DELETE_FLAGGED = """
flagged = Protocol().source.flagged
(Protocol() & flagged).delete(safemode=False)
emit(flagged=flagged, status=counts(Protocol().source.status()),
     left=sorted([k["name"], k["version"]] for k in Protocol().keys()))
"""


def test_a_lookup_with_a_two_part_key_lands_in_the_local_stores_own_layout(
    labs: TwoLabs,
) -> None:
    labs.stores[SOURCE_STORE].update(hash_prefix="blobs", schema_prefix="objects", subfolding=[3])
    labs.stores[LOCAL_STORE].update(hash_prefix="h2", schema_prefix="s2", subfolding=[2, 2])
    labs.write_link_config()
    source = labs.protocols(KEYS)
    labs.grant_link()
    header = labs.header("Protocol")

    run = labs.run(PULL_PROTOCOLS, header=header)

    assert run.code == 0, run
    assert (run.result["first"]["rows"], run.result["rest"]["rows"]) == (1, 2), run
    assert run.result["table"] == "#protocol"  # a lookup table stays one
    local = labs.read_local("Protocol", ())
    assert not row_problems(source, local), "\n".join(row_problems(source, local))
    assert not layout_problems(labs, source, local), "\n".join(layout_problems(labs, source, local))
    assert any(k.startswith(f"h2/{labs.local_schema}/") for k in labs.objects(LOCAL_STORE))

    labs.flag([{"name": "spike sort ü", "version": 2}])
    run = labs.run(DELETE_FLAGGED, header=header)
    assert run.code == 0, run
    assert run.result["flagged"] == [{"name": "spike sort ü", "version": 2}], run
    assert run.result["status"] == {"Shared": 2, "Deprecated": 1}, run
    assert run.result["left"] == [["o'neil", 1], ["spike sort ü", 1]], run


def test_a_store_left_out_of_stores_keeps_its_name(labs: TwoLabs) -> None:
    labs.ready(range(3), "small")
    before = labs.objects(SOURCE_STORE)

    run = labs.run(PULL, header=labs.header(stores={}))

    assert run.code == 0 and run.result["rows"] == 3, run
    after = labs.objects(SOURCE_STORE)
    assert {k: after.get(k) for k in before} == before  # no source object touched
    table = labs.local.name(labs.local_schema, "recording")
    sections = (f"_hash/{labs.local_schema}/", f"_schema/{labs.local_schema}/")
    for row in labs.local.sql(f"SELECT ext, att, obj FROM {table}"):
        for value in row:
            if value is None:
                continue
            meta = json.loads(value) if isinstance(value, str) else value
            assert meta["store"] == SOURCE_STORE, meta  # the same store name, locally
            assert meta["path"].startswith(sections), meta  # under the local schema
            assert meta["path"] in after or any(k.startswith(meta["path"] + "/") for k in after)
    assert labs.objects(LOCAL_STORE) == {}
