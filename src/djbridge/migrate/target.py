"""The DataJoint 2.x database a migration writes: one small dialect per backend.

Everything that differs between a PostgreSQL and a MySQL destination sits here: how a
table is named (``"schema"."#table"`` or a backquoted pair), how a JSON value travels as
a parameter, how rows are inserted, found by key and deleted, and which tables exist.
The row engine (:mod:`.copier`) asks a :class:`Destination` and never branches on the
backend.

    dest = open_destination(settings.destination)
    with dest.transaction():
        dest.insert("lab", "session", ["subject_id", "session"], rows)
    dest.present("lab", "session", ["subject_id", "session"], keys)   # the keys it has
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from djbridge.config import DatabaseServer
from djbridge.mysql import Database, connect, quote


class Destination:
    """Row access to the 2.x database; subclasses fill in the dialect."""

    backend = ""

    def __init__(self, db: Any) -> None:
        self.db = db

    def table(self, schema: str, table: str) -> str:
        """Return the quoted, qualified table name."""
        raise NotImplementedError

    def column(self, name: str) -> str:
        """Return the quoted column name."""
        raise NotImplementedError

    def json_param(self, value: Any) -> Any:
        """Return ``value`` (a dict) as a parameter for a JSON column."""
        raise NotImplementedError

    def tables(self, schema: str) -> set[str]:
        """Return the names of the tables in ``schema`` (empty when it does not exist)."""
        raise NotImplementedError

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[Destination]:
        """Run the block in one transaction."""
        with self.db.transaction():
            yield self

    def _key_filter(self, key_columns: Sequence[str], keys: Sequence[tuple[Any, ...]]) -> str:
        names = ", ".join(self.column(c) for c in key_columns)
        row = "(" + ", ".join(["%s"] * len(key_columns)) + ")"
        return f"({names}) IN ({', '.join([row] * len(keys))})"

    def select(
        self,
        schema: str,
        table: str,
        columns: Sequence[str],
        key_columns: Sequence[str],
        keys: Sequence[tuple[Any, ...]],
    ) -> list[tuple[Any, ...]]:
        """Return ``columns`` of the rows whose key is among ``keys`` (one statement)."""
        if not keys:
            return []
        names = ", ".join(self.column(c) for c in columns)
        sql = (
            f"SELECT {names} FROM {self.table(schema, table)} "
            f"WHERE {self._key_filter(key_columns, keys)}"
        )
        return list(self.db.query(sql, [v for k in keys for v in k]))

    def present(
        self, schema: str, table: str, key_columns: Sequence[str], keys: Sequence[tuple[Any, ...]]
    ) -> set[tuple[Any, ...]]:
        """Return those of ``keys`` that the table holds."""
        return {tuple(r) for r in self.select(schema, table, key_columns, key_columns, keys)}

    def insert(
        self, schema: str, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Insert ``rows`` (values in ``columns`` order) in one multi-row statement."""
        if rows:
            names = ", ".join(self.column(c) for c in columns)
            marks = ", ".join(["%s"] * len(columns))
            self._executemany(
                f"INSERT INTO {self.table(schema, table)} ({names}) VALUES ({marks})", rows
            )

    def is_empty(self, schema: str, table: str) -> bool:
        """Return whether the table holds no row."""
        return not self.db.query(f"SELECT 1 FROM {self.table(schema, table)} LIMIT 1")

    def delete(
        self, schema: str, table: str, key_columns: Sequence[str], keys: Sequence[tuple[Any, ...]]
    ) -> int:
        """Delete the rows whose key is among ``keys``; return how many went."""
        if not keys:
            return 0
        sql = f"DELETE FROM {self.table(schema, table)} WHERE {self._key_filter(key_columns, keys)}"
        return int(self.db.execute(sql, [v for k in keys for v in k]))

    def keys(
        self,
        schema: str,
        table: str,
        key_columns: Sequence[str],
        after: tuple[Any, ...] | None,
        limit: int,
    ) -> list[tuple[Any, ...]]:
        """Return up to ``limit`` keys after ``after``, in key order (keyset pagination)."""
        names = ", ".join(self.column(c) for c in key_columns)
        where, params = "", []
        if after is not None:
            where = f"WHERE ({names}) > ({', '.join(['%s'] * len(after))}) "
            params = list(after)
        sql = (
            f"SELECT {names} FROM {self.table(schema, table)} {where}"
            f"ORDER BY {names} LIMIT {int(limit)}"
        )
        return [tuple(r) for r in self.db.query(sql, params)]

    def close(self) -> None:
        """Close the connection."""
        self.db.close()


class PostgresDestination(Destination):
    """A PostgreSQL database: DataJoint schemas are PostgreSQL schemas in it."""

    backend = "postgresql"

    def table(self, schema: str, table: str) -> str:
        """Return ``"schema"."table"``."""
        from djbridge.postgres import pg_quote

        return pg_quote(schema, table)

    def column(self, name: str) -> str:
        """Return ``"name"``."""
        from djbridge.postgres import pg_quote

        return pg_quote(name)

    def json_param(self, value: Any) -> Any:
        """Wrap ``value`` for a ``jsonb`` column."""
        from psycopg.types.json import Jsonb

        return Jsonb(value)

    def tables(self, schema: str) -> set[str]:
        """Return the tables of the PostgreSQL schema ``schema``."""
        rows = self.db.query(
            "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
            (schema,),
        )
        return {str(r[0]) for r in rows}

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        import psycopg

        try:
            with self.db.conn.cursor() as cur:
                cur.executemany(sql, rows)
        except psycopg.Error as err:
            raise self.db._error(err) from err


class MySQLDestination(Destination):
    """A MySQL 8+ server: each DataJoint schema is a database."""

    backend = "mysql"

    def table(self, schema: str, table: str) -> str:
        """Return ```schema`.`table```."""
        return quote(schema, table)

    def column(self, name: str) -> str:
        """Return ```name```."""
        return quote(name)

    def json_param(self, value: Any) -> Any:
        """Serialise ``value`` for a ``json`` column."""
        return json.dumps(value)

    def tables(self, schema: str) -> set[str]:
        """Return the tables of the database ``schema``."""
        rows = self.db.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema=%s", (schema,)
        )
        return {str(r[0]) for r in rows}

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.db.executemany(sql, rows)


def open_destination(server: DatabaseServer) -> Destination:
    """Connect to the destination and return its dialect.

    Raises
    ------
    DatabaseError
        If the server cannot be reached or refuses the login.
    """
    if server.backend == "postgresql":
        from djbridge.postgres import connect_pg

        return PostgresDestination(connect_pg(server))
    db: Database = connect(server)
    db.execute("SET time_zone = '+00:00'")
    return MySQLDestination(db)
