"""Verifying a link: drift on either side is found, objects are repaired, rows never touched."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from djbridge.link import verify as verify_module
from djbridge.link.mirror import Column, SourceTable
from djbridge.link.verify import row_digest
from djbridge.mysql import Database, quote
from tests.integration.linkworld import World, build_pipeline, make_link


@pytest.fixture
def pulled(world: World) -> Any:
    build_pipeline(world, n=4)
    Recording = make_link(world)
    Recording().source.pull()
    return Recording


def drop_local(table: Any, **key: Any) -> None:
    """Remove a local row behind the link's back, parts first, as a careless user would."""
    (table.Channel() & key).delete_quick()
    (table.Reviewer() & key).delete_quick()
    (table() & key).delete_quick()


def test_a_fresh_pull_verifies_clean(world: World, pulled: Any) -> None:
    report = pulled().verify()
    assert report.ok
    assert report.checked == 4
    assert report.rows_differ == report.missing_local == []
    assert report.objects_missing == report.objects_wrong_size == report.repaired == []


def test_verify_finds_updated_source_rows_and_lost_local_rows(
    world: World, pulled: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = world.src_schema
    world.query("source", f"UPDATE {quote(src, 'recording')} SET label='changed' WHERE rec_id=1")
    world.query(
        "source",
        f"UPDATE {quote(src, 'recording__channel')} SET gain=99 WHERE rec_id=2 AND channel=1",
    )
    drop_local(pulled, rec_id=3)

    report = pulled().verify()

    assert not report.ok
    assert report.checked == 3
    keys = sorted((k["subject_id"], k["rec_id"]) for k in report.rows_differ)
    assert keys == [(1, 1), (2, 2)]
    assert report.missing_local == [{"subject_id": 0, "rec_id": 3}]
    assert report.objects_missing == report.objects_wrong_size == []
    # Nothing was changed: the local row still holds the value pulled.
    assert (pulled() & {"rec_id": 1}).fetch1("label") == "rec-1"
    monkeypatch.setattr(verify_module, "VERIFY_BATCH", 2)  # the drift in separate batches
    assert pulled().verify() == report
    advice = " ".join(report.advice("Recording"))
    assert "delete" in advice and "pull" in advice
    # A restriction narrows both the rows checked and the shared rows looked for.
    narrow = (pulled() & "rec_id < 2").verify()
    assert narrow.checked == 2 and narrow.missing_local == []
    assert narrow.rows_differ == [{"subject_id": 1, "rec_id": 1}]
    # Following the advice converges.
    (pulled() & report.rows_differ).delete(safemode=False)
    pulled().source.pull()
    again = pulled().verify()
    assert again.ok, again
    assert (pulled() & {"rec_id": 1}).fetch1("label") == "changed"
    assert again.checked == 4


def test_verify_finds_deleted_and_truncated_objects_and_repair_restores_them(
    world: World, pulled: Any
) -> None:
    store = world.store("dst")
    keys = sorted(world.objects("dst", world.local_schema + "/"))
    gone, cut = keys[0], keys[1]
    originals = {k: store.get(k) for k in keys}
    store.delete_many([gone])
    store.put(cut, originals[cut][:-7])
    rows_before = pulled().fetch(as_dict=True, order_by="rec_id", download_path=str(world.tmp))

    found = pulled().verify()

    assert not found.ok
    assert [o["key"] for o in found.objects_missing] == [gone]
    assert found.objects_missing[0]["found"] is None
    assert [(o["key"], o["found"]) for o in found.objects_wrong_size] == [
        (cut, len(originals[cut]) - 7)
    ]
    assert found.objects_wrong_size[0]["size"] == len(originals[cut])
    assert found.repaired == [] and found.rows_differ == []
    assert gone not in world.objects("dst")  # verify alone changes nothing

    fixed = pulled().verify(repair=True)

    assert fixed.ok
    assert sorted(o["key"] for o in fixed.repaired) == sorted([gone, cut])
    assert {k: store.get(k) for k in keys} == originals  # byte for byte
    assert pulled().verify() == type(fixed)(checked=4)
    rows_after = pulled().fetch(as_dict=True, order_by="rec_id", download_path=str(world.tmp))
    assert [r["label"] for r in rows_after] == [r["label"] for r in rows_before]


def test_verify_touches_each_server_a_fixed_number_of_times_per_batch(
    world: World, pulled: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    linked = pulled._core.linked
    counts: Counter[str] = Counter()
    linked.source_db.tracer = lambda sql, params: counts.update(["source"])
    linked.local_db.tracer = lambda sql, params: counts.update(["local"])
    per_batch = {}
    for size in (1, 2, 4):
        monkeypatch.setattr(verify_module, "VERIFY_BATCH", size)
        counts.clear()
        assert pulled().verify().ok
        per_batch[size] = dict(counts)
    linked.source_db.tracer = linked.local_db.tracer = None
    # Master plus two parts on each server, plus one ~external query locally, per batch;
    # one key listing locally and one outbound listing on the source, per run.
    for size, seen in per_batch.items():
        batches = 4 // size
        assert seen == {"source": 1 + 3 * batches, "local": 1 + 4 * batches}, (size, seen)


def test_row_digest_tells_null_from_empty_and_shifted_values(local_db: Database) -> None:
    table = SourceTable("s", "t", "", [Column("a", False), Column("b", False)])
    digest = row_digest(table)

    def of(a: str, b: str) -> str:
        return str(local_db.query(f"SELECT {digest} FROM (SELECT {a} AS a, {b} AS b) AS t")[0][0])

    values = [of("NULL", "''"), of("''", "NULL"), of("''", "''"), of("NULL", "NULL"),
              of("'x|'", "''"), of("'x'", "'|'"), of("'1:x'", "''"), of("1", "''")]  # fmt: skip
    assert len(set(values)) == len(values)
