"""The rows and objects of one table, from the 0.14 source into the 2.x destination.

A table moves in key-ordered batches, each bounded in rows and in bytes, and each a
constant number of round trips, whatever it holds (a table that is empty at the
destination when its copy begins, as on a first run, skips step 2's lookup):

1. the source names the next keys and their rows' sizes (no row data), and the batch
   ends where ``batch_rows`` or ``batch_bytes`` would be passed (one key at least);
2. the source sends those rows; the destination says which of their keys it has;
3. the objects the missing rows reference are read from the source's ``~external``
   tables (one query per store), copied into the destination store in 2.x's layout by
   the copy engine the link uses (:func:`djbridge.link.transfer.copy_objects`, with a
   :class:`~djbridge.link.transfer.Dj2Placement`), and each copy's MD5 is checked
   against the hash 0.14 recorded *before* any row that references it is written;
4. the missing rows are inserted in one destination transaction.

The source is read inside one consistent snapshot (``START TRANSACTION WITH CONSISTENT
SNAPSHOT, READ ONLY``) opened before the first table, so a source that keeps inserting
never offers a child whose parent this run did not see: rows added meanwhile arrive on the
next run. A run killed anywhere leaves whole batches behind it (and at worst orphan
objects, which dj-cleaner reclaims); the next run finds their keys present and goes on.

    mover = TableMover(plan, source_db, dest, stores, pool, progress)
    result = mover.copy()                 # rows_copied, rows_present, objects, bytes
    extra = mover.extra_keys()            # destination keys the source no longer has
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from djbridge.errors import IntegrityError
from djbridge.layout import tracking_table
from djbridge.link.transfer import (
    ByteBudget,
    Dj2Placement,
    ExternalRow,
    Placement,
    copy_objects,
    dj2_hash,
)
from djbridge.migrate.definitions import TablePlan
from djbridge.migrate.target import Destination
from djbridge.mysql import Database, placeholders, quote

log = logging.getLogger(__name__)

Key = tuple[Any, ...]
BATCH_ROWS = 5000
"""Rows per batch at most (fewer for wide keys: see :attr:`TableMover.batch_rows`)."""
KEY_PARAMETERS = 30_000
"""Key values one statement may carry (PostgreSQL allows 65,535 parameters)."""
BATCH_BYTES = 16 << 20
COPY_BUDGET = 64 << 20


def open_snapshot(db: Database) -> None:
    """Make ``db`` read one consistent, read-only snapshot of the source, in UTC."""
    db.execute("SET time_zone = '+00:00'")
    db.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    db.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")


@dataclass(frozen=True)
class StorePair:
    """Where one external column's objects come from and go to."""

    source: Placement
    destination: Dj2Placement
    destination_store: str  # the 2.x store's name, written into each JSON


@dataclass
class Moved:
    """What one table's copy did."""

    rows_copied: int = 0
    rows_present: int = 0
    was_empty: bool = False  # the destination table had no row when the copy began
    objects_copied: int = 0
    bytes_copied: int = 0


class TableMover:
    """Copies one table's missing rows (and their objects); counts what it finds."""

    def __init__(
        self,
        plan: TablePlan,
        source: Database,
        dest: Destination,
        stores: Mapping[str, StorePair],
        pool: Executor,
        on_rows: Any = None,
        on_bytes: Any = None,
        batch_rows: int = BATCH_ROWS,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        self.plan = plan
        self.source = source
        self.dest = dest
        self.stores = stores  # by external column name
        self.pool = pool
        self.on_rows = on_rows or (lambda n: None)
        self.on_bytes = on_bytes or (lambda n: None)
        self.batch_rows = max(
            1, min(batch_rows, KEY_PARAMETERS // max(1, len(plan.source.primary_key)))
        )
        self.batch_bytes = batch_bytes
        self.budget = ByteBudget(COPY_BUDGET)
        table = plan.source
        self.columns = [c.name for c in table.columns]
        self.key_columns = table.primary_key
        self.key_index = [self.columns.index(k) for k in self.key_columns]
        # one key as query parameters, each in its column's character set and collation
        key_cols = [table.columns[i] for i in self.key_index]
        self.key_row = "(" + ", ".join(c.placeholder for c in key_cols) + ")"

    # ---- reading the source ------------------------------------------------------------

    def _where_after(self, after: Key | None) -> tuple[str, list[Any]]:
        if after is None:
            return "", []
        names = ", ".join(quote(c) for c in self.key_columns)
        return f"({names}) > {self.key_row}", list(after)

    def batches(self) -> Iterator[list[tuple[Any, ...]]]:
        """Yield the source rows in key order, a bounded batch at a time (two statements each)."""
        table = self.plan.source
        full = quote(table.schema, table.name)
        keys = ", ".join(quote(c) for c in self.key_columns)
        size = " + ".join(f"COALESCE(LENGTH({quote(c)}), 0)" for c in self.columns)
        cols = ", ".join(quote(c) for c in self.columns)
        after: Key | None = None
        while True:
            where, params = self._where_after(after)
            clause = f"WHERE {where} " if where else ""
            probe = self.source.query(
                f"SELECT {keys}, {size} FROM {full} {clause}ORDER BY {keys} "
                f"LIMIT {self.batch_rows}",
                params,
            )
            if not probe:
                return
            total, last = 0, probe[0][:-1]
            for row in probe:
                if total and total + int(row[-1]) > self.batch_bytes:
                    break
                total += int(row[-1])
                last = row[:-1]
            names = ", ".join(quote(c) for c in self.key_columns)
            upto = f"({names}) <= {self.key_row}"
            where_all = f"{where} AND {upto}" if where else upto
            rows = self.source.query(
                f"SELECT {cols} FROM {full} WHERE {where_all} ORDER BY {keys}",
                [*params, *last],
            )
            yield [tuple(r) for r in rows]
            after = tuple(last)

    def destination_key(self, row: Sequence[Any]) -> Key:
        """Return ``row``'s key as the destination stores it (through the casts)."""
        return self.cast_key(tuple(row[i] for i in self.key_index))

    def cast_key(self, key: Key) -> Key:
        """Return a source key as the destination stores it."""
        casts = self.plan.casts
        return tuple(casts[c].write(v) for c, v in zip(self.key_columns, key, strict=True))

    # ---- objects --------------------------------------------------------------------------

    def tracking(self, column: str, hashes: set[bytes]) -> dict[bytes, ExternalRow]:
        """Read the ``~external`` rows of ``hashes`` for ``column``'s store (one statement)."""
        if not hashes:
            return {}
        store = str(self.plan.source.columns[self.columns.index(column)].store)
        table = quote(self.plan.source.schema, tracking_table(store))
        found: dict[bytes, ExternalRow] = {}
        ordered = sorted(hashes)
        rows = self.source.query(
            f"SELECT hash, size, attachment_name, filepath, contents_hash FROM {table} "
            f"WHERE hash IN ({placeholders(len(ordered))})",
            ordered,
        )
        for digest, size, name, path, contents in rows:
            found[bytes(digest)] = ExternalRow(
                bytes(digest), int(size), name, path, bytes(contents) if contents else None
            )
        missing = hashes - set(found)
        if missing:
            raise IntegrityError(
                f"{self.plan.source.schema}.{self.plan.name}.{column}: {len(missing)} "
                f"referenced object(s) have no row in {tracking_table(store)}, e.g. "
                f"{next(iter(missing)).hex()}"
            )
        return found

    def json_for(self, column: str, row: ExternalRow) -> dict[str, Any]:
        """Return the 2.x JSON of one external value, as DataJoint 2.x writes it."""
        pair = self.stores[column]
        key = pair.destination.key(row)
        if pair.destination.filepath:
            return {
                "path": key,
                "store": pair.destination_store,
                "size": row.size,
                "is_dir": False,
                "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            }
        size = row.size + len(pair.destination.header(row))
        return {
            "hash": dj2_hash(row),
            "path": key,
            "schema": self.plan.destination_schema,
            "store": pair.destination_store,
            "size": size,
        }

    def copy_objects_of(self, rows: Sequence[Sequence[Any]]) -> tuple[dict[str, Any], int, int]:
        """Copy and verify every object ``rows`` reference; return their JSON, count and bytes."""
        values: dict[str, Any] = {}
        count = size = 0
        for column in self.stores:
            index = self.columns.index(column)
            hashes = {bytes(r[index]) for r in rows if r[index] is not None}
            tracked = self.tracking(column, hashes)
            pair = self.stores[column]
            size += copy_objects(
                list(tracked.values()),
                pair.source,
                pair.destination,
                self.pool,
                self.on_bytes,
                self.budget,
            )
            count += len(tracked)
            values[column] = {d: self.json_for(column, r) for d, r in tracked.items()}
        return values, count, size

    # ---- writing ---------------------------------------------------------------------------

    def destination_row(self, row: Sequence[Any], objects: Mapping[str, Any]) -> list[Any]:
        """Return ``row`` as the destination stores it: casts applied, references as JSON."""
        out = []
        for name, value in zip(self.columns, row, strict=True):
            if value is not None and name in objects:
                out.append(self.dest.json_param(objects[name][bytes(value)]))
            elif value is not None and self.plan.casts[name].declared == "json":
                out.append(self.dest.json_param(json.loads(value)))
            else:
                out.append(self.plan.casts[name].write(value))
        return out

    def copy(self) -> Moved:
        """Copy every source row the destination lacks; return the counts."""
        schema, name = self.plan.destination_schema, self.plan.name
        # An empty table (the first run) has none of the keys: no lookup per batch.
        moved = Moved(was_empty=self.dest.is_empty(schema, name))
        for rows in self.batches():
            if moved.was_empty:
                new = rows
            else:
                keys = [self.destination_key(r) for r in rows]
                present = self.dest.present(schema, name, self.key_columns, keys)
                new = [r for r, k in zip(rows, keys, strict=True) if k not in present]
            moved.rows_present += len(rows) - len(new)
            if new:
                objects, count, size = self.copy_objects_of(new)
                out = [self.destination_row(r, objects) for r in new]
                with self.dest.transaction():
                    self.dest.insert(schema, name, self.columns, out)
                moved.rows_copied += len(new)
                moved.objects_copied += count
                moved.bytes_copied += size
                log.info(
                    "%s.%s: copied %d rows, %d objects (%d bytes)",
                    schema,
                    name,
                    len(new),
                    count,
                    size,
                )
            self.on_rows(len(rows))
        return moved

    # ---- extra rows ------------------------------------------------------------------------

    def source_key(self, key: Key) -> Key:
        """Return a destination key as the source spells it (the casts undone)."""
        casts = self.plan.casts
        return tuple(casts[c].read_back(v) for c, v in zip(self.key_columns, key, strict=True))

    def extra_keys(self, chunk: int = 1000) -> Iterator[list[Key]]:
        """Yield, a chunk at a time, the destination keys whose rows the source lacks."""
        table = self.plan.source
        full = quote(table.schema, table.name)
        names = ", ".join(quote(c) for c in self.key_columns)
        row = self.key_row
        after: Key | None = None
        while True:
            keys = self.dest.keys(
                self.plan.destination_schema, table.name, self.key_columns, after, chunk
            )
            if not keys:
                return
            after = keys[-1]
            wanted = [self.source_key(k) for k in keys]
            found = self.source.query(
                f"SELECT {names} FROM {full} WHERE ({names}) IN ({', '.join([row] * len(wanted))})",
                [v for k in wanted for v in k],
            )
            have = {self.cast_key(tuple(r)) for r in found}
            extra = [k for k in keys if k not in have]
            if extra:
                yield extra
