"""What differs between MySQL and PostgreSQL, for code that runs on either: one object each.

The link's batch engine and its verify speak plain SQL to two servers. Almost all
of it is the same on both; what is not sits here, as one small :class:`SqlDialect`
per server kind, and the engine asks the connection's dialect instead of
branching on the backend:

* identifier quoting (backticks or double quotes) and the ``IN`` filter over keys;
* the insert that skips rows already there (``INSERT IGNORE`` or
  ``ON CONFLICT DO NOTHING``);
* how large one statement may be (``max_allowed_packet`` or PostgreSQL's 1 GiB);
* which tables reference a table through a foreign key, and a table's own foreign keys;
* whether an error is a duplicate key;
* how a JSON value travels as a parameter, and how a fetched JSON value reads.

Every connection class carries its dialect (``db.dialect``), so a function that
receives a connection never needs to know which server it talks to.

    from djbridge.sqldialect import dialect_of
    sql = dialect_of(db)
    where, params = sql.key_filter(["rec_id"], [(1,), (2,)])
    db.query(f"SELECT * FROM {sql.quote('lab', 'rec')} WHERE {where}", params)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from djbridge.errors import DatabaseError

PG_STATEMENT_LIMIT = 1 << 30
"""PostgreSQL accepts a statement of up to 1 GiB (its protocol's message limit)."""


class Connection(Protocol):
    """What the engine needs of a connection: a MySQL ``Database`` or a ``PgDatabase``."""

    server: Any

    @property
    def dialect(self) -> SqlDialect:
        """The server kind's SQL."""

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Return all rows."""

    def stream(self, sql: str, params: Any = None, size: int = 10_000) -> Iterator[tuple[Any, ...]]:
        """Yield rows without holding them all."""

    def execute(self, sql: str, params: Any = None) -> int:
        """Return the rows affected."""

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run one statement for many rows."""

    def transaction(self) -> AbstractContextManager[Any]:
        """Run a block in one transaction."""

    def table_exists(self, schema: str, table: str) -> bool:
        """Return whether the table exists."""

    def schema_exists(self, schema: str) -> bool:
        """Return whether the schema exists."""

    def ensure_open(self) -> None:
        """Reconnect if dropped."""

    def uses_tls(self) -> bool:
        """Return whether the session is encrypted."""

    def close(self) -> None:
        """Close."""


def in_filter(
    quote: Callable[..., str], columns: Sequence[str], keys: Sequence[tuple[Any, ...]], alias: str
) -> tuple[str, list[Any]]:
    """Return ``(sql, params)`` for ``(cols) IN ((...), ...)`` over ``keys``."""
    names = [f"{alias}.{quote(c)}" if alias else quote(c) for c in columns]
    holes = ", ".join(["%s"] * len(columns))
    if len(columns) == 1:
        return f"{names[0]} IN ({', '.join(['%s'] * len(keys))})", [k[0] for k in keys]
    return (
        f"({', '.join(names)}) IN ({', '.join([f'({holes})'] * len(keys))})",
        [v for k in keys for v in k],
    )


@dataclass
class ForeignKey:
    """One foreign key: the parent table and each column with the parent column it names."""

    schema: str
    table: str
    columns: dict[str, str]


class SqlDialect:
    """The SQL of one server kind; subclasses fill in what differs."""

    name = ""
    FOREIGN_KEYS = ""
    """Rows (constraint, parent schema, parent table, column, parent column) of one table."""

    def quote(self, *parts: str) -> str:
        """Quote a (possibly qualified) identifier."""
        raise NotImplementedError

    def key_filter(
        self, columns: Sequence[str], keys: Sequence[tuple[Any, ...]], alias: str = ""
    ) -> tuple[str, list[Any]]:
        """Return ``(sql, params)`` selecting the rows of ``keys`` by ``columns``."""
        return in_filter(self.quote, columns, keys, alias)

    def insert_ignore(self, table: str, columns: Sequence[str]) -> str:
        """Return a one-row INSERT into quoted ``table`` that skips a key already there."""
        raise NotImplementedError

    def statement_limit(self, db: Any) -> int:
        """Return the largest statement, in bytes, the server ``db`` accepts."""
        raise NotImplementedError

    def size_of(self, column: str) -> str:
        """Return the SQL of about how many bytes a value of ``column`` holds."""
        raise NotImplementedError

    def referencing_tables(self, db: Any, schema: str, table: str) -> set[tuple[str, str]]:
        """Return ``(schema, table)`` of every table with a foreign key to ``schema.table``."""
        raise NotImplementedError

    def foreign_keys(self, db: Any, schema: str, table: str) -> list[ForeignKey]:
        """Return the foreign keys of ``schema.table``, each column paired in key order."""
        found: dict[str, ForeignKey] = {}
        for name, parent_schema, parent, column, referenced in db.query(
            self.FOREIGN_KEYS, (schema, table)
        ):
            key = found.setdefault(str(name), ForeignKey(str(parent_schema), str(parent), {}))
            key.columns[str(column)] = str(referenced)
        return list(found.values())

    def is_duplicate(self, err: DatabaseError) -> bool:
        """Return whether ``err`` is a duplicate-key error."""
        raise NotImplementedError

    def json_param(self, value: Any) -> Any:
        """Return ``value`` (a Python object) as a parameter for a JSON column."""
        raise NotImplementedError

    def read_json(self, value: Any) -> Any:
        """Return a fetched JSON column value as a Python object (None stays None)."""
        if isinstance(value, bytes | bytearray):
            value = value.decode()
        return json.loads(value) if isinstance(value, str) else value

    def table_exists(self, db: Any, schema: str, table: str) -> bool:
        """Return whether ``schema.table`` exists and is visible to ``db``'s account."""
        rows = db.query(
            "SELECT 1 FROM information_schema.tables WHERE table_schema=%s AND table_name=%s",
            (schema, table),
        )
        return bool(rows)


class MySQLDialect(SqlDialect):
    """MySQL and MariaDB."""

    name = "mysql"
    DUPLICATE_KEY = 1062

    def quote(self, *parts: str) -> str:
        """Quote with backticks (:func:`djbridge.mysql.quote`)."""
        from djbridge.mysql import quote

        return quote(*parts)

    def insert_ignore(self, table: str, columns: Sequence[str]) -> str:
        """``INSERT IGNORE``: PyMySQL sends many rows of it as one multi-row statement."""
        names = ", ".join(self.quote(c) for c in columns)
        return f"INSERT IGNORE INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(columns))})"

    def statement_limit(self, db: Any) -> int:
        """Read the server's ``max_allowed_packet``."""
        return int(db.query("SELECT @@max_allowed_packet")[0][0])

    def size_of(self, column: str) -> str:
        """``LENGTH()``: bytes, for every type."""
        return f"LENGTH({self.quote(column)})"

    def referencing_tables(self, db: Any, schema: str, table: str) -> set[tuple[str, str]]:
        """Read ``information_schema.key_column_usage``."""
        rows = db.query(
            "SELECT DISTINCT table_schema, table_name FROM information_schema.key_column_usage "
            "WHERE referenced_table_schema=%s AND referenced_table_name=%s",
            (schema, table),
        )
        return {(str(s), str(t)) for s, t in rows}

    FOREIGN_KEYS = (
        "SELECT constraint_name, referenced_table_schema, referenced_table_name, column_name, "
        "referenced_column_name FROM information_schema.key_column_usage "
        "WHERE table_schema = %s AND table_name = %s AND referenced_table_name IS NOT NULL "
        "ORDER BY constraint_name, ordinal_position"
    )

    def is_duplicate(self, err: DatabaseError) -> bool:
        """PyMySQL's IntegrityError 1062."""
        args: tuple[Any, ...] = tuple(getattr(err.__cause__, "args", ()))
        return bool(args) and args[0] == self.DUPLICATE_KEY

    def json_param(self, value: Any) -> Any:
        """JSON text."""
        return None if value is None else json.dumps(value)


class PostgresDialect(SqlDialect):
    """PostgreSQL."""

    name = "postgresql"
    UNIQUE_VIOLATION = "23505"

    def quote(self, *parts: str) -> str:
        """Quote with double quotes (:func:`djbridge.postgres.pg_quote`)."""
        from djbridge.postgres import pg_quote

        return pg_quote(*parts)

    def insert_ignore(self, table: str, columns: Sequence[str]) -> str:
        """``ON CONFLICT DO NOTHING``: never aborts the surrounding transaction."""
        names = ", ".join(self.quote(c) for c in columns)
        holes = ", ".join(["%s"] * len(columns))
        return f"INSERT INTO {table} ({names}) VALUES ({holes}) ON CONFLICT DO NOTHING"

    def statement_limit(self, db: Any) -> int:
        """Return 1 GiB, PostgreSQL's fixed limit."""
        return PG_STATEMENT_LIMIT

    def size_of(self, column: str) -> str:
        """``pg_column_size()``: the stored bytes (after compression, for large values)."""
        return f"pg_column_size({self.quote(column)})"

    def referencing_tables(self, db: Any, schema: str, table: str) -> set[tuple[str, str]]:
        """Read ``pg_constraint``, which shows foreign keys whatever the privileges."""
        rows = db.query(
            "SELECT n.nspname, c.relname FROM pg_catalog.pg_constraint k "
            "JOIN pg_catalog.pg_class c ON c.oid = k.conrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_catalog.pg_class r ON r.oid = k.confrelid "
            "JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace "
            "WHERE k.contype = 'f' AND rn.nspname = %s AND r.relname = %s",
            (schema, table),
        )
        return {(str(s), str(t)) for s, t in rows}

    FOREIGN_KEYS = (
        "SELECT k.conname, rn.nspname, r.relname, a.attname, ra.attname "
        "FROM pg_catalog.pg_constraint k "
        "JOIN pg_catalog.pg_class c ON c.oid = k.conrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_class r ON r.oid = k.confrelid "
        "JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace "
        "CROSS JOIN LATERAL unnest(k.conkey, k.confkey) WITH ORDINALITY AS u(att, ratt, ord) "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = u.att "
        "JOIN pg_catalog.pg_attribute ra ON ra.attrelid = r.oid AND ra.attnum = u.ratt "
        "WHERE k.contype = 'f' AND n.nspname = %s AND c.relname = %s ORDER BY k.conname, u.ord"
    )

    def is_duplicate(self, err: DatabaseError) -> bool:
        """SQLSTATE 23505."""
        return getattr(err.__cause__, "sqlstate", None) == self.UNIQUE_VIOLATION

    def json_param(self, value: Any) -> Any:
        """Wrap the value in psycopg's ``Jsonb``."""
        from psycopg.types.json import Jsonb

        return None if value is None else Jsonb(value)

    def table_exists(self, db: Any, schema: str, table: str) -> bool:
        """Read ``pg_class``."""
        rows = db.query(
            "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (schema, table),
        )
        return bool(rows)


MYSQL = MySQLDialect()
POSTGRES = PostgresDialect()
DIALECTS = {"mysql": MYSQL, "postgresql": POSTGRES}


def dialect_of(db: Any) -> SqlDialect:
    """Return the dialect of connection ``db`` (its ``dialect`` attribute)."""
    return db.dialect  # type: ignore[no-any-return]
