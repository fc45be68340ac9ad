"""Numbered rows and their hashes in SQL that MariaDB and MySQL both run, for the benchmarks.

The benchmarks fill their tables on the server itself, which is much faster than sending
millions of rows. MariaDB has a sequence engine (``seq_1_to_N``) and ``MD5()`` for that;
MySQL 9.7 has neither. What both have:

* **numbers** from a cross join of digit tables (:func:`numbers`): no recursion, so
  neither MySQL's ``cte_max_recursion_depth`` nor MariaDB's ``max_recursive_iterations``
  (1,000 by default, where MariaDB stops a recursive CTE *without an error*) can cut a
  range short;
* **chunks** of 100,000 numbers, one statement each (:func:`in_chunks`): two million hashed
  rows took 18 s (MariaDB) and 16 s (MySQL) in one INSERT ... SELECT, 6 s and 10 s in
  chunks (MariaDB's ``seq_1_to_2000000``: 5 s);
* **hashes** as the first 16 bytes of SHA-256 (:func:`hash_sql` in SQL, :func:`hash_of`
  in Python, byte for byte the same), where the benchmarks used ``UNHEX(MD5(...))``.

    from bench.seqrows import hash_of, hash_sql, in_chunks
    digest = hash_sql("CONCAT('x', seq)")
    sql = f"INSERT INTO t (hash, n) SELECT {digest}, seq FROM {{numbers}} AS s"
    in_chunks(db, sql, 1, 2_000_000)    # rows 1 to 2,000,000, 100,000 a statement
    hash_of("x17")   # row 17's hash, to name its object in a store
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from djbridge.mysql import Database

CHUNK = 100_000
"""Numbers per statement of :func:`in_chunks`."""

DIGITS = "(SELECT 0 AS d " + " ".join(f"UNION ALL SELECT {i}" for i in range(1, 10)) + ")"


def numbers(first: int, last: int) -> str:
    """Return a derived table (alias it) of one column ``seq``: ``first`` to ``last``, inclusive."""
    if last < first:
        raise ValueError(f"empty range {first}..{last}")
    width = len(str(last - first))
    tables = ", ".join(f"{DIGITS} AS d{i}" for i in range(width))
    offset = " + ".join(f"d{i}.d * {10**i}" for i in range(width))
    return f"(SELECT {first} + {offset} AS seq FROM {tables} WHERE {offset} <= {last - first})"


def chunks(first: int, last: int, size: int = CHUNK) -> Iterator[tuple[int, int]]:
    """Yield ``(first, last)`` of consecutive inclusive ranges of at most ``size`` numbers."""
    for start in range(first, last + 1, size):
        yield start, min(start + size - 1, last)


def in_chunks(db: Database, template: str, first: int, last: int) -> None:
    """Run ``template`` once per chunk of ``first..last``, with ``{numbers}`` its derived table."""
    for start, stop in chunks(first, last):
        db.execute(template.replace("{numbers}", numbers(start, stop)))


def hash_sql(text: str) -> str:
    """Return SQL for a 16-byte hash of the SQL string ``text``: the bytes :func:`hash_of` gives."""
    return f"LEFT(UNHEX(SHA2({text}, 256)), 16)"


def hash_of(text: str) -> bytes:
    """Return the 16-byte hash that :func:`hash_sql` computes on a server for ``text``."""
    return hashlib.sha256(text.encode()).digest()[:16]
