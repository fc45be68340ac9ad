"""Verify a migration: every migrated row against the source by key, and every object.

For each table, in the same bounded, key-ordered batches as a copy (one source snapshot),
the source rows are cast as a run would write them and compared, column by column, with
the destination rows of the same keys (one statement per batch on each side):

* a key the destination lacks is ``missing``; a row whose values differ is ``differ``
  (e.g. changed on the source after it was copied); a destination key the source no
  longer has is ``extra``;
* every object a destination row references is read back, streamed, and its MD5 compared
  with the JSON's ``hash`` (its size with ``size`` for a filepath): an absent object is in
  ``objects_missing``, a damaged one in ``objects_wrong``. Objects are checked
  concurrently, and none is held whole in memory.

Values are compared as 2.x gives them back: floats at their column's precision, JSON
by value, binary as bytes, text character for character.

    checked = TableChecker(mover).check()
    checked.missing, checked.differ, checked.objects_wrong
"""

from __future__ import annotations

import base64
import decimal
import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from djbridge.errors import ObjectNotFound, StoreError
from djbridge.migrate.copier import Key, TableMover

Problem = dict[str, Any]


@dataclass
class Checked:
    """What verifying one table found."""

    checked: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)
    differ: list[dict[str, Any]] = field(default_factory=list)
    objects_missing: list[Problem] = field(default_factory=list)
    objects_wrong: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing differs."""
        return not (
            self.missing or self.extra or self.differ or self.objects_missing or self.objects_wrong
        )


def _plain(value: Any) -> Any:
    """Return ``value`` in a form both drivers agree on (bytes for binary, dicts for JSON)."""
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return value


def same(expected: Any, actual: Any, declared: str) -> bool:
    """Compare a cast source value with a destination value of the 2.x type ``declared``."""
    expected, actual = _plain(expected), _plain(actual)
    if expected is None or actual is None:
        return expected is None and actual is None
    if declared == "float32":
        return bool(struct.pack("<f", float(expected)) == struct.pack("<f", float(actual)))
    if declared == "json" or declared.startswith("<"):
        if isinstance(actual, str):
            actual = json.loads(actual)
        if isinstance(expected, str):
            expected = json.loads(expected)
        if declared.startswith("<") and "@" in declared and isinstance(expected, dict):
            return all(actual.get(k) == v for k, v in expected.items() if k != "timestamp")
        return bool(expected == actual)
    if isinstance(expected, decimal.Decimal) or isinstance(actual, decimal.Decimal):
        return bool(decimal.Decimal(str(expected)) == decimal.Decimal(str(actual)))
    return bool(expected == actual)


class TableChecker:
    """Checks one table's rows and objects; shares the mover's batches and casts."""

    def __init__(self, mover: TableMover) -> None:
        self.mover = mover
        self.plan = mover.plan

    def key_dict(self, key: Key) -> dict[str, Any]:
        """Return ``key`` as a JSON-able dict of the source's values."""
        out = {}
        for name, value in zip(self.mover.key_columns, key, strict=True):
            if isinstance(value, bytes | bytearray):
                value = value.hex()
            elif not isinstance(value, int | float | str | None):
                value = str(value)
            out[name] = value
        return out

    def check(self) -> Checked:
        """Compare every row and object; return what differs."""
        mover, found = self.mover, Checked()
        schema, table = self.plan.destination_schema, self.plan.name
        columns = mover.columns
        for rows in mover.batches():
            keys = [mover.destination_key(r) for r in rows]
            have = {
                tuple(r[i] for i in mover.key_index): r
                for r in mover.dest.select(schema, table, columns, mover.key_columns, keys)
            }
            objects = self._expected_objects(rows)
            references: list[tuple[Key, str, dict[str, Any]]] = []
            for row, key in zip(rows, keys, strict=True):
                found.checked += 1
                actual = have.get(key)
                if actual is None:
                    found.missing.append(self.key_dict(row_key(mover, row)))
                    continue
                expected = mover.destination_row(row, objects)
                for name, want, got in zip(columns, expected, actual, strict=True):
                    declared = self.plan.casts[name].declared or ""
                    if not same(getattr(want, "obj", want), got, declared):
                        found.differ.append(self.key_dict(row_key(mover, row)))
                        break
                for name in mover.stores:
                    got = _plain(actual[columns.index(name)])
                    if got is not None:
                        meta = json.loads(got) if isinstance(got, str | bytes) else got
                        references.append((row_key(mover, row), name, meta))
            self._check_objects(references, found)
        for extra in mover.extra_keys():
            found.extra.extend(self.key_dict(mover.source_key(k)) for k in extra)
        return found

    def _expected_objects(self, rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
        """Return the JSON a run writes for the objects ``rows`` reference (no copying)."""
        values: dict[str, Any] = {}
        for column in self.mover.stores:
            index = self.mover.columns.index(column)
            hashes = {bytes(r[index]) for r in rows if r[index] is not None}
            tracked = self.mover.tracking(column, hashes)
            values[column] = {d: self.mover.json_for(column, r) for d, r in tracked.items()}
        return values

    def _check_objects(
        self, references: list[tuple[Key, str, dict[str, Any]]], found: Checked
    ) -> None:
        def one(item: tuple[Key, str, dict[str, Any]]) -> tuple[str, Problem] | None:
            key, column, meta = item
            store = self.mover.stores[column].destination.store
            problem = {"key": self.key_dict(key), "column": column, "path": meta.get("path")}
            try:
                stream = store.open_read(str(meta.get("path")))
            except ObjectNotFound:
                return "missing", problem
            except StoreError as err:
                return "wrong", {**problem, "error": str(err)}
            digest, size = hashlib.md5(), 0
            try:
                for chunk in stream.chunks:
                    digest.update(chunk)
                    size += len(chunk)
            finally:
                stream.close()
            if "hash" in meta:
                text = base64.b32encode(digest.digest()).decode("ascii").rstrip("=").lower()
                ok = text == meta["hash"]
            else:
                ok = size == meta.get("size")
            return None if ok else ("wrong", problem)

        for outcome in self.mover.pool.map(one, references):
            if outcome is not None:
                kind, problem = outcome
                (found.objects_missing if kind == "missing" else found.objects_wrong).append(
                    problem
                )


def row_key(mover: TableMover, row: Sequence[Any]) -> Key:
    """Return the source key of a source row."""
    return tuple(row[i] for i in mover.key_index)
