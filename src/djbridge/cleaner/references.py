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

    from djbridge.cleaner.references import Tracking
    tracking = Tracking(db, "lab", "raw")
    tracking.check()                       # schema and ~external_raw exist
    managed, other = tracking.load()       # sets of 16-byte hashes
    tracking.still_tracked([h1, h2])       # fresh autocommit re-check
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from djbridge.errors import DatabaseError, DjBridgeError
from djbridge.layout import tracking_table
from djbridge.mysql import Database, chunks, placeholders, quote

log = logging.getLogger(__name__)

ER_ROW_IS_REFERENCED = 1451


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
        self.table = tracking_table(store)
        self.others: list[str] = []

    @property
    def qualified(self) -> str:
        """The quoted ``schema.~external_<store>`` name."""
        return quote(self.schema, self.table)

    def check(self) -> None:
        """Make sure the schema and its tracking table exist; find the schema's other stores.

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
        rows = self.db.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name LIKE %s",
            (self.schema, r"~external\_%"),
        )
        self.others = sorted(str(name) for (name,) in rows if name != self.table)

    def load(self) -> tuple[set[bytes], set[bytes]]:
        """Return the hashes to protect as ``(managed, other)``.

        ``managed`` are this store's blob and attachment rows: their objects are
        expected under the schema folder. ``other`` are this store's filepath rows
        and every row of the schema's other ``~external_*`` tables (stores may
        share a location, and identical content has one hash).
        """
        managed: set[bytes] = set()
        other: set[bytes] = set()
        sql = f"SELECT hash, filepath IS NOT NULL FROM {self.qualified}"
        for digest, is_filepath in self.db.stream(sql):
            (other if is_filepath else managed).add(bytes(digest))
        other.update(self.load_others())
        return managed, other

    def load_others(self) -> set[bytes]:
        """Return every hash in the schema's other tracking tables."""
        found: set[bytes] = set()
        for table in self.others:
            for (digest,) in self.db.stream(f"SELECT hash FROM {quote(self.schema, table)}"):
                found.add(bytes(digest))
        return found

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

    def unused(self, min_age: float) -> set[bytes]:
        """Return the hashes of old enough, non-filepath rows that nothing references."""
        condition = self._unused_condition(self.references())
        sql = f"SELECT hash FROM {self.qualified} WHERE {condition}"
        return {bytes(digest) for (digest,) in self.db.stream(sql, (int(min_age),))}

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
