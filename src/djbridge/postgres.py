"""One small door to PostgreSQL: connect, query with parameters, transactions.

:class:`PgDatabase` wraps a psycopg 3 connection behind the same small interface
as :class:`djbridge.mysql.Database` (``query``, ``stream``, ``execute``,
``transaction``, ``close``), so code that only reads and re-checks can take
either. It keeps the same three rules:

* identifiers are quoted in exactly one place, :func:`pg_quote`, which rejects
  names PostgreSQL cannot hold and doubles double quotes;
* values always travel as query parameters (``%s``), never as formatted SQL;
* every statement passes through an optional ``tracer(sql, params)`` hook.

Errors become :class:`~djbridge.errors.DatabaseError` naming the server and its
address; the password never appears in them. The connection runs in autocommit
mode, so every query sees what is committed right now; ``stream`` reads a large
result a chunk at a time instead of holding it.

    from djbridge.postgres import connect_pg, pg_quote
    db = connect_pg(server)          # a DatabaseServer with backend "postgresql"
    for (path,) in db.stream(f"SELECT v->>'path' FROM {pg_quote('lab', 'rec')}"):
        ...
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg

from djbridge.config import DatabaseServer
from djbridge.errors import ConfigError, DatabaseError, redact

if TYPE_CHECKING:
    from djbridge.sqldialect import SqlDialect

log = logging.getLogger(__name__)

Tracer = Callable[[str, Any], None]
MAX_IDENTIFIER = 63
PLAIN_INSERT = re.compile(r"INSERT INTO (\S+) \(([^()]+)\) VALUES \(%s(?:, %s)*\)", re.S)
"""A one-row ``INSERT INTO t (cols) VALUES (%s, ...)``: its rows can go by ``COPY``."""
SSLMODES = {True: "require", False: "disable", None: "prefer"}


def pg_quote(*parts: str) -> str:
    """Quote a (possibly qualified) PostgreSQL identifier, doubling any ``"`` inside.

    Raises
    ------
    ConfigError
        If a part is empty, longer than 63 bytes, or contains a NUL byte.
    """
    out = []
    for part in parts:
        if (
            not isinstance(part, str)
            or not part
            or len(part.encode()) > MAX_IDENTIFIER
            or "\0" in part
        ):
            raise ConfigError(f"invalid SQL identifier {part!r}")
        out.append('"' + part.replace('"', '""') + '"')
    return ".".join(out)


def describe_pg(err: BaseException, password: str = "") -> str:
    """Return a one-line message for a psycopg error, never an empty one, password masked."""
    text = redact(" ".join(str(err).split()), [password])
    sqlstate = getattr(err, "sqlstate", None)
    if not text:
        text = f"{type(err).__name__} (the connection was probably lost)"
    return f"{text} [{sqlstate}]" if sqlstate else text


def connect_pg(
    server: DatabaseServer, *, tracer: Tracer | None = None, timeout: float = 10.0
) -> PgDatabase:
    """Open an autocommit connection to ``server.database`` on a PostgreSQL server.

    Raises
    ------
    DatabaseError
        If the server cannot be reached or refuses the login. The message names
        the server, its address, the database and the user, never the password.
    """
    try:
        conn = psycopg.connect(
            host=server.host,
            port=server.port,
            user=server.user,
            password=server.password,
            dbname=server.database or "postgres",
            sslmode=SSLMODES[server.use_tls],
            connect_timeout=max(1, int(timeout)),
            autocommit=True,
            application_name="djbridge",
        )
    except psycopg.Error as err:
        raise DatabaseError(
            f"cannot connect to database server {server.name!r} at {server.address} "
            f"(database {server.database!r}) as {server.user!r}: "
            f"{describe_pg(err, server.password)}"
        ) from err
    return PgDatabase(conn, server, tracer)


class PgDatabase:
    """A live autocommit connection to one PostgreSQL database."""

    def __init__(
        self, conn: psycopg.Connection[Any], server: DatabaseServer, tracer: Tracer | None = None
    ) -> None:
        self.conn = conn
        self.server = server
        self.tracer = tracer

    @property
    def dialect(self) -> SqlDialect:
        """The SQL dialect of PostgreSQL (:mod:`djbridge.sqldialect`)."""
        from djbridge.sqldialect import POSTGRES

        return POSTGRES

    def __repr__(self) -> str:
        return f"PgDatabase({self.server.name!r} {self.server.user}@{self.server.address})"

    def _error(self, err: psycopg.Error) -> DatabaseError:
        text = describe_pg(err, self.server.password)
        return DatabaseError(f"{self.server.name} ({self.server.address}): {text}")

    def _trace(self, sql: str, params: Any) -> None:
        if self.tracer is not None:
            self.tracer(sql, params)

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run a statement and return all rows as tuples."""
        self._trace(sql, params)
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall()) if cur.description else []
        except psycopg.Error as err:
            raise self._error(err) from err

    def stream(self, sql: str, params: Any = None, size: int = 10_000) -> Iterator[tuple[Any, ...]]:
        """Yield the rows of a large result a chunk at a time, without holding them all."""
        self._trace(sql, params)
        try:
            with self.conn.cursor() as cur:
                yield from cur.stream(sql, params, size=size)
        except psycopg.Error as err:
            raise self._error(err) from err

    def execute(self, sql: str, params: Any = None) -> int:
        """Run a statement and return the number of affected rows."""
        self._trace(sql, params)
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, params)
                return int(cur.rowcount)
        except psycopg.Error as err:
            raise self._error(err) from err

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run one statement for many parameter rows; return the rows affected.

        A plain ``INSERT INTO t (cols) VALUES (%s, ...)`` streams its rows with
        ``COPY ... FROM STDIN``, PostgreSQL's bulk path (a duplicate key still fails
        it, as it would fail the INSERT); any other statement is pipelined, one
        round trip in all.
        """
        if not rows:
            return 0
        self._trace(sql, rows)
        plain = PLAIN_INSERT.fullmatch(sql)
        try:
            with self.conn.cursor() as cur:
                if plain is None:
                    cur.executemany(sql, rows)
                    return int(cur.rowcount)
                table, columns = plain.groups()
                with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                return len(rows)
        except psycopg.Error as err:
            raise self._error(err) from err

    @contextmanager
    def transaction(self) -> Iterator[PgDatabase]:
        """Run the block in one transaction: commit on success, roll back on any error."""
        try:
            with self.conn.transaction():
                yield self
        except psycopg.Error as err:
            raise self._error(err) from err

    def schema_exists(self, schema: str) -> bool:
        """Return whether the schema exists (pg_catalog shows it whatever the privileges)."""
        rows = self.query("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (schema,))
        return bool(rows)

    def table_exists(self, schema: str, table: str) -> bool:
        """Return whether ``schema.table`` exists."""
        return self.dialect.table_exists(self, schema, table)

    def uses_tls(self) -> bool:
        """Return whether this session is encrypted."""
        return bool(self.conn.info.pgconn.ssl_in_use)

    def ensure_open(self) -> None:
        """Reopen the connection if the server dropped it.

        Raises
        ------
        DatabaseError
            If the server cannot be reached again.
        """
        if self.conn.closed or self.conn.broken:
            self.conn = connect_pg(self.server, tracer=self.tracer).conn
            log.info("reconnected to %s", self)

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        if not self.conn.closed:
            self.conn.close()
