"""Row checksums that MariaDB and MySQL compute alike, for verify to compare across servers.

Verify asks the source server and the local server for a digest of the same rows
and compares the two answers in Python; the two servers may be of different kinds
(tested: MariaDB 10.11 and MySQL 9.7, in either role). So the digest uses only
functions both have built in (``SHA2``, ``CONV``, ``BIT_XOR``; MySQL 9.6+ has no
``MD5()``), and spells every value as bytes that depend on neither the server's
kind, nor the column's character set, nor how the server formats numbers:

* **text** (``char``, ``varchar``, the ``text`` types, ``enum``, ``set``, ``json``):
  its UTF-8 bytes, whatever the column's character set and collation;
* **double**: exactly, as two integers ``exponent,mantissa`` (the value is
  ``mantissa * 2**(exponent - 52)``), since the servers' text differs (MariaDB
  writes ``0.00000005176``, MySQL ``5.176e-8``, and at 17 digits not always the
  same digits);
* **float**: the double nearest to the 6 significant digits both servers send a
  client, spelt the same way. That is what a pull copies and what DataJoint's
  ``fetch`` shows, so a float compares at that precision;
* **everything else** (integers, decimals, dates, times, timestamps, binary
  strings, blobs): the server's own text or bytes, which both spell alike.

NULL is spelt ``N``, a float or double is made of digits, ``-`` and ``,`` only, and
every other value is length-prefixed (``3:abc``, ``0:``), so two different rows never
spell the same bytes. A row's digest is the SHA-256 of them, and a set of rows folds
into ``(count, XOR of the digests' first 64 bits, XOR of the next 64 bits)``:
order-free, one query per table and server.

    from djbridge.link.checksum import digests
    whole = digests(db, "`lab`.`recording`", source, ["rec_id"], keys, per_key=False)
    whole[()]   # (rows, xor, xor), equal on both servers when the rows are
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from djbridge.link.mirror import SourceTable, unquote
from djbridge.mysql import key_filter, quote
from djbridge.sqldialect import Connection

if TYPE_CHECKING:
    from djbridge.link.sync import Key

_COLUMN = re.compile(r"\s*(`(?:[^`]|``)+`)\s+([A-Za-z]+)")

SPELLING = {
    # the servers send a client 6 significant digits, and format them differently
    "float": "float",
    # the servers format doubles differently, sometimes with different digits
    "double": "double",
    "real": "double",
    # a column's bytes depend on its character set, which the two sides may spell apart
    **{t: "text" for t in ("char", "varchar", "tinytext", "text", "mediumtext", "longtext")},
    **{t: "text" for t in ("enum", "set", "json")},
}
"""How to spell a value of each column type; any other type is spelt ``raw``: the
server's own text (numbers, dates) or bytes (binary strings), alike on both kinds."""


def column_types(ddl: str) -> dict[str, str]:
    """Return each column's base type (``varchar``, ``double``, ...) from a CREATE TABLE."""
    types = {}
    for line in ddl.splitlines()[1:-1]:
        match = _COLUMN.match(line)
        if match:
            types[unquote(match.group(1))] = match.group(2).lower()
    return types


def exact(number: str) -> str:
    """Return SQL spelling a double as ``exponent,mantissa``, exactly and without formatting.

    ``FLOOR(LOG2(x))`` may be one off near a power of two, and differently so on
    two machines' maths libraries (it is also capped where ``POW(2, e)`` would
    overflow), so the exponent is corrected by one wherever the mantissa would leave
    [1, 2). Dividing by a power of two is exact, so the mantissa times 2**52 is a
    whole number below 2**53, which both servers print alike.
    """
    size = f"ABS({number})"
    guess = f"GREATEST(LEAST(FLOOR(LOG2({size})), 1023), -1074)"
    scaled = f"({size} / POW(2, {guess}))"
    exponent = f"({guess} + ({scaled} >= 2) - ({scaled} < 1))"
    mantissa = f"CAST({number} / POW(2, {exponent}) * 4503599627370496 AS SIGNED)"
    return f"IF({number} = 0, '0', CONCAT({exponent}, ',', {mantissa}))"


def spell(column: str, kind: str) -> str:
    """Return SQL for the bytes of one non-NULL value of a column of spelling ``kind``."""
    q = quote(column)
    if kind == "text":
        return f"CAST(CONVERT({q} USING utf8mb4) AS BINARY)"
    if kind == "double":
        return exact(f"CAST({q} AS DOUBLE)")
    if kind == "float":
        return exact(f"CAST(CAST({q} AS CHAR) AS DOUBLE)")
    return f"CAST({q} AS BINARY)"


def value_expr(column: str, kind: str = "raw") -> str:
    """Return SQL spelling one value unambiguously: ``N`` for NULL, else its bytes.

    A float or double needs no length: its spelling never holds the separator
    ``|`` (and its expression, repeated, would cost as much again). Any other
    value is ``length:bytes``.
    """
    value = spell(column, kind)
    framed = value if kind in ("float", "double") else f"CONCAT(LENGTH({value}), ':', {value})"
    return f"IF({quote(column)} IS NULL, 'N', {framed})"


def row_digest(table: SourceTable) -> str:
    """Return SQL for the SHA-256 (64 hex digits) of one row of ``table``, spelt as above.

    The spelling of each column comes from the source's DDL, on both servers: the
    local table is made from it.
    """
    types = column_types(table.ddl)
    values = [value_expr(c.name, SPELLING.get(types.get(c.name, ""), "raw")) for c in table.columns]
    return f"SHA2(CONCAT_WS('|', {', '.join(values)}), 256)"


WORD = "CAST(CONV(SUBSTRING(h, {}, 16), 16, 10) AS UNSIGNED)"
"""One 64-bit word of a row's digest ``h`` (from hex digit 1 or 17), as a number
``BIT_XOR`` folds on both server kinds."""


def digests(
    db: Connection, table: str, source: SourceTable, cols: Sequence[str], keys: Sequence[Key],
    *, per_key: bool,
) -> dict[Key, tuple[int, ...]]:  # fmt: skip
    """Return ``(rows, xor of first words, xor of second words)`` over ``table``'s rows of keys.

    One query. With ``per_key`` the result is per master key, else one entry for the
    whole batch under the key ``()``. XOR is order-free, and no two rows of a table
    hash alike (their primary keys differ), so the fold changes whenever a row does.
    """
    names = ", ".join(quote(c) for c in cols)
    where, params = key_filter(cols, keys)
    select = f"{names}, " if per_key else ""
    sql = (
        f"SELECT {select}COUNT(*), BIT_XOR({WORD.format(1)}), BIT_XOR({WORD.format(17)})"
        f" FROM (SELECT {names}, {row_digest(source)} AS h FROM {table} WHERE {where}) AS r"
    ) + (f" GROUP BY {names}" if per_key else "")
    width = len(cols) if per_key else 0
    return {tuple(r[:width]): tuple(int(v or 0) for v in r[width:]) for r in db.query(sql, params)}
