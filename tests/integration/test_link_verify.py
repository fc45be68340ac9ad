"""Verifying a link: drift on either side is found, objects are repaired, rows never touched."""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from djbridge.link import verify as verify_module
from djbridge.link.checksum import digests, row_digest
from djbridge.link.mirror import Column, SourceTable, read_table
from djbridge.mysql import Database, connect, quote
from tests.integration.linkworld import World, build_pipeline, make_link, source_schema

pytestmark = pytest.mark.mixed_servers


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
    printed = str(report)  # print(report) in a notebook: the summary, naming the linked class
    assert printed.startswith("3 rows checked, 2 differ, 1 missing locally, 0 objects missing")
    assert "(Recording() & report.rows_differ).delete()" in printed
    assert "Recording().source.pull()" in printed
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


# ---- every column type, on every pair of server kinds ---------------------------------------
def test_equal_values_digest_alike_on_either_kind_and_in_either_character_set(
    source_db: Database, local_db: Database, schema_factory: Any
) -> None:
    rng = random.Random(5)
    rows = [
        (n, sign * 10 ** rng.uniform(-38, 38), sign * 10 ** rng.uniform(-308, 308), text)
        for n in range(400)
        for sign, text in [(rng.choice((-1, 1)), ("Zoë Zürich façade ß", "", None)[n % 3])]
    ]
    rows += [(400, 0.0, 5e-324, "x"), (401, 1 / 7, 1.7976931348623157e308, "y")]
    names = {}
    for db, role, charset in ((source_db, "source", "utf8mb4"), (local_db, "local", "latin1")):
        names[role] = schema_factory(role)
        db.execute(f"CREATE DATABASE {quote(names[role])}")
        table = quote(names[role], "t")
        db.execute(
            f"CREATE TABLE {table} (`id` int NOT NULL, `f` float, `d` double, `t` varchar(32), "
            f"PRIMARY KEY (`id`)) DEFAULT CHARSET={charset}"
        )
        db.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s, %s)", rows)
    source = read_table(source_db, names["source"], "t")
    keys = [(r[0],) for r in rows]

    def both(per_key: bool) -> list[dict[Any, tuple[int, ...]]]:
        return [
            digests(db, quote(names[role], "t"), source, ["id"], keys, per_key=per_key)
            for db, role in ((source_db, "source"), (local_db, "local"))
        ]

    theirs, ours = both(per_key=False)
    assert theirs == ours and theirs[()][0] == len(rows)
    theirs, ours = both(per_key=True)
    assert theirs == ours and len(theirs) == len(rows)
    # One unit in the last place of one double is a difference, found on its key.
    local_db.execute(
        f"UPDATE {quote(names['local'], 't')} SET d = %s WHERE id = 7",
        (math.nextafter(rows[7][2], math.inf),),
    )
    theirs, ours = both(per_key=True)
    assert [k for k in keys if theirs[k] != ours[k]] == [(7,)]


SAMPLE = """
# one value of each column type that verify must spell alike on MariaDB and MySQL
sample_id : int
site : varchar(16)            # non-ASCII in the key too
---
tiny : tinyint
small : smallint unsigned
big : bigint
huge : bigint unsigned
single : float
dbl : double
amount : decimal(14,4)
name : varchar(64)
code : char(4)
kind : enum('raw', 'filtered', 'spikes')
day : date
taken : datetime(3)
stamp : timestamp
span : time
uid : uuid
meta = null : json
payload : longblob
note = null : varchar(32)
"""

SINGLES = [1 / 7, 123456789.0, 5.176e-8, -3.0e38, 0.1, 0.0]
"""Floats beyond 6 digits (a pull copies 6), and some the two kinds format apart."""


def sample(n: int) -> dict[str, Any]:
    """Return row ``n`` of the many-types table, as PyMySQL parameters."""
    rng = random.Random(n)
    return {
        "sample_id": n, "site": ("Zürich", "Genève", "東京")[n % 3],
        "tiny": n - 128, "small": 65535 - n, "big": n - 2**63, "huge": 2**64 - 1 - n,
        "single": SINGLES[n % len(SINGLES)],
        "dbl": rng.choice((-1, 1)) * 10 ** rng.uniform(-300, 300),  # layouts differ by kind
        "amount": Decimal("-1234567890.1234") + n, "name": ("Zoë 🧠 神经元", "", "plain")[n % 3],
        "code": ("ab", "", "abcd")[n % 3], "kind": ("raw", "filtered", "spikes")[n % 3],
        "day": date(1000 + n, 1 + n % 12, 1 + n % 28),
        "taken": datetime(2024, 1, 2, 3, 4, 5, 123000 + n * 1000),
        "stamp": datetime(2024, 5, 6, 7, 8, n % 60), "span": f"-{800 + n}:59:58",
        "uid": uuid.UUID(int=rng.getrandbits(128)).bytes,
        "meta": None if n % 4 == 3 else f'{{"b": [1, 2.50, 1e2], "a": {{"x": "é"}}, "n": {n}}}',
        "payload": b"\0|N:" + rng.randbytes(40 + n), "note": (None, "", "x")[n % 3],
    }  # fmt: skip


CHANGES: dict[str, tuple[int, Callable[[Any], Any]]] = {
    "single": (0, lambda v: 0.142858),  # 1/7, changed in its 6th digit
    "meta": (1, lambda v: v.replace('"x": "é"', '"x": "e"')),
    "code": (2, lambda v: "ABCD"),  # equal to "abcd" in a case-insensitive collation
    "note": (3, lambda v: ""),  # NULL becomes ''
    "name": (6, lambda v: "Zoe 🧠 神经元"),  # equal to Zoë in an accent-insensitive one
    "tiny": (4, lambda v: v + 1),
    "small": (5, lambda v: v - 1),
    "big": (7, lambda v: v + 1),
    "huge": (8, lambda v: v - 1),
    "dbl": (9, lambda v: math.nextafter(v, math.inf)),  # one unit in the last place
    "amount": (10, lambda v: v + Decimal("0.0001")),
    "kind": (11, lambda v: "raw"),
    "day": (12, lambda v: v + timedelta(days=1)),
    "taken": (13, lambda v: v + timedelta(milliseconds=1)),
    "stamp": (14, lambda v: v + timedelta(seconds=1)),
    "span": (15, lambda v: v.replace(":58", ":57")),
    "uid": (16, lambda v: bytes([v[0] ^ 1]) + v[1:]),
    "payload": (17, lambda v: v[:-1] + bytes([v[-1] ^ 1])),
}
"""One change per column, each in a row of its own, made on the source."""


def declare_samples(world: World) -> None:
    """Declare the many-types table on the source, in a utf8mb4 schema, and fill it."""
    import datajoint as dj

    # As on a server whose default is utf8mb4 (the private MariaDB's is latin1): the
    # outbound table's key must have the source key's character set.
    for name in (world.src_schema, world.out_schema):
        world.query("source", f"CREATE DATABASE {quote(name)} CHARACTER SET utf8mb4")

    @source_schema(world)
    class Sample(dj.Manual):
        definition = SAMPLE

    rows = [sample(n) for n in range(30)]
    names = ", ".join(quote(c) for c in rows[0])
    db = connect(world.source)
    try:
        db.executemany(
            f"INSERT INTO {quote(world.src_schema, 'sample')} ({names}) "
            f"VALUES ({', '.join(['%s'] * len(rows[0]))})",
            [tuple(r.values()) for r in rows],
        )
    finally:
        db.close()


@pytest.mark.parametrize("world", ["file"], indirect=True)  # no objects: one store kind will do
def test_every_column_type_verifies_clean_after_a_pull_and_each_change_is_found(
    world: World, server_pair: tuple[str, str]
) -> None:
    from link import link

    declare_samples(world)

    @link(f"{world.source.host}:{world.source.port}", world.src_schema, world.out_schema,
          "Outbound", world.local_schema, stores={})  # fmt: skip
    class Sample:
        """The linked samples."""

    Sample().source.pull()
    fresh = Sample().verify()
    assert fresh.ok, (server_pair, str(fresh))
    assert fresh.checked == 30

    db = connect(world.source)
    try:
        for column, (n, change) in CHANGES.items():
            new = change(sample(n)[column])
            db.execute(
                f"UPDATE {quote(world.src_schema, 'sample')} SET {quote(column)} = %s "
                "WHERE sample_id = %s",
                (new, n),
            )
    finally:
        db.close()
    found = Sample().verify()

    assert sorted(k["sample_id"] for k in found.rows_differ) == sorted(
        n for n, _ in CHANGES.values()
    )
    assert found.missing_local == []
