"""``verify`` on DataJoint 2.x: a clean link is ok; lost, cut and changed things are found.

``repair=True`` copies missing and cut objects again from the source store, after
which plain 2.x reads every value as the source has it; changed rows are reported,
never overwritten.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.link2.checks import row_problems
from tests.link2.twolabs import LOCAL_STORE, TwoLabs

PULL = "emit(**summary(Recording().source.pull()))\n"
TABLES = ("recording", "recording__channel")
VERIFY = """
found = Recording().verify()
fixed = Recording().verify(repair=True)
after = Recording().verify()
emit(found=found.to_dict(), fixed=fixed.to_dict(), after=after.to_dict(), ok=found.ok)
"""


def covered(key: str, reported: list[dict[str, Any]]) -> bool:
    """Whether a report lists ``key``, or the folder object that holds it."""
    return any(key == o["key"] or key.startswith(o["key"].rstrip("/") + "/") for o in reported)


@pytest.mark.parametrize(
    "store_kind", ["file", pytest.param("s3", marks=pytest.mark.slow)], indirect=True
)
def test_lost_and_cut_objects_are_found_and_repaired(labs: TwoLabs) -> None:
    source = labs.ready([1, 2], read=True)  # 1 holds a file object, 2 a folder
    assert labs.run(PULL).result["rows"] == 2
    pulled = labs.read_local()["master"]["json"]
    one, two = pulled["[1]"], pulled["[2]"]
    store = labs.store(LOCAL_STORE)
    before = labs.objects(LOCAL_STORE)
    folder = sorted(k for k in before if k.startswith(two["obj"]["path"] + "/"))
    assert folder, before
    gone = [one["obj"]["path"], one["att"]["path"], next(k for k in folder if "two.bin" in k)]
    cut = [two["att"]["path"], next(k for k in folder if k.endswith("one.txt"))]
    store.delete_many(gone)
    for key in cut:
        store.put(key, store.get(key)[:-3])

    run = labs.run(VERIFY)

    assert run.code == 0, run
    found, fixed, after = run.result["found"], run.result["fixed"], run.result["after"]
    assert found["ok"] is False and found["checked"] == 2, found
    assert found["rows_differ"] == found["missing_local"] == found["repaired"] == []
    assert all(covered(k, found["objects_missing"]) for k in gone), found
    assert all(covered(k, found["objects_wrong_size"]) for k in cut), found
    assert fixed["ok"] is True, fixed
    assert all(covered(k, fixed["repaired"]) for k in gone + cut), fixed
    assert after["ok"] is True and after["repaired"] == [] and after["checked"] == 2, after
    assert labs.objects(LOCAL_STORE) == before  # byte for byte
    local = labs.read_local()
    assert not row_problems(source, local), "\n".join(row_problems(source, local))


CHANGED = """
found = Recording().verify()
narrow = (Recording() & "rec_id < 2").verify()
emit(found=found.to_dict(), narrow=narrow.to_dict(),
     note=(Recording() & {"rec_id": 1}).fetch1("note"))
"""
CLEAN = {
    "checked": 4, "rows_differ": [], "missing_local": [], "objects_missing": [],
    "objects_wrong_size": [], "repaired": [], "ok": True,
}  # fmt: skip


def test_changed_rows_on_either_side_and_lost_local_rows_are_reported(labs: TwoLabs) -> None:
    labs.ready(range(4))
    assert labs.run(PULL).result["rows"] == 4
    clean = labs.run("emit(report=Recording().verify().to_dict())\n")
    assert clean.result["report"] == CLEAN, clean
    master, part = (labs.local.name(labs.local_schema, t) for t in TABLES)
    labs.local.sql(
        f"UPDATE {master} SET note = 'changed here' WHERE rec_id = 1",
        f"DELETE FROM {part} WHERE rec_id = 3",
        f"DELETE FROM {master} WHERE rec_id = 3",
    )
    source_part = labs.source.name(labs.src_schema, "recording__channel")
    labs.source.sql(f"UPDATE {source_part} SET gain = 99 WHERE rec_id = 2 AND channel = 1")

    run = labs.run(CHANGED)

    assert run.code == 0, run
    found, narrow = run.result["found"], run.result["narrow"]
    assert found["ok"] is False and found["checked"] == 3, found
    assert sorted(k["rec_id"] for k in found["rows_differ"]) == [1, 2], found
    assert found["missing_local"] == [{"rec_id": 3}], found
    assert found["objects_missing"] == found["objects_wrong_size"] == [], found
    assert narrow["checked"] == 2 and narrow["rows_differ"] == [{"rec_id": 1}], narrow
    assert narrow["missing_local"] == [], narrow
    assert run.result["note"] == "changed here"  # verify never writes a row
