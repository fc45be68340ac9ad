"""What a DataJoint 2.x database says is still in use: every codec column, read with SQL.

DataJoint 2.x has no ``~external`` tables. Each externally stored value is a JSON
column whose comment names its codec and store (``:<blob@raw>:``), and each value
holds the object's ``path`` relative to the store's location and its ``store``
(:mod:`djbridge.cleaner.dj2` explains the layout). A :class:`Catalogue` finds
those columns in *every* schema of the database, not only the one being cleaned,
because a row of schema B may point into schema A's area, and reads their paths.

Invariants kept here:

* a column counts when it is JSON and its comment starts with any codec,
  ``:<name...>:``: built-in or custom, imported anywhere or not. Every row's
  ``path`` counts, whichever store the row names: a path is relative to its
  store's location, so a row of another store can only keep an object here that
  has the same path (the same content, in a hash area), and a misspelt store name
  in the configuration can never leave a live object unprotected;
* a column this account cannot read is reported by :meth:`Catalogue.columns`
  with ``readable=False`` (the caller refuses): PostgreSQL's ``information_schema``
  hides such tables, so the columns come from ``pg_catalog``, compared with
  ``has_column_privilege`` and ``has_schema_privilege``, and row-level security
  that hides rows counts as unreadable;
* :meth:`Catalogue.paths` returns paths in byte order (``COLLATE "C"``), the order
  S3 lists keys in, so a run merges the two streams instead of holding a set.

:class:`PgCatalogue` is the PostgreSQL implementation, tested against a real
server. :class:`MySQL8Catalogue` holds the same queries for MySQL 8, which no
test here has run.

    catalogue = PgCatalogue(db)                 # a djbridge.postgres.PgDatabase
    columns = catalogue.columns()
    for path in catalogue.paths(columns, "_hash/lab/"):
        ...
    catalogue.live(columns, ["_hash/lab/abc..."])     # paths referenced right now
    live_keys(catalogue, run, keys)                   # stored keys covered right now
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from djbridge.cleaner.settings import CleaningRun
from djbridge.errors import UnsafeToDelete
from djbridge.layout import dj2_codec, dj2_coverers
from djbridge.mysql import quote
from djbridge.postgres import pg_quote
from djbridge.stores import Store

BATCH = 1000


@dataclass(frozen=True)
class CodecColumn:
    """One JSON column whose comment names a codec, e.g. ``lab.rec.b`` with ``<blob@raw>``."""

    schema: str
    table: str
    column: str
    codec: str
    store: str | None
    readable: bool = True

    @property
    def label(self) -> str:
        """``schema.table.column``, the way messages name the column."""
        return f"{self.schema}.{self.table}.{self.column}"


class Database(Protocol):
    """The part of a connection a catalogue uses (PgDatabase or mysql.Database)."""

    def close(self) -> None:
        """Close the connection."""
        ...

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Return all rows."""
        ...

    def stream(self, sql: str, params: Any = None, size: int = 10_000) -> Iterator[tuple[Any, ...]]:
        """Yield rows without holding them all."""
        ...


class Catalogue:
    """The SQL of reference scans; subclasses supply the dialect."""

    order = ""  # the ORDER BY collation that sorts paths byte-wise

    def __init__(self, db: Database) -> None:
        self.db = db

    def columns(self) -> list[CodecColumn]:
        """Return every codec column of the database, readable or not."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the catalogue's connection."""
        self.db.close()

    def _path(self, column: CodecColumn) -> str:
        raise NotImplementedError

    def _qualified(self, column: CodecColumn) -> str:
        raise NotImplementedError

    def _union(self, columns: Sequence[CodecColumn]) -> str:
        """One UNION ALL of every column's non-null paths, as a column ``path``."""
        parts = []
        for column in columns:
            path = self._path(column)
            parts.append(
                f"SELECT {path} AS path FROM {self._qualified(column)} WHERE {path} IS NOT NULL"
            )
        return " UNION ALL ".join(parts)

    def paths(self, columns: Sequence[CodecColumn], prefix: str) -> Iterator[str]:
        """Yield the distinct referenced paths that start with ``prefix``, in byte order."""
        if not columns:
            return
        condition, repeats = self._starts("path")
        sql = (
            f"SELECT path FROM ({self._union(columns)}) AS refs WHERE {condition} "
            f"ORDER BY path {self.order}"
        )
        last = None
        for (path,) in self.db.stream(sql, [prefix] * repeats):
            if path != last:
                yield str(path)
                last = path

    def _starts(self, expr: str) -> tuple[str, int]:
        """Return a condition that ``expr`` starts with a parameter, and how often it takes it."""
        raise NotImplementedError

    def _any(self, expr: str, count: int) -> tuple[str, bool]:
        """Return ``expr IN (...)`` for ``count`` values, and whether it takes one array."""
        raise NotImplementedError

    def live(self, columns: Sequence[CodecColumn], paths: Sequence[str]) -> set[str]:
        """Return those of ``paths`` that some row references right now (a fresh query)."""
        found: set[str] = set()
        if not columns:
            return found
        union = self._union(columns)
        for start in range(0, len(paths), BATCH):
            part = list(paths[start : start + BATCH])
            condition, as_array = self._any("path", len(part))
            sql = f"SELECT DISTINCT path FROM ({union}) AS refs WHERE {condition}"
            args = (part,) if as_array else tuple(part)
            found.update(str(path) for (path,) in self.db.query(sql, args))
        return found


_PG_COLUMNS = """
SELECT n.nspname, c.relname, a.attname, d.description,
       has_schema_privilege(n.oid, 'USAGE')
         AND has_column_privilege(c.oid, a.attnum, 'SELECT')
         AND NOT row_security_active(c.oid) AS readable
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_description d
  ON d.objoid = c.oid AND d.objsubid = a.attnum
 AND d.classoid = 'pg_catalog.pg_class'::regclass
WHERE c.relkind IN ('r', 'p', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped
  AND a.atttypid IN ('json'::regtype, 'jsonb'::regtype)
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE %s
  AND d.description LIKE %s
ORDER BY 1, 2, 3
"""


class PgCatalogue(Catalogue):
    """Reference scans on PostgreSQL (``jsonb`` columns, ``pg_catalog`` for the columns)."""

    order = 'COLLATE "C"'

    def columns(self) -> list[CodecColumn]:
        """Return every codec column of the database, from ``pg_catalog``."""
        found = []
        for schema, table, column, comment, readable in self.db.query(
            _PG_COLUMNS, ("pg\\_%", ":<%")
        ):
            parsed = dj2_codec(str(comment))
            if parsed is not None:
                codec, store = parsed
                found.append(
                    CodecColumn(str(schema), str(table), str(column), codec, store, bool(readable))
                )
        return found

    def _qualified(self, column: CodecColumn) -> str:
        return pg_quote(column.schema, column.table)

    def _path(self, column: CodecColumn) -> str:
        return f"({pg_quote(column.column)} ->> 'path')"

    def _starts(self, expr: str) -> tuple[str, int]:
        return f"starts_with({expr}, %s)", 1

    def _any(self, expr: str, count: int) -> tuple[str, bool]:
        return f"{expr} = ANY(%s)", True


_MYSQL_COLUMNS = """
SELECT table_schema, table_name, column_name, column_comment
FROM information_schema.columns
WHERE data_type = 'json' AND column_comment LIKE %s
  AND table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
ORDER BY 1, 2, 3
"""


class MySQL8Catalogue(Catalogue):
    """The same scans for MySQL 8 (``json`` columns). Untested: no MySQL 8 server here.

    MySQL's ``information_schema`` lists only what the account may access, and
    nothing shows the tables it hides, so :meth:`columns` marks every column
    unreadable unless the account holds SELECT on ``*.*``.
    """

    order = "COLLATE utf8mb4_bin"

    def columns(self) -> list[CodecColumn]:
        """Return the codec columns; all unreadable without a global SELECT grant."""
        grants = " ".join(str(row[0]) for row in self.db.query("SHOW GRANTS"))
        everything = bool(
            re.search(r"GRANT (ALL PRIVILEGES|[^\n]*\bSELECT\b)[^\n]* ON \*\.\*", grants)
        )
        found = []
        for schema, table, column, comment in self.db.query(_MYSQL_COLUMNS, (":<%",)):
            parsed = dj2_codec(str(comment))
            if parsed is not None:
                codec, store = parsed
                found.append(
                    CodecColumn(str(schema), str(table), str(column), codec, store, everything)
                )
        return found

    def _qualified(self, column: CodecColumn) -> str:
        return quote(column.schema, column.table)

    def _path(self, column: CodecColumn) -> str:
        return f"JSON_UNQUOTE(JSON_EXTRACT({quote(column.column)}, '$.path'))"

    def _starts(self, expr: str) -> tuple[str, int]:
        return f"LEFT({expr}, CHAR_LENGTH(%s)) = %s", 2

    def _any(self, expr: str, count: int) -> tuple[str, bool]:
        return f"{expr} IN ({', '.join(['%s'] * count)})", False


CATALOGUES: dict[str, type[Catalogue]] = {"postgresql": PgCatalogue, "mysql": MySQL8Catalogue}


@dataclass
class Dj2Target:
    """A 2.x run after preflight: its open store and the catalogue of its database.

    ``open_catalogue`` opens another catalogue on a connection of its own, for
    workers that re-check and delete in parallel; ``None`` means one worker.
    """

    run: CleaningRun
    store: Store
    catalogue: Catalogue
    open_catalogue: Callable[[], Catalogue] | None = None


def readable_columns(catalogue: Catalogue, run: CleaningRun) -> list[CodecColumn]:
    """Return every codec column, or refuse when one cannot be read or none uses the store.

    Raises
    ------
    UnsafeToDelete
        Naming up to five unreadable tables (their rows may reference objects), or
        when no codec column names the run's store (a misspelt store name, or a
        store whose tables were all dropped: the run would only be guessing).
    """
    columns = catalogue.columns()
    if not any(column.store in (run.store, "") for column in columns):
        raise UnsafeToDelete(
            f"refusing to delete: no codec column on database server {run.database.name!r} "
            f"(database {run.database.database!r}) names store {run.store!r}; check the store "
            "name. Nothing was deleted"
        )
    hidden = sorted({f"{c.schema}.{c.table}" for c in columns if not c.readable})
    if hidden:
        shown = ", ".join(hidden[:5]) + (f" and {len(hidden) - 5} more" if len(hidden) > 5 else "")
        raise UnsafeToDelete(
            f"refusing to delete: this account cannot read {len(hidden)} table(s) with "
            f"codec columns ({shown}); their rows may reference objects in this store. "
            "Grant SELECT on them (and USAGE on their schemas); nothing was deleted"
        )
    return columns


def live_keys(catalogue: Catalogue, run: CleaningRun, keys: Sequence[str]) -> set[str]:
    """Return those stored ``keys`` that some readable codec column covers right now.

    Raises
    ------
    UnsafeToDelete
        As :func:`readable_columns` does: the answer would be a guess.
    """
    columns = readable_columns(catalogue, run)
    wanted = sorted({path for key in keys for path in dj2_coverers(key)})
    live = catalogue.live(columns, wanted)
    return {key for key in keys if not live.isdisjoint(dj2_coverers(key))}
