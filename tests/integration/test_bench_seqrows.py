"""bench/seqrows.py: the same numbered rows and hashes on every server kind, as the benches need."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bench.seqrows import CHUNK, hash_of, hash_sql, in_chunks, numbers
from djbridge.mysql import Database, quote


@pytest.mark.parametrize(("first", "last"), [(1, 1), (1, 9), (1, 10), (7, 1234), (0, 99_999)])
def test_a_range_holds_each_number_once(local_db: Database, first: int, last: int) -> None:
    sql = (
        f"SELECT COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM {numbers(first, last)} AS s"
    )
    count = last - first + 1
    assert local_db.query(sql) == [(count, count, first, last)]


def test_chunked_rows_and_their_hashes_match_python(
    local_db: Database, schema_factory: Callable[[str], str]
) -> None:
    schema = schema_factory("local")
    local_db.execute(f"CREATE DATABASE {quote(schema)}")
    table = quote(schema, "t")
    local_db.execute(f"CREATE TABLE {table} (seq int PRIMARY KEY, h binary(16) NOT NULL)")
    last = 2 * CHUNK + 17  # three statements, the last one short
    digest = hash_sql("CONCAT('x', seq)")
    in_chunks(local_db, f"INSERT INTO {table} SELECT seq, {digest} FROM {{numbers}} AS s", 1, last)

    assert local_db.query(f"SELECT COUNT(*), MIN(seq), MAX(seq) FROM {table}") == [(last, 1, last)]
    sample = local_db.query(
        f"SELECT seq, h FROM {table} WHERE MOD(seq, 9973) = 1 OR seq = %s", (last,)
    )
    assert len(sample) > 20
    assert all(h == hash_of(f"x{seq}") for seq, h in sample)
    assert local_db.query(f"SELECT COUNT(DISTINCT h) FROM {table}") == [(last,)]
