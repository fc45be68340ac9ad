"""The migration tests' own instruments on real servers: 0.14 world, 2.x dump, comparator.

These do not run ``dj-migrate``. They prove that the source world holds what the
issue's must-holds are about (as DataJoint 0.14 reads it back), that the driver's
``dump`` and ``join`` read a 2.x schema as plain DataJoint 2.3.5 does, and that the
comparator finds a changed value, a silent change of kind and a missing row.
"""

from __future__ import annotations

import copy
import datetime
import decimal
from typing import Any

import numpy as np
import pytest

from tests.dj2.client import DriverError
from tests.dj2.tagged import encode, file_value
from tests.migrate.compare import comparable, compare, fetch_destination, fetch_source, join
from tests.migrate.conftest import BOTH_DESTINATIONS, ONE_SOURCE
from tests.migrate.world import BIG, DEST_STORE, MigrationWorld


def rows_by(table: dict[str, Any], column: str) -> dict[Any, dict[str, Any]]:
    return {row[column]: row for row in table["rows"]}


def test_source_world_holds_every_hard_value_as_0_14_reads_it(
    unbuilt_world: MigrationWorld,
) -> None:
    world = unbuilt_world
    world.build(inline_attach=True)
    source = fetch_source(world)
    main = source["main"]
    assert set(main) == {
        "#species", "subject", "numbers", "session", "recording", "counter", "_analysis",
        "__summary", "__summary__item", "document",
    }  # fmt: skip
    documents = rows_by(main["document"], "doc_name")
    assert documents["protocol"]["doc"] == file_value("protocol.txt", b"step 1\x00step 2\n")
    assert documents["empty"]["doc"] == file_value("empty.dat", b"")
    assert documents["none"]["doc"] is None
    assert {t: main[t]["tier"] for t in ("#species", "_analysis", "__summary__item")} == {
        "#species": "lookup", "_analysis": "imported", "__summary__item": "part",
    }  # fmt: skip
    numbers = rows_by(main["numbers"], "num_id")
    assert numbers[0]["u64"] == 2**64 - 1 and numbers[0]["i64"] == -(2**63)
    assert numbers[0]["dec"] == {"$decimal": "99999.999"} and numbers[255]["udec"] is None
    subjects = rows_by(main["subject"], "subject_id")
    assert [subjects[n]["code"] for n in (1, 2, BIG)] == ["ab", "", "abc"]
    assert subjects[1]["name"] == "Ünïcødé 名前 'q' \"dq\" 🐭"
    sessions = {(r["subject_id"], r["session_idx"]): r for r in main["session"]["rows"]}
    assert sessions[(1, 1)]["duration"] == {"$timedelta": 25 * 3600 + 184.0}
    assert sessions[(1, 2)]["duration"] == {"$timedelta": -3723.0}
    assert sessions[(1, 1)]["meta"]["$dict"][0] == ["a", 1]  # parsed on MariaDB too
    recordings = {(r["subject_id"], r["session_idx"]): r for r in main["recording"]["rows"]}
    first = recordings[(1, 1)]
    assert comparable(first["arr"])[:3] == ("array", "<f8", (3, 4))
    assert first["att"]["$file"][0] == "notes.txt"
    assert comparable(first["att"])[2].startswith(b"notes of recording 0\n\x00\xff")
    assert first["fp"]["$file"][0] == "sub1/sess1/raw.dat"
    assert recordings[(1, 2)]["fp"] is None
    assert rows_by(main["counter"], "row_id").keys() == {1, 3, 10}
    ratings = {(r["subject_id"], r["rater"]): r for r in source["latin"]["rating"]["rows"]}
    assert ratings[(1, "anna")]["remark"] == "café naïve ½ «quoted»"
    assert ratings[(2, "bo")]["grade"] == ""
    assert world.source_query(
        "SELECT default_character_set_name FROM information_schema.schemata WHERE schema_name = %s",
        (world.schemas["latin"],),
    ) == [("latin1",)]


@ONE_SOURCE
def test_comparator_finds_changed_values_silent_conversions_and_missing_rows(
    world: MigrationWorld,
) -> None:
    source = fetch_source(world)
    assert compare(world, source, source, {}) == []
    other = copy.deepcopy(source)
    numbers = other["main"]["numbers"]["rows"]
    numbers[0]["u64"] = float(numbers[0]["u64"])  # the float nearest 2**64 - 1
    session = other["main"]["session"]["rows"][0]
    session["duration"] = session["duration"]["$timedelta"]  # seconds, as if converted
    rating = other["latin"]["rating"]["rows"][0]
    rating["grade"] = rating["grade"].ljust(3)  # padded as char(n) on PostgreSQL
    other["main"]["counter"]["rows"].pop()
    recording = other["main"]["recording"]["rows"][0]
    recording["ext"] = encode(np.ascontiguousarray(np.arange(20, dtype=np.float64)))
    recording["att"] = file_value("notes.txt", b"other bytes")
    problems = compare(world, source, other, {})
    joined = "\n".join(problems)
    for expected in (
        "numbers.u64", "session.duration", "timedelta became number silently",
        "rating.grade", "counter", "missing at the destination", "recording.ext", "recording.att",
    ):  # fmt: skip
        assert expected in joined, joined
    allowed = {(world.schemas["main"], "session", "duration"): {"to": "int64"}}
    assert "session.duration" not in "\n".join(compare(world, source, other, allowed))


@ONE_SOURCE
@BOTH_DESTINATIONS
def test_driver_dump_reads_2x_values_and_join_needs_lineage(unbuilt_world: MigrationWorld) -> None:
    w = unbuilt_world
    conn = w.connect2()
    schema = w.dest_names["main"]
    attach = w.tmp / "a.bin"
    attach.write_bytes(b"x\x00y")
    w.dj2.call("declare", conn=conn, schema=schema, table="Parent",
               definition="pid: int32\n---\nwhen: datetime\nprice: decimal(6,2)\n")  # fmt: skip
    w.dj2.call("declare", conn=conn, schema=schema, table="Child",
               definition=f"-> Parent\ncid: int16\n---\nb: <blob@{DEST_STORE}>\n"
                          f"a: <attach@{DEST_STORE}>\n")  # fmt: skip
    w.dj2.call("insert", conn=conn, schema=schema, table="Parent",
               rows=[{"pid": 1, "when": "2024-02-29 23:59:59", "price": "12.50"}])  # fmt: skip
    child = {"pid": 1, "cid": 2, "b": {"$blob": [[1, 2], [3, 4]]}, "a": str(attach)}
    w.dj2.call("insert", conn=conn, schema=schema, table="Child", rows=[child])
    dest = fetch_destination(w, roles=("main",))["main"]
    [parent] = dest["parent"]["rows"]
    assert comparable(parent["when"]) == datetime.datetime(2024, 2, 29, 23, 59, 59)
    assert comparable(parent["price"]) == decimal.Decimal("12.50")
    [child] = dest["child"]["rows"]
    assert comparable(child["b"]) == comparable(encode(np.array([[1, 2], [3, 4]])))
    assert comparable(child["a"]) == ("file", "a.bin", b"x\x00y")
    assert dest["child"]["parents"] and dest["child"]["tier"] == "manual"
    assert ["child", "pid", f"{schema}.parent.pid"] in dest["~lineage"]["rows"]
    assert join(w, ("main", "parent"), ("main", "child")) == {"join": 1, "semijoin": 1, "left": 1}
    w.dest_query(f"DELETE FROM {w.dest_table('main', '~lineage')}")
    with pytest.raises(DriverError, match="(?i)lineage"):
        join(w, ("main", "parent"), ("main", "child"))
