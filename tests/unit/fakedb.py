"""An in-memory stand-in for :class:`djbridge.mysql.Database`: tables as dicts, SQL as data.

The link's batch engine talks to two servers through a handful of statement
shapes. :class:`FakeDatabase` understands exactly those shapes, and *executes*
them on dict tables instead of answering from a script, so that a change to the
engine's SQL or to its conditions changes what happens here, as it would on
MariaDB:

* ``SELECT cols FROM t WHERE <key filter>`` (also with ``SUM``/``MAX`` of
  ``LENGTH()`` grouped by the key, and the source's ``LEFT JOIN`` of the source
  table with the outbound table);
* ``UPDATE t SET c='v', ... WHERE c='v' AND c IN ('a','b') AND <key filter>``
  and ``DELETE FROM t WHERE ...`` of the same form, returning the rows changed
  (as MariaDB does for PyMySQL, which does not ask for rows *matched*);
* ``INSERT [IGNORE] INTO t (cols) VALUES ...`` through ``executemany``; a
  duplicate key fails as PyMySQL's error 1062 does, wrapped the way
  :class:`~djbridge.mysql.Database` wraps it; ``IGNORE`` skips it, and a foreign
  key to a parent table skips rows without a parent;
* ``transaction()``: writes inside are undone when the block raises.

The key columns come first in every table (``pk`` says how many form each
table's primary key; the filters use the first ``key_len``), and every key filter is the last
condition of its statement, as :func:`djbridge.mysql.key_filter` builds them.
Anything else raises ``AssertionError``: an engine that starts sending a new
statement must teach this fake about it. ``before`` is a hook run ahead of each
statement, where a test plays another process working on the same keys.

    source = FakeDatabase("source", 2, {"`lab`.`rec`": ["subject_id", "rec_id", "data"]})
    source.tables["`lab`.`rec`"][(1, 2)] = (1, 2, b"...")
    source.query("SELECT `rec_id` FROM `lab`.`rec` WHERE ...", [1, 2])
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pymysql

from djbridge.config import DatabaseServer
from djbridge.errors import DatabaseError
from djbridge.sqldialect import MYSQL, SqlDialect

Row = tuple[Any, ...]
TABLE = r"((?:`[^`]+`\.)?`[^`]+`)"
CONDITION = re.compile(r"^(\w+)='(\w+)'$|^(\w+) IN \(('[^)]*')\)$")


class FakeDatabase:
    """One server: ``tables`` maps a quoted table name to ``{key: row}``."""

    def __init__(self, name: str, key_len: int, columns: dict[str, list[str]]) -> None:
        self.server = DatabaseServer(name=name, host=f"{name}.fake", user="u", password="")
        self.n = key_len
        self.columns = columns
        self.tables: dict[str, dict[Row, Row]] = {t: {} for t in columns}
        self.pk = dict.fromkeys(columns, key_len)  # primary key columns per table
        self.parents: dict[str, str] = {}  # child table -> table its key must exist in
        self.statements: list[str] = []
        self.before: Callable[[str, Any], None] = lambda sql, params: None
        self.max_packet = 16 << 20

    # ---- the Database interface the engine uses --------------------------------------------
    @property
    def dialect(self) -> SqlDialect:
        """MySQL's SQL, which this fake parses."""
        return MYSQL

    def query(self, sql: str, params: Any = None) -> list[Row]:
        self._log(sql, params)
        if sql == "SELECT @@max_allowed_packet":
            return [(self.max_packet,)]
        keys = self._keys(params)
        if m := re.search(rf"FROM {TABLE} AS s LEFT JOIN {TABLE} AS o ON", sql):
            outbound = self.tables[m[2]]
            flags = self.columns[m[2]].index("process"), self.columns[m[2]].index("is_flagged")
            found = [k for k in self.tables[m[1]] if k in keys]
            return [(*k, *((outbound[k][i] for i in flags) if k in outbound else (None, None)))
                    for k in found]  # fmt: skip
        if m := re.fullmatch(rf"SELECT (.+) FROM {TABLE} WHERE .+ GROUP BY .+", sql, re.S):
            totals: dict[Row, list[int]] = {}
            for row in self._matching(m[2], keys):
                size = sum(len(v) if isinstance(v, bytes | str) else len(str(v)) for v in row)
                have = totals.setdefault(row[: self.n], [0, 0])
                have[0], have[1] = have[0] + size, max(have[1], size)
            return [(*k, total, largest) for k, (total, largest) in totals.items()]
        if m := re.fullmatch(rf"SELECT (`[^,]+`(?:, `[^,]+`)*) FROM {TABLE} WHERE .+", sql, re.S):
            index = [self.columns[m[2]].index(c.strip("`")) for c in m[1].split(", ")]
            return [tuple(row[i] for i in index) for row in self._matching(m[2], keys)]
        raise AssertionError(f"{self.server.name}: unexpected query {sql}")

    def stream(self, sql: str, params: Any = None, size: int = 10_000) -> Iterator[Row]:
        """As :meth:`query`, a row at a time (Database.stream reads an unbuffered cursor)."""
        yield from self.query(sql, params)

    def execute(self, sql: str, params: Any = None) -> int:
        self._log(sql, params)
        if sql == "START TRANSACTION":
            return 0
        if m := re.fullmatch(rf"UPDATE {TABLE} SET (.+?) WHERE (.+)", sql, re.S):
            table, sets = m[1], re.findall(r"(\w+)='(\w+)'", m[2])
            rows = self._where(table, m[3], params)
            cols = self.columns[table]
            changed = 0
            for key, row in rows.items():
                new = list(row)
                for col, value in sets:
                    new[cols.index(col)] = value
                self.tables[table][key] = tuple(new)
                changed += tuple(new) != row
            return changed
        if m := re.fullmatch(rf"DELETE FROM {TABLE} WHERE (.+)", sql, re.S):
            rows = self._where(m[1], m[2], params)
            for key in rows:
                del self.tables[m[1]][key]
            return len(rows)
        raise AssertionError(f"{self.server.name}: unexpected statement {sql}")

    def executemany(self, sql: str, rows: list[Row]) -> int:
        if not rows:  # as Database.executemany: nothing is sent
            return 0
        self._log(sql, rows)
        m = re.fullmatch(rf"INSERT (IGNORE )?INTO {TABLE} \(([^)]*)\) VALUES \(.*\)", sql, re.S)
        if m is None:
            raise AssertionError(f"{self.server.name}: unexpected statement {sql}")
        table, names = m[2], [c.strip("`") for c in m[3].split(", ")]
        assert names == self.columns[table], f"columns sent to {table}: {names}"
        parent = self.tables.get(self.parents.get(table, ""))
        inserted = 0
        for row in rows:
            key = tuple(row[: self.pk[table]])
            if key in self.tables[table]:
                error = (1062, f"Duplicate entry {key} for key 'PRIMARY'")
            elif parent is not None and tuple(row[: self.n]) not in parent:
                error = (1452, f"Cannot add or update a child row: no parent {key}")
            else:
                self.tables[table][key] = tuple(row)
                inserted += 1
                continue
            if not m[1]:  # INSERT IGNORE turns both into warnings
                err = pymysql.err.IntegrityError(*error)
                raise DatabaseError(f"{self.server.name}: {error[1]} [{error[0]}]") from err
        return inserted

    @contextmanager
    def transaction(self) -> Iterator[FakeDatabase]:
        saved = copy.deepcopy(self.tables)
        self.execute("START TRANSACTION")
        try:
            yield self
        except BaseException:
            self.tables = saved
            raise

    # ---- helpers ---------------------------------------------------------------------------
    def _log(self, sql: str, params: Any) -> None:
        self.before(sql, params)
        self.statements.append(sql)

    def _keys(self, params: Any) -> set[Row]:
        values = list(params or ())
        return {tuple(values[i : i + self.n]) for i in range(0, len(values), self.n)}

    def _matching(self, table: str, keys: set[Row]) -> list[Row]:
        return [row for row in self.tables[table].values() if row[: self.n] in keys]

    def _where(self, table: str, where: str, params: Any) -> dict[Row, Row]:
        """Rows of ``table`` that pass every condition before the trailing key filter."""
        *conditions, _key_filter = where.split(" AND ")
        cols = self.columns[table]
        keys = self._keys(params)
        rows = {k: r for k, r in self.tables[table].items() if r[: self.n] in keys}
        for condition in conditions:
            m = CONDITION.match(condition.strip())
            assert m is not None, f"unexpected condition {condition!r}"
            col, allowed = (m[1], {m[2]}) if m[1] else (m[3], set(re.findall(r"'(\w+)'", m[4])))
            rows = {k: r for k, r in rows.items() if r[cols.index(col)] in allowed}
        return rows
