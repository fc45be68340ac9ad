"""The seven ways DataJoint 2.3's ``dj.gc`` loses live objects, and dj-cleaner in each.

Every test runs on PostgreSQL 15 and on MySQL 9.7. It builds the case with real
DataJoint 2.3.5 (the driver), first runs
dj-cleaner and reads every row back (nothing may be lost), then builds the same
case again on fresh rows and runs ``dj.gc.GarbageCollector.collect(dry_run=False)``,
which loses objects: the rows that DataJoint can no longer read are the proof.

1. a row inserted in an open transaction, its objects already uploaded;
2. a re-insert, in an open transaction, of content whose orphan copy still exists
   (the upload is skipped because the file is there);
3. an autocommit insert between the reference scan and the delete;
4. a new object committed between the listing and the reference scan (dj.gc:
   between its reference scan and its listing);
5. an account that cannot SELECT one table (on MySQL, the table is also hidden from
   ``information_schema``: dj-cleaner finds it through ``~lineage`` and the grants);
6. a custom codec the collecting process has not imported;
7. a row of schema B whose ``<object@>`` points into schema A's area.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.dj2.world import BACKENDS, REC, Lab2

pytestmark = BACKENDS
BOTH = pytest.mark.parametrize("lab2", ["file", "s3"], indirect=True)


def rec_keys(lab2: Lab2, n: int) -> set[str]:
    """The keys a row's objects have, read from its JSON values."""
    paths = ", ".join(lab2.path(column) for column in "bahon")
    [row] = lab2.db.query(f"SELECT {paths} FROM {lab2.table()} WHERE rec_id = %s", (n,))
    return {str(path) for path in row if path}


def lost_ids(lab2: Lab2, tables: tuple[tuple[str, str], ...] = ()) -> set[str]:
    return {failure["key"]["rec_id"] for failure in lab2.lost(tables)}


def with_live_row(lab2: Lab2) -> None:
    """Rec with one committed row, so every area has referenced objects."""
    lab2.declare()
    lab2.insert([lab2.rec(1)])


def insert_request(lab2: Lab2, row: dict[str, Any], conn: str | None = None) -> dict[str, Any]:
    return {
        "op": "insert",
        "conn": conn or lab2.conn,
        "schema": lab2.schema,
        "table": "Rec",
        "rows": [row],
    }


@BOTH
def test_case1_open_transaction(lab2: Lab2) -> None:
    with_live_row(lab2)
    writer = lab2.connect()
    lab2.begin(writer)
    lab2.insert([lab2.rec(2)], conn=writer)  # objects uploaded, row not committed
    status, [report] = lab2.clean()
    assert status == 0 and report["kept_young"] >= 5
    lab2.commit(writer)
    assert lost_ids(lab2) == set()

    lab2.begin(writer)
    lab2.insert([lab2.rec(3)], conn=writer)
    lab2.gc()
    lab2.commit(writer)
    assert lost_ids(lab2) == {"3"}


@BOTH
def test_case2_reinsert_of_orphan_content_in_open_transaction(lab2: Lab2) -> None:
    with_live_row(lab2)
    lab2.insert([lab2.rec(2)])
    lab2.delete("rec_id = 2")  # its objects are orphans now
    writer = lab2.connect()
    lab2.begin(writer)
    lab2.insert([lab2.rec(2)], conn=writer)  # same content: the hash uploads are skipped
    status, _ = lab2.clean()
    assert status == 0
    lab2.commit(writer)
    assert lost_ids(lab2) == set()

    lab2.insert([lab2.rec(3)])
    lab2.delete("rec_id = 3")
    lab2.begin(writer)
    lab2.insert([lab2.rec(3)], conn=writer)
    lab2.gc()
    lab2.commit(writer)
    assert lost_ids(lab2) == {"3"}


@BOTH
@pytest.mark.parametrize("min_age", [None, 0.0])
def test_case3_autocommit_insert_between_scan_and_delete(lab2: Lab2, min_age: float | None) -> None:
    with_live_row(lab2)
    lab2.insert([lab2.rec(2)])
    lab2.delete("rec_id = 2")
    orphans = lab2.stored()
    revive = insert_request(lab2, lab2.rec(2, columns="bah"))

    def hook(event: str, run: Any) -> None:
        if event == "listed":
            lab2.dj2.call(**revive)

    options = {} if min_age is None else {"min_age": min_age}
    report = lab2.clean_api(hook, **options)
    assert report.ok, report.errors
    if min_age == 0.0:
        assert report.kept_rechecked == 3  # the revived blob, attachment and hash
    assert lost_ids(lab2) == set()
    assert orphans & rec_keys(lab2, 2) == rec_keys(lab2, 2)

    lab2.insert([lab2.rec(3)])
    lab2.delete("rec_id = 3")
    lab2.gc(before_delete=[insert_request(lab2, lab2.rec(3, columns="bah"))])
    assert lost_ids(lab2) == {"3"}


@BOTH
@pytest.mark.parametrize("min_age", [None, 0.0])
def test_case4_new_object_committed_between_listing_and_scan(
    lab2: Lab2, min_age: float | None
) -> None:
    with_live_row(lab2)
    writer = lab2.connect()

    def hook(event: str, run: Any) -> None:
        if event == "start":  # uploaded before the listing, row not yet committed
            lab2.begin(writer)
            lab2.insert([lab2.rec(5)], conn=writer)
        elif event == "scan":  # committed after the listing, before the reference scan
            lab2.commit(writer)

    options = {} if min_age is None else {"min_age": min_age}
    report = lab2.clean_api(hook, **options)
    assert report.ok, report.errors
    assert lost_ids(lab2) == set()

    lab2.gc(before_listing=[insert_request(lab2, lab2.rec(6))])
    assert lost_ids(lab2) == {"6"}


@BOTH
def test_case5_account_that_cannot_read_one_table(lab2: Lab2) -> None:
    with_live_row(lab2)
    lab2.declare("Secret", REC.replace("rec_id", "secret_id"))
    secret_row = {**lab2.rec(7), "secret_id": 7}
    del secret_row["rec_id"]
    lab2.insert([secret_row], table="Secret")
    user, password = lab2.account(["rec", "~lineage"])
    before = lab2.stored()
    status, [report] = lab2.clean(
        "--min-age", "0", config=lab2.config(user=user, password=password)
    )
    assert status == 1 and report["deleted"] == 0
    assert f"{lab2.schema}.secret" in report["errors"][0] and "cannot read" in report["errors"][0]
    assert lab2.stored() == before

    restricted = lab2.connect(user, password)
    stats = lab2.gc(conn=restricted)
    assert stats["errors"] == 0 and stats["deleted"] >= 5
    failed = lab2.lost(((lab2.schema, "Secret"),))
    assert [f["key"]["secret_id"] for f in failed] == ["7"]


@BOTH
def test_case6_custom_codec_not_imported_by_the_collector(lab2: Lab2) -> None:
    lab2.dj2.call("codec", name="graph", dtype="<blob@raw>")
    definition = REC + "g=null: <graph@raw>\n"
    lab2.declare(definition=definition)
    lab2.insert([{**lab2.rec(1), "g": [9, 9, 9, 9]}])
    if lab2.kind == "file":
        lab2.backdate()
    status, [report] = lab2.clean("--min-age", "0")
    assert status == 0 and report["deleted"] == 0, report["errors"]
    assert lost_ids(lab2) == set()

    lab2.gc(conn=lab2.connect(), forget_codecs=["graph"])  # fresh headings, no codec
    assert lost_ids(lab2) == {"1"}


@BOTH
def test_case7_object_of_schema_b_in_schema_a_area(lab2: Lab2) -> None:
    with_live_row(lab2)
    lab2.insert([lab2.rec(2)])
    lab2.declare("Copy", "copy_id: int32\n---\no=null: <object@raw>\n", schema=lab2.other)
    lab2.db.execute(
        f"INSERT INTO {lab2.table('copy', lab2.other)} (copy_id, o) "
        f"SELECT rec_id, o FROM {lab2.table()} WHERE rec_id = 2"
    )
    lab2.delete("rec_id = 2")  # schema A's row is gone; B still points into A's area
    if lab2.kind == "file":
        lab2.backdate()
    status, [report] = lab2.clean("--min-age", "0")
    assert status == 0, report["errors"]
    copies = ((lab2.other, "Copy"),)
    assert lab2.lost(copies) == []

    lab2.gc()
    assert [f["key"]["copy_id"] for f in lab2.lost(copies)] == ["2"]
