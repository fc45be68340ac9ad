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
  with ``readable=False`` (the caller refuses). ``information_schema`` hides such
  tables on both servers. PostgreSQL's ``pg_catalog`` still shows them, compared
  with ``has_column_privilege`` and ``has_schema_privilege`` (row-level security
  that hides rows counts as unreadable). MySQL has nothing like it: there each
  table comes from the schema's ``~lineage`` table too and is compared with the
  account's grants, and a table it cannot read counts whatever its columns;
* :meth:`Catalogue.paths` returns paths in byte order (``COLLATE "C"``, or the
  bytes on MySQL), the order S3 lists keys in, so a run merges the two streams
  instead of holding a set.

:class:`PgCatalogue` (PostgreSQL 15) and :class:`MySQLCatalogue` (MySQL 8 or
later, tested on 9.7) are the two dialects; :data:`CATALOGUES` picks one by the
server's ``backend``. Everything else about a 2.x run is the same on both.

    catalogue = CATALOGUES[server.backend](db)  # a PgDatabase or a mysql.Database
    columns = catalogue.columns()
    for path in catalogue.paths(columns, "_hash/lab/"):
        ...
    catalogue.live(columns, ["_hash/lab/abc..."])     # paths referenced right now
    live_keys(catalogue, run, keys)                   # stored keys covered right now
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from djbridge.cleaner.grants import Grants
from djbridge.cleaner.settings import CleaningRun
from djbridge.config import DatabaseServer
from djbridge.errors import UnsafeToDelete
from djbridge.layout import dj2_codec, dj2_coverers
from djbridge.mysql import quote
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

    server: DatabaseServer

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

    grant_hint = ""  # how a message tells the administrator to grant what is missing

    def __init__(self, db: Database) -> None:
        self.db = db

    def columns(self) -> list[CodecColumn]:
        """Return every codec column of the database, readable or not."""
        raise NotImplementedError

    def server_problem(self) -> str:
        """Return why this server cannot hold DataJoint 2.x schemas, or ``""``."""
        return ""

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
            f"ORDER BY {self._ordered('path')}"
        )
        last = None
        for (path,) in self.db.stream(sql, [prefix] * repeats):
            if path != last:
                yield str(path)
                last = path

    def _ordered(self, expr: str) -> str:
        """Return ``expr`` as an ORDER BY key that sorts byte-wise, as S3 lists keys."""
        raise NotImplementedError

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

    grant_hint = "Grant SELECT on them (and USAGE on their schemas)"

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
        from djbridge.postgres import pg_quote

        return pg_quote(column.schema, column.table)

    def _path(self, column: CodecColumn) -> str:
        from djbridge.postgres import pg_quote

        return f"({pg_quote(column.column)} ->> 'path')"

    def _ordered(self, expr: str) -> str:
        return f'{expr} COLLATE "C"'

    def _starts(self, expr: str) -> tuple[str, int]:
        return f"starts_with({expr}, %s)", 1

    def _any(self, expr: str, count: int) -> tuple[str, bool]:
        return f"{expr} = ANY(%s)", True


_SYSTEM = ("mysql", "information_schema", "performance_schema", "sys")
_MYSQL_VISIBLE = f"""
SELECT s.schema_name, t.table_name
FROM information_schema.schemata s
LEFT JOIN information_schema.tables t ON t.table_schema = s.schema_name
WHERE s.schema_name NOT IN ({", ".join(repr(name) for name in _SYSTEM)})
"""
_MYSQL_COLUMNS = f"""
SELECT table_schema, table_name, column_name, column_comment
FROM information_schema.columns
WHERE data_type = 'json' AND column_comment LIKE %s
  AND table_schema NOT IN ({", ".join(repr(name) for name in _SYSTEM)})
ORDER BY 1, 2, 3
"""
LINEAGE = "~lineage"


class MySQLCatalogue(Catalogue):
    """Reference scans on MySQL 8 or later (``json`` columns; tested on MySQL 9.7).

    Each DataJoint schema is a MySQL database. ``information_schema`` lists only
    what the account holds a privilege on, so the tables it cannot read are found
    elsewhere: in each database's ``~lineage`` table, which DataJoint 2.x fills with
    a row for every key attribute of every table it declares, checked against the
    account's own grants (:mod:`djbridge.cleaner.grants`). A table the account
    cannot read is reported with ``readable=False`` whether or not it has codec
    columns (nobody can tell), and so is a whole database (table ``*``) when the
    account may not read its ``~lineage``: its tables are unknown.
    """

    grant_hint = "Grant SELECT on them (GRANT SELECT ON *.* covers every database)"

    def server_problem(self) -> str:
        """Return why the server cannot hold DataJoint 2.x schemas: MariaDB cannot."""
        [(version,)] = self.db.query("SELECT VERSION()")
        if "mariadb" in str(version).lower():
            return (
                f"it is MariaDB {version}, which cannot hold DataJoint 2.x schemas (it keeps "
                "JSON columns as longtext, so DataJoint 2.x cannot store external values there)"
            )
        return ""

    def grants(self) -> Grants:
        """Return this account's grants, active roles included."""
        # partial_revokes came with MySQL 8.0.16; before it, database grants are patterns.
        partial = self.db.query("SHOW VARIABLES LIKE 'partial_revokes'")
        literal = bool(partial) and str(partial[0][1]).upper() == "ON"
        lines = (str(row[0]) for row in self.db.query("SHOW GRANTS"))
        return Grants.parse(lines, literal=literal)

    def columns(self) -> list[CodecColumn]:
        """Return the visible codec columns and every table or database it cannot read.

        Raises
        ------
        UnsafeToDelete
            If the account cannot see every database (neither ``SHOW DATABASES``
            nor ``SELECT`` on ``*.*``): rows there are beyond any check.
        """
        grants = self.grants()
        if not grants.sees_every_database():
            server = self.db.server
            raise UnsafeToDelete(
                f"refusing to delete: account {server.user!r} on database server "
                f"{server.name!r} cannot see every database (it holds neither SHOW DATABASES "
                "nor SELECT on *.*), and rows in a database it cannot see may reference "
                "objects in this store. Grant it SELECT ON *.*; nothing was deleted"
            )
        visible: dict[str, set[str]] = {}
        for database, table in self.db.query(_MYSQL_VISIBLE):
            tables = visible.setdefault(str(database), set())
            if table is not None:
                tables.add(str(table))
        found = []
        for schema, table, column, comment in self.db.query(_MYSQL_COLUMNS, (":<%",)):
            parsed = dj2_codec(str(comment))
            if parsed is not None:
                readable = grants.can_read(str(schema), str(table))
                found.append(
                    CodecColumn(str(schema), str(table), str(column), *parsed, readable=readable)
                )
        for database, tables in sorted(visible.items()):
            found += self._unreadable(grants, database, tables)
        return found

    def _unreadable(self, grants: Grants, database: str, tables: set[str]) -> list[CodecColumn]:
        """Return the tables of ``database`` the account cannot read, codec columns or not."""
        if grants.can_read_all(database):
            return []
        if LINEAGE in tables and grants.can_read(database, LINEAGE):
            rows = self.db.query(f"SELECT DISTINCT table_name FROM {quote(database, LINEAGE)}")
            names = (tables - {LINEAGE}) | {str(name) for (name,) in rows}
        else:
            names = {"*"}  # its tables cannot be known
        return [
            CodecColumn(database, name, "", "", None, readable=False)
            for name in sorted(names)
            if name == "*" or not grants.can_read(database, name)
        ]

    def _qualified(self, column: CodecColumn) -> str:
        return quote(column.schema, column.table)

    def _path(self, column: CodecColumn) -> str:
        return f"JSON_UNQUOTE(JSON_EXTRACT({quote(column.column)}, '$.path'))"

    def _ordered(self, expr: str) -> str:
        return f"CAST({expr} AS BINARY)"  # utf8mb4_bin pads with spaces; bytes do not

    def _starts(self, expr: str) -> tuple[str, int]:
        return f"LEFT(CAST({expr} AS BINARY), LENGTH(%s)) = CAST(%s AS BINARY)", 2

    def _any(self, expr: str, count: int) -> tuple[str, bool]:
        return f"CAST({expr} AS BINARY) IN ({', '.join(['%s'] * count)})", False


CATALOGUES: dict[str, type[Catalogue]] = {"postgresql": PgCatalogue, "mysql": MySQLCatalogue}
"""The catalogue of each ``backend`` of a database server."""


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
        Naming up to five unreadable tables (their rows may reference objects; on
        MySQL ``db.*`` for a database whose tables are unknown), when the account
        cannot see every database (MySQL), or when no codec column names the run's
        store (a misspelt store name, or a store whose tables were all dropped: the
        run would only be guessing).
    """
    columns = catalogue.columns()
    hidden = sorted(
        {f"{c.schema}.{c.table}" for c in columns if not c.readable},
        key=lambda name: (name.endswith(".*"), name),  # named tables before whole databases
    )
    if hidden:
        shown = ", ".join(hidden[:5]) + (f" and {len(hidden) - 5} more" if len(hidden) > 5 else "")
        raise UnsafeToDelete(
            f"refusing to delete: this account cannot read {len(hidden)} table(s) that hold "
            f"or may hold codec columns ({shown}); their rows may reference objects in this "
            f"store. {catalogue.grant_hint}; nothing was deleted"
        )
    if not any(column.store in (run.store, "") for column in columns):
        where = f" (database {run.database.database!r})" if run.database.database else ""
        raise UnsafeToDelete(
            f"refusing to delete: no codec column on database server {run.database.name!r}"
            f"{where} names store {run.store!r}; check the store name. Nothing was deleted"
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
