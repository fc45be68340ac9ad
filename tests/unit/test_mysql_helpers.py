"""The shared SQL helpers: chunking, placeholders and key filters."""

from __future__ import annotations

from djbridge.mysql import CHUNK_SIZE, chunks, key_filter, placeholders


def test_chunks_cover_every_item_once_in_order() -> None:
    items = list(range(2 * CHUNK_SIZE + 5))
    parts = list(chunks(items))
    assert [len(p) for p in parts] == [CHUNK_SIZE, CHUNK_SIZE, 5]
    assert [x for p in parts for x in p] == items
    assert list(chunks([], 3)) == []


def test_placeholders() -> None:
    assert placeholders(3) == "%s, %s, %s"
    assert placeholders(1) == "%s"


def test_key_filter_on_one_column() -> None:
    sql, params = key_filter(["hash"], [(b"a",), (b"b",)])
    assert sql == "`hash` IN (%s, %s)"
    assert params == [b"a", b"b"]


def test_key_filter_on_a_composite_key_with_an_alias() -> None:
    sql, params = key_filter(["rec", "ch`x"], [(1, 2), (3, 4)], alias="s")
    assert sql == "(s.`rec`, s.`ch``x`) IN ((%s, %s), (%s, %s))"
    assert params == [1, 2, 3, 4]
