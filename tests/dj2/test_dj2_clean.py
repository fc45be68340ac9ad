"""dj-cleaner on DataJoint 2.x stores: what it deletes, what it keeps, and its report.

Every test runs on PostgreSQL 15 and on MySQL 9.7.
"""

from __future__ import annotations

import pytest

from tests.dj2.world import BACKENDS, Lab2

pytestmark = BACKENDS
BOTH = pytest.mark.parametrize("lab2", ["file", "s3"], indirect=True)


def orphaned_keys(lab2: Lab2, before: set[str]) -> set[str]:
    """The keys that deleting rows 3 and 4 left unreferenced."""
    return before - lab2.stored()


def make_pipeline(lab2: Lab2) -> tuple[set[str], set[str]]:
    """Rows 1-4 (2 and 4 with folder objects); delete 3 and 4. Return (live, orphans)."""
    lab2.declare()
    lab2.insert([lab2.rec(1), lab2.rec(2, folder=True)])
    live = lab2.stored()
    lab2.insert([lab2.rec(3), lab2.rec(4, folder=True)])
    orphans = lab2.stored() - live
    orphans -= {"user/rec3.bin", "user/rec4.bin"}  # filepath files stay the user's
    assert lab2.delete("rec_id >= 3") == 2
    return live, orphans


@BOTH
def test_clean_deletes_orphans_of_both_areas_and_keeps_every_live_object(lab2: Lab2) -> None:
    live, orphans = make_pipeline(lab2)
    assert len(orphans) == 6 + 2 + 4  # 3 hashes a row; object, npy; 2 files, manifest, npy
    min_age = ["--min-age", "0"] if lab2.kind == "s3" else []
    if lab2.kind == "file":
        lab2.backdate()
    status, [report] = lab2.clean("--dry-run", *min_age)
    assert status == 0 and report["deleted"] == 0 and lab2.stored() >= live | orphans
    assert report["to_delete"] == len(orphans)
    status, [report] = lab2.clean(*min_age)
    assert status == 0, report["errors"]
    assert lab2.stored() == live | {"user/rec3.bin", "user/rec4.bin"}
    assert lab2.lost() == []
    assert report["deleted"] == len(orphans) and report["bytes_deleted"] > 0
    assert report["areas"]["hash"]["deleted"] == 6
    assert report["areas"]["schema"]["deleted"] == len(orphans) - 6
    assert report["areas"]["hash"]["referenced"] == 6
    assert report["scanned"] == sum(a["scanned"] for a in report["areas"].values())
    assert set(report["areas"]["hash"]) == {
        "scanned",
        "referenced",
        "orphaned",
        "deleted",
        "bytes_deleted",
    }


def test_default_min_age_keeps_young_orphans(lab2: Lab2) -> None:
    _, orphans = make_pipeline(lab2)
    status, [report] = lab2.clean()
    assert status == 0 and report["deleted"] == 0
    assert report["kept_young"] == len(orphans)
    assert lab2.stored() >= orphans


def test_hash_area_keeps_names_of_other_shapes(lab2: Lab2) -> None:
    lab2.declare()
    lab2.insert([lab2.rec(1)])
    store = lab2.store()
    odd = [f"_hash/{lab2.schema}/NOTAHASH", f"_hash/{lab2.schema}/ab/cdefghijklmnopqrstuvwxyz23"]
    for key in odd:
        store.put(key, b"x")
    lab2.backdate()
    status, [report] = lab2.clean()
    assert status == 0 and report["kept_foreign"] == 2
    assert set(odd) <= lab2.stored()


@BOTH
def test_schema_area_keeps_files_datajoint_never_writes_there(lab2: Lab2) -> None:
    lab2.declare()
    lab2.insert([lab2.rec(1)])
    live = lab2.stored()
    lab2.insert([lab2.rec(2, folder=True)])
    orphans = {key for key in lab2.stored() - live if key.startswith("_schema/")}
    lab2.delete("rec_id = 2")
    area = f"_schema/{lab2.schema}"
    foreign = [
        f"{area}/notes.txt",  # directly in the schema's folder
        f"{area}/rec/notes.txt",  # in a table's folder, without a key path
        f"{area}/rec/o_abcdefgh",  # a field's name, but no key folder above it
        f"{area}/rec/rec_id=2/README",  # in a key folder, not {field}_{token}
    ]
    store = lab2.store()
    for key in foreign:
        store.put(key, b"not DataJoint's")
    min_age = ["--min-age", "0"] if lab2.kind == "s3" else []
    if lab2.kind == "file":
        lab2.backdate()
    status, [report] = lab2.clean(*min_age)
    assert status == 0, report["errors"]
    assert report["kept_foreign"] == len(foreign)
    assert report["areas"]["schema"]["deleted"] == len(orphans) == 1 + 2 + 1  # npy, folder
    assert set(foreign) <= lab2.stored() and not orphans & lab2.stored()
    assert lab2.lost() == []

    lab2.gc()  # dj.gc takes every unreferenced file of the area
    assert not set(foreign) & lab2.stored()
