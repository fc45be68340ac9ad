"""What the database says is still in use: the SQL side of a cleaning run.

DataJoint 0.14 records every externally stored value in a tracking table
``<schema>.~external_<store>`` whose primary key ``hash`` is the 16-byte MD5
digest in the object's name. User tables point at it with foreign keys. This
module reads those tables with plain SQL through :mod:`djbridge.mysql`. It never
creates a table (``schema.external[store]`` in DataJoint would), and it only
ever deletes tracking rows that no foreign key references.

Invariants kept here:

* a hash is protected when it appears in *any* row of *any* ``~external_*``
  table of the schema, on every database server that shares the store folder;
* "unused" is computed with one ``NOT EXISTS`` per referencing column, never
  ``NOT IN``: a single NULL in a nullable ``blob@store=null`` column makes
  ``x NOT IN (..., NULL)`` unknown, so DataJoint's ``unused()`` finds nothing;
* rows with a ``filepath`` are never deleted: their files live outside the
  schema folder and belong to the user.

    from djbridge.cleaner.tracking import Tracking
    tracking = Tracking(db, "lab", "raw")
    tracking.check()                       # schema and ~external_raw exist
    for digest, managed in tracking.hashes():   # sorted by hash, streamed
    tracking.still_tracked([h1, h2])       # fresh autocommit re-check
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from djbridge.errors import DatabaseError, DjBridgeError
from djbridge.layout import TRACKING_PREFIX, tracking_table
from djbridge.mysql import Database, chunks, connect, placeholders, quote

log = logging.getLogger(__name__)

ER_ROW_IS_REFERENCED = 1451


Hashed = tuple[bytes, bool]


def _hash_range(lo: bytes | None, hi: bytes | None, table: str = "") -> tuple[str, list[bytes]]:
    """Return ``(sql, params)`` restricting ``hash`` to ``lo <= hash < hi``."""
    column = f"{table}.hash" if table else "hash"
    parts, params = ["TRUE"], []
    if lo is not None:
        parts.append(f"{column} >= %s")
        params.append(lo)
    if hi is not None:
        parts.append(f"{column} < %s")
        params.append(hi)
    return " AND ".join(parts), params


@dataclass(frozen=True)
class Reference:
    """One foreign-key column that points at a tracking table's ``hash``."""

    schema: str
    table: str
    column: str


class Tracking:
    """One schema's tracking tables on one server, read with fresh autocommit queries."""

    def __init__(self, db: Database, schema: str, store: str) -> None:
        self.db = db
        self.schema = schema
        self.store = store
        self.table = tracking_table(store)
        self.others = self._find_others()

    @property
    def qualified(self) -> str:
        """The quoted ``schema.~external_<store>`` name."""
        return quote(self.schema, self.table)

    def _find_others(self) -> list[str]:
        """Return the schema's other ``~external_*`` tables, sorted (none if it has no schema)."""
        rows = self.db.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name LIKE %s",
            (self.schema, TRACKING_PREFIX.replace("_", r"\_") + "%"),
        )
        return sorted(str(name) for (name,) in rows if name != self.table)

    def check(self) -> None:
        """Make sure the schema and its tracking table exist; look again for other stores.

        The constructor already found the other tracking tables, so every method
        protects their hashes whatever the order of calls; this only adds any
        table created since.

        Raises
        ------
        DjBridgeError
            If the schema or the ``~external_<store>`` table does not exist.
        """
        where = f"database server {self.db.server.name!r}"
        if not self.db.schema_exists(self.schema):
            raise DjBridgeError(f"schema {self.schema!r} does not exist on {where}")
        if not self.db.table_exists(self.schema, self.table):
            raise DjBridgeError(
                f"schema {self.schema!r} on {where} has no table {self.table!r}: "
                "is the store name right? (dj-cleaner never creates it)"
            )
        self.others = self._find_others()

    def reopen(self) -> Tracking:
        """Return the same tracking tables on a new connection (one per parallel range).

        Raises
        ------
        DatabaseError
            If the server cannot be reached.
        """
        return Tracking(connect(self.db.server), self.schema, self.store)

    def hashes(self, lo: bytes | None = None, hi: bytes | None = None) -> Iterator[Hashed]:
        """Stream ``(hash, managed)`` for every row of every tracking table, sorted by hash.

        ``managed`` is true for this store's blob and attachment rows, whose objects
        are expected under the schema folder; it is false for this store's filepath
        rows and for every row of the schema's other ``~external_*`` tables (stores
        may share a location, and identical content has one hash). Only hashes with
        ``lo <= hash < hi`` are read. One unbuffered query, so memory stays constant.
        """
        where, params = _hash_range(lo, hi)
        parts = [f"SELECT hash, filepath IS NULL AS managed FROM {self.qualified} WHERE {where}"]
        parts += [
            f"SELECT hash, 0 FROM {quote(self.schema, table)} WHERE {where}"
            for table in self.others
        ]
        sql = " UNION ALL ".join(parts) + " ORDER BY hash"
        for digest, managed in self.db.stream(sql, params * len(parts)):
            yield bytes(digest), bool(managed)

    def still_tracked(self, hashes: Sequence[bytes]) -> set[bytes]:
        """Return those of ``hashes`` that any tracking table of the schema lists right now."""
        found: set[bytes] = set()
        for table in (self.table, *self.others):
            for part in chunks(hashes):
                rows = self.db.query(
                    f"SELECT hash FROM {quote(self.schema, table)} "
                    f"WHERE hash IN ({placeholders(len(part))})",
                    tuple(part),
                )
                found.update(bytes(digest) for (digest,) in rows)
        return found

    def references(self) -> list[Reference]:
        """List the foreign-key columns, in any schema, that reference this tracking table."""
        rows = self.db.query(
            "SELECT table_schema, table_name, column_name FROM information_schema.key_column_usage "
            "WHERE referenced_table_schema = %s AND referenced_table_name = %s "
            "AND referenced_column_name = 'hash'",
            (self.schema, self.table),
        )
        return [Reference(str(s), str(t), str(c)) for s, t, c in rows]

    def _unused_condition(self, references: Iterable[Reference]) -> str:
        this = self.qualified
        parts = [f"{this}.filepath IS NULL", f"{this}.timestamp <= NOW() - INTERVAL %s SECOND"]
        for ref in references:
            parts.append(
                f"NOT EXISTS (SELECT 1 FROM {quote(ref.schema, ref.table)} AS r "
                f"WHERE r.{quote(ref.column)} = {this}.hash)"
            )
        return " AND ".join(parts)

    def check_can_delete(self) -> None:
        """Make sure this account may delete tracking rows, with a DELETE that matches none.

        Raises
        ------
        DjBridgeError
            Naming the table and the missing privilege.
        """
        try:
            self.db.execute(f"DELETE FROM {self.qualified} WHERE FALSE")
        except DatabaseError as err:
            raise DjBridgeError(
                f"--include-unused needs the DELETE privilege on {self.schema}.{self.table}; "
                f"nothing was deleted: {err}"
            ) from err

    def unused(
        self, min_age: float, lo: bytes | None = None, hi: bytes | None = None
    ) -> Iterator[bytes]:
        """Stream, sorted, the hashes of old enough, non-filepath rows that nothing references."""
        condition = self._unused_condition(self.references())
        where, params = _hash_range(lo, hi, self.qualified)
        sql = f"SELECT hash FROM {self.qualified} WHERE {condition} AND {where} ORDER BY hash"
        for (digest,) in self.db.stream(sql, (int(min_age), *params)):
            yield bytes(digest)

    def delete_unused(self, hashes: Iterable[bytes], min_age: float) -> tuple[int, list[str]]:
        """Delete the given rows in batches if they are still unused; return (deleted, errors).

        Each batch re-evaluates the whole unused condition inside the ``DELETE``, and
        the foreign keys (``ON DELETE RESTRICT``) refuse a row that was referenced in
        the meantime. A batch the server refuses is retried row by row, so one
        re-referenced row keeps only itself.
        """
        condition = self._unused_condition(self.references())
        age = int(min_age)

        def delete(part: Sequence[bytes]) -> int:
            return self.db.execute(
                f"DELETE FROM {self.qualified} "
                f"WHERE hash IN ({placeholders(len(part))}) AND {condition}",
                (*part, age),
            )

        deleted, errors = 0, []
        for part in chunks(sorted(hashes)):
            try:
                deleted += delete(part)
                continue
            except DatabaseError as err:
                log.info("batch delete of unused rows refused (%s); retrying one by one", err)
            for digest in part:
                try:
                    deleted += delete([digest])
                except DatabaseError as err:
                    cause = err.__cause__
                    if cause is not None and cause.args and cause.args[0] == ER_ROW_IS_REFERENCED:
                        continue
                    errors.append(f"cannot delete unused row {digest.hex()}: {err}")
        return deleted, errors
