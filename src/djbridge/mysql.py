"""One small door to MariaDB/MySQL: connect, query with parameters, transactions.

:class:`Database` wraps a PyMySQL connection. It owns three rules:

* identifiers are quoted in exactly one place, :func:`quote`, which rejects names
  MariaDB cannot hold and doubles backticks, so a hostile schema or table name
  can never close the quote;
* values always travel as query parameters, never as formatted SQL;
* every statement passes through an optional ``tracer(sql, params)`` hook, so a
  test can count what a pull or a clean sends to each server.

The connection runs in autocommit mode; :meth:`Database.transaction` opens an
explicit transaction and commits it or rolls it back as a unit.

    from djbridge.mysql import connect, quote
    db = connect(server)                       # a djbridge.config.DatabaseServer
    rows = db.query(f"SELECT hash FROM {quote('lab', '~external_raw')}")
    with db.transaction():
        db.execute("DELETE FROM ... WHERE hash = %s", (h,))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pymysql
import pymysql.cursors

from djbridge.config import DatabaseServer

if TYPE_CHECKING:
    from djbridge.sqldialect import SqlDialect

from djbridge.errors import ConfigError, DatabaseError, redact

log = logging.getLogger(__name__)


def describe(err: BaseException, password: str = "") -> str:
    """Return a readable message for a PyMySQL error, never an empty one nor the password."""
    args = getattr(err, "args", ())
    text = str(args[-1]).strip() if args else ""
    code = args[0] if args and isinstance(args[0], int) else None
    if not text:
        text = f"{type(err).__name__} (the connection was probably lost)"
    text = redact(text, [password])
    return f"{text} [{code}]" if code else text


Tracer = Callable[[str, Any], None]
MAX_IDENTIFIER = 64
CR_SSL_NOT_SUPPORTED = 2026
CHUNK_SIZE = 1000
"""Values per ``IN (...)`` list or multi-row statement: small packets, few round trips."""


def quote(*parts: str) -> str:
    """Quote a (possibly qualified) identifier, doubling any backtick inside a name.

    Raises
    ------
    ConfigError
        If a part is empty, too long, or contains a NUL byte.
    """
    out = []
    for part in parts:
        if not isinstance(part, str) or not part or len(part) > MAX_IDENTIFIER or "\0" in part:
            raise ConfigError(f"invalid SQL identifier {part!r}")
        out.append("`" + part.replace("`", "``") + "`")
    return ".".join(out)


def placeholders(count: int) -> str:
    """Return ``%s, %s, ...`` with ``count`` placeholders, for an ``IN`` list."""
    return ", ".join(["%s"] * count)


def chunks(items: Sequence[Any], size: int = CHUNK_SIZE) -> Iterator[Sequence[Any]]:
    """Yield consecutive slices of ``items`` of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def key_filter(
    columns: Sequence[str], keys: Sequence[tuple[Any, ...]], alias: str = ""
) -> tuple[str, list[Any]]:
    """Return ``(sql, params)`` for ``(cols) IN ((...), ...)`` over ``keys``.

    One column gives ``col IN (%s, ...)``; several give row constructors.
    ``alias`` qualifies each column, e.g. ``s.`rec_id```.
    """
    from djbridge.sqldialect import in_filter

    return in_filter(quote, columns, keys, alias)


def _open(server: DatabaseServer, tls: bool, timeout: float) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(
        host=server.host,
        port=server.port,
        user=server.user,
        password=server.password,
        ssl={"check_hostname": False} if tls else None,
        # PyMySQL negotiates TLS whenever the server offers it unless told not to.
        ssl_disabled=not tls,
        autocommit=True,
        charset="utf8mb4",
        connect_timeout=timeout,
    )


def connect(
    server: DatabaseServer, *, tracer: Tracer | None = None, timeout: float = 10.0
) -> Database:
    """Open a connection; with ``use_tls=None`` try TLS first and fall back to plain.

    Raises
    ------
    DatabaseError
        If the server cannot be reached or refuses the login. The message names
        the server and the user, never the password.
    """
    attempts = [True, False] if server.use_tls is None else [server.use_tls]
    for tls in attempts:
        try:
            conn = _open(server, tls, timeout)
        except pymysql.err.OperationalError as err:
            code = err.args[0] if err.args else None
            if tls and server.use_tls is None and code == CR_SSL_NOT_SUPPORTED:
                continue
            raise DatabaseError(
                f"cannot connect to database server {server.name!r} at {server.address} "
                f"as {server.user!r}: {describe(err, server.password)}"
            ) from err
        return Database(conn, server, tracer)
    raise DatabaseError(f"cannot connect to database server {server.name!r} at {server.address}")


class Database:
    """A live connection to one server, with query helpers and a tracer hook."""

    def __init__(
        self,
        conn: pymysql.connections.Connection[Any],
        server: DatabaseServer,
        tracer: Tracer | None = None,
    ) -> None:
        self.conn = conn
        self.server = server
        self.tracer = tracer

    @property
    def dialect(self) -> SqlDialect:
        """The SQL dialect of this server kind (:mod:`djbridge.sqldialect`)."""
        from djbridge.sqldialect import MYSQL

        return MYSQL

    def __repr__(self) -> str:
        return f"Database({self.server.name!r} {self.server.user}@{self.server.address})"

    def _run(self, cursor: Any, sql: str, params: Any) -> None:
        if self.tracer is not None:
            self.tracer(sql, params)
        try:
            cursor.execute(sql, params)
        except pymysql.err.MySQLError as err:
            raise DatabaseError(
                f"{self.server.name} ({self.server.address}): {describe(err, self.server.password)}"
            ) from err

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run a statement and return all rows as tuples."""
        with self.conn.cursor() as cur:
            self._run(cur, sql, params)
            return list(cur.fetchall())

    def query_dicts(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        """Run a statement and return all rows as dicts keyed by column name."""
        with self.conn.cursor(pymysql.cursors.DictCursor) as cur:
            self._run(cur, sql, params)
            return list(cur.fetchall())

    def stream(self, sql: str, params: Any = None, size: int = 10_000) -> Iterator[tuple[Any, ...]]:
        """Yield rows of a large result without holding them all (unbuffered cursor)."""
        with self.conn.cursor(pymysql.cursors.SSCursor) as cur:
            self._run(cur, sql, params)
            while rows := cur.fetchmany(size):
                yield from rows

    def execute(self, sql: str, params: Any = None) -> int:
        """Run a statement and return the number of affected rows."""
        with self.conn.cursor() as cur:
            self._run(cur, sql, params)
            return int(cur.rowcount)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run one statement for many parameter rows (multi-row INSERT where possible)."""
        if not rows:
            return 0
        if self.tracer is not None:
            self.tracer(sql, rows)
        with self.conn.cursor() as cur:
            try:
                return int(cur.executemany(sql, rows) or 0)
            except pymysql.err.MySQLError as err:
                raise DatabaseError(
                    f"{self.server.name} ({self.server.address}): "
                    f"{describe(err, self.server.password)}"
                ) from err

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """Run the block in one transaction: commit on success, roll back on any error."""
        self.execute("START TRANSACTION")
        try:
            yield self
        except BaseException:
            try:
                self.conn.rollback()
            except pymysql.err.MySQLError:
                log.warning("rollback on %s failed; the server discards the transaction", self)
            raise
        else:
            try:
                self.conn.commit()
            except pymysql.err.MySQLError as err:
                raise DatabaseError(
                    f"{self.server.name}: commit failed: {describe(err, self.server.password)}"
                ) from err

    def table_exists(self, schema: str, table: str) -> bool:
        """Return whether ``schema.table`` exists and is visible to this account."""
        rows = self.query(
            "SELECT 1 FROM information_schema.tables WHERE table_schema=%s AND table_name=%s",
            (schema, table),
        )
        return bool(rows)

    def schema_exists(self, schema: str) -> bool:
        """Return whether the schema (database) exists and is visible to this account."""
        rows = self.query(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name=%s", (schema,)
        )
        return bool(rows)

    def ensure_open(self) -> None:
        """Reopen the connection if the server dropped it (killed, timed out).

        The same object stays in use, so tracer hooks and references survive.

        Raises
        ------
        DatabaseError
            If the server cannot be reached again.
        """
        try:
            self.conn.ping(reconnect=False)
        except pymysql.err.Error:
            self.conn = connect(self.server, tracer=self.tracer).conn
            log.info("reconnected to %s", self)

    def uses_tls(self) -> bool:
        """Return whether this session is encrypted (its ``Ssl_cipher`` is set)."""
        rows = self.query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        return bool(rows and rows[0][1])

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        if self.conn.open:
            self.conn.close()
