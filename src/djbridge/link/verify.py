"""Verify a link end to end: whether the local rows and objects still match the source.

A mirror drifts silently. A source row is updated after the pull (DataJoint's
``update1``), a local row is removed behind the link's back (``delete_quick``),
a destination object is deleted or truncated out of band. :func:`verify_table`
finds each of these, batch by batch, and touches each server a fixed number of
times per batch, whatever the batch holds:

* **rows**: each server folds the batch's rows, table by table, into one digest
  (the row count and the XOR of every row's SHA-256 over its values, spelt alike
  by MariaDB and MySQL: :mod:`djbridge.link.checksum`), one query per table; only
  a batch whose digests differ is folded again per master key, to name the keys,
  as pt-table-checksum narrows a chunk. Python only compares digests, so the
  source and the local server may be of different kinds;
* **objects**: one local query per destination store reads the ``~external``
  rows the batch's local rows reference; each object is ``stat``-ed in the
  destination store, concurrently, and its size compared with the tracking row;
* **missing rows**: keys the outbound table shows as shared (state ``LostLocal``)
  with no local row.

The invariant: verify never changes a row. With ``repair=True`` it copies a
missing or wrong-size object again from the source store, verified (size and
DataJoint's checksum) exactly as a pull does; differing rows are only reported,
with how to re-pull them: delete them locally through the link, then pull.

    report = (Recording() & "session_id < 10").verify(repair=True)
    report.ok, report.rows_differ, report.objects_missing, report.repaired
    print(report)               # the summary, with what to do about each problem
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from djbridge.errors import DatabaseError, IntegrityError, LinkError, ObjectNotFound, StoreError
from djbridge.layout import tracking_table
from djbridge.link.checksum import digests
from djbridge.link.jsonrefs import JsonReferences, JsonVerify
from djbridge.link.states import State, classify
from djbridge.link.transfer import COPY_BUDGET, ByteBudget, ExternalRow, Placement, copy_one
from djbridge.mysql import CHUNK_SIZE, chunks, key_filter, quote
from djbridge.progress import Progress

if TYPE_CHECKING:
    from djbridge.link.sync import Key, Linked
    from djbridge.link.tables import LinkCore

log = logging.getLogger(__name__)

VERIFY_BATCH = CHUNK_SIZE
"""Master keys per batch: one ``IN`` list per table and server."""


@dataclass
class VerifyReport:
    """What :func:`verify_table` found; every list entry is JSON-able.

    ``rows_differ`` and ``missing_local`` hold primary keys as dicts. The object
    lists hold ``{"store", "key", "size", "found"}``: the destination store, the
    object's key in it, the size its tracking row records, and the size found
    (None when absent); a failed repair adds ``"error"``. ``repaired`` lists the
    objects copied again, in the same shape. ``table`` (the linked class's name)
    only names the table in the advice; ``print(report)`` shows :meth:`summary`.
    """

    checked: int = 0
    rows_differ: list[dict[str, Any]] = field(default_factory=list)
    missing_local: list[dict[str, Any]] = field(default_factory=list)
    objects_missing: list[dict[str, Any]] = field(default_factory=list)
    objects_wrong_size: list[dict[str, Any]] = field(default_factory=list)
    repaired: list[dict[str, Any]] = field(default_factory=list)
    table: str = field(default="Table", compare=False)

    def __str__(self) -> str:
        return self.summary()

    @property
    def ok(self) -> bool:
        """True when nothing differs: every row matches and every bad object was repaired."""
        fixed = {(o["store"], o["key"]) for o in self.repaired}
        broken = [*self.objects_missing, *self.objects_wrong_size]
        return (
            not self.rows_differ
            and not self.missing_local
            and all((o["store"], o["key"]) in fixed for o in broken)
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the report's findings and ``ok`` as one JSON-able dict."""
        found = asdict(self)
        del found["table"]
        return {**found, "ok": self.ok}

    def advice(self, table: str | None = None) -> list[str]:
        """Return what to do about what was found, one line per kind of problem."""
        table = table or self.table
        lines = []
        if self.rows_differ:
            lines.append(
                f"{len(self.rows_differ)} rows differ from the source and were left as they "
                f"are; to re-pull them, delete them locally through the link, then pull: "
                f"({table}() & report.rows_differ).delete(), then {table}().source.pull() "
                "(or dj-link pull)"
            )
        if self.missing_local:
            lines.append(
                f"{len(self.missing_local)} shared rows have no local row; a pull restores "
                f"them: {table}().source.pull() (or dj-link pull --all)"
            )
        fixed = {(o["store"], o["key"]) for o in self.repaired}
        unrepaired = [
            o
            for o in [*self.objects_missing, *self.objects_wrong_size]
            if (o["store"], o["key"]) not in fixed
        ]
        if unrepaired:
            lines.append(
                f"{len(unrepaired)} destination objects are missing or have the wrong size; "
                "verify(repair=True) (or dj-link verify --repair) copies them again from the "
                "source store"
            )
        return lines

    def summary(self, table: str | None = None) -> str:
        """Return a short human summary, with :meth:`advice` when something differs."""
        head = (
            f"{self.checked} rows checked, {len(self.rows_differ)} differ, "
            f"{len(self.missing_local)} missing locally, {len(self.objects_missing)} objects "
            f"missing, {len(self.objects_wrong_size)} wrong size, {len(self.repaired)} repaired"
        )
        return "\n".join([head, *(f"  {line}" for line in self.advice(table))])


# ---- rows ---------------------------------------------------------------------------------
def differing(linked: Linked, keys: Sequence[Key]) -> list[Key]:
    """Return the keys among ``keys`` whose master or part rows differ from the source.

    First one digest of the whole batch per table on each server; only a batch whose
    digests differ is compared again per key (one more query per table and server).
    A key whose master row is gone from the source differs too.
    """
    master = linked.master
    tables = [(master, quote(master.schema, master.name), linked.local_master)]
    tables += [
        (part, quote(part.schema, part.name), linked.local_parts[suffix])
        for suffix, part in linked.parts.items()
    ]

    def compare(per_key: bool) -> tuple[dict[Key, list[Any]], dict[Key, list[Any]]]:
        sides: tuple[dict[Key, list[Any]], ...] = (defaultdict(list), defaultdict(list))
        for source, source_name, local_name in tables:
            for side, db, name in zip(sides, (linked.source_db, linked.local_db),
                                      (source_name, local_name), strict=True):  # fmt: skip
                found = digests(db, name, source, linked.key_columns, keys, per_key=per_key)
                for key in keys if per_key else [()]:
                    side[key].append(found.get(key))
        return sides[0], sides[1]

    theirs, ours = compare(per_key=False)
    if theirs == ours:
        return []
    theirs, ours = compare(per_key=True)
    return [k for k in keys if theirs[k] != ours[k]]


# ---- objects ----------------------------------------------------------------------------------
@dataclass
class Destination:
    """One destination store: where its objects are and the source placements feeding it."""

    name: str
    placement: Placement
    sources: list[Placement]
    columns: list[tuple[str, str]]  # (quoted local table, column) holding its hashes


def destinations(linked: Linked) -> list[Destination]:
    """Group the link's placements by destination store, with the local columns using each."""
    out: dict[str, Destination] = {}
    tables = [(linked.master, linked.local_master)]
    tables += [(part, linked.local_parts[s]) for s, part in linked.parts.items()]
    for src_store, (src, dst, dst_name) in sorted(linked.placements.items()):
        dest = out.setdefault(dst_name, Destination(dst_name, dst, [], []))
        dest.sources.append(src)
        dest.columns += [(t, c.name) for s, t in tables for c in s.external if c.store == src_store]
    return [d for d in out.values() if d.columns]


def local_tracking(linked: Linked, dest: Destination, keys: Sequence[Key]) -> list[ExternalRow]:
    """Read the local ``~external`` rows that the keys' local rows reference: one query."""
    cols = linked.key_columns
    where, params = key_filter(cols, keys)
    union = " UNION ".join(
        f"SELECT {quote(c)} AS h FROM {t} WHERE {where}" for t, c in dest.columns
    )
    table = quote(linked.local_schema, tracking_table(dest.name))
    # A join on the tracking table's primary key: an IN (subquery) may scan it whole.
    sql = (
        f"SELECT e.hash, e.size, e.attachment_name, e.filepath, e.contents_hash FROM "
        f"({union}) AS u JOIN {table} AS e ON e.hash = u.h"
    )
    return [ExternalRow(*r) for r in linked.local_db.query(sql, params * len(dest.columns))]


def entry(dest: Destination, row: ExternalRow, found: int | None) -> dict[str, Any]:
    """Describe one destination object for the report."""
    return {"store": dest.name, "key": dest.placement.key(row), "size": row.size, "found": found}


def stat_size(dest: Destination, row: ExternalRow) -> int | None:
    """Return the object's size in the destination store, or None when it is absent."""
    try:
        return dest.placement.store.stat(dest.placement.key(row)).size
    except ObjectNotFound:
        return None


def recopy(dest: Destination, row: ExternalRow, budget: ByteBudget) -> None:
    """Copy one object again from the first source store that holds it, verified."""
    error: Exception | None = None
    for src in dest.sources:
        store = src.store
        buffer = 0 if dest.placement.store.can_copy_from(store) else store.read_buffer
        with budget.hold(min(row.size, buffer + dest.placement.store.write_buffer)):
            try:
                copy_one(row.copy(src, dest.placement), lambda n: None)
                return
            except (StoreError, IntegrityError) as err:
                error = err
    raise error or LinkError(f"no source store feeds {dest.name!r}")


class ObjectCheck:
    """Stats (and repairs) the destination objects of a run, each (store, hash) once."""

    def __init__(self, linked: Linked, report: VerifyReport, repair: bool) -> None:
        self.linked = linked
        self.report = report
        self.repair = repair
        self.dests = destinations(linked)
        self.seen: set[tuple[str, bytes]] = set()
        self.budget = ByteBudget(COPY_BUDGET)
        workers = max([d.placement.store.concurrency for d in self.dests], default=1)
        workers = max(workers, linked.copy_threads if not self.dests else 1)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="djbridge-verify")

    def close(self) -> None:
        """End the threads (all work was awaited)."""
        self.pool.shutdown()

    def batch(self, keys: Sequence[Key]) -> None:
        """Check the objects the keys' local rows reference."""
        for dest in self.dests:
            rows = [r for r in local_tracking(self.linked, dest, keys)
                    if (dest.name, r.hash) not in self.seen]  # fmt: skip
            self.seen.update((dest.name, r.hash) for r in rows)
            sizes = list(self.pool.map(lambda r, d=dest: stat_size(d, r), rows))
            pairs = zip(rows, sizes, strict=True)
            bad = [(row, entry(dest, row, found)) for row, found in pairs if found != row.size]
            for _, problem in bad:
                missing = problem["found"] is None
                kind = self.report.objects_missing if missing else self.report.objects_wrong_size
                kind.append(problem)
            if self.repair and bad:
                self.fix(dest, bad)

    def fix(self, dest: Destination, bad: list[tuple[ExternalRow, dict[str, Any]]]) -> None:
        """Copy the bad objects again; record each success and each failure."""
        futures = [(self.pool.submit(recopy, dest, row, self.budget), p) for row, p in bad]
        for future, problem in futures:
            try:
                future.result()
            except (StoreError, IntegrityError, LinkError) as err:
                problem["error"] = str(err)
                log.error("verify: cannot repair %s/%s: %s", dest.name, problem["key"], err)
            else:
                self.report.repaired.append(dict(problem, found=problem["size"]))


# ---- the run ----------------------------------------------------------------------------------
def shared_source_sql(core: LinkCore, restriction: Any) -> str:
    """Return SQL for the outbound keys shared without a pending process, within ``restriction``."""
    linked = core.linked
    names = ", ".join(linked.source_db.dialect.quote(c) for c in linked.key_columns)
    sql = (
        f"SELECT {names} FROM {linked.outbound} WHERE process='NONE' AND is_flagged='FALSE' "
        "AND is_deprecated='FALSE'"
    )
    if restriction:
        inner = (core.source_table() & restriction).proj().make_sql()
        sql += f" AND ({names}) IN ({inner})"
    return sql


def lost_local(core: LinkCore, restriction: Any, local_keys: set[Key]) -> list[Key]:
    """Return keys shared on the source (within ``restriction``) that have no local row.

    Raises
    ------
    LinkError
        If the restriction cannot be evaluated on the source server (it names a
        local table, say).
    """
    sql = shared_source_sql(core, restriction)
    try:
        shared = [tuple(r) for r in core.linked.source_db.query(sql)]
    except DatabaseError as err:
        raise LinkError(
            f"verify: the restriction cannot be applied to the source table to find shared "
            f"rows that are missing locally: {err}"
        ) from err
    candidates = [k for k in shared if k not in local_keys]
    states = core.engine.read_states(candidates) if candidates else {}
    return [k for k, p in states.items() if classify(p) is State.LOST_LOCAL]


def verify_table(
    table: Any, core: LinkCore, *, repair: bool, display_progress: bool
) -> VerifyReport:
    """Verify the local rows of ``table`` (a restricted local table) against the source.

    Raises
    ------
    LinkError, DatabaseError, StoreError
        If a server or store cannot be read, or the restriction cannot be applied
        to the source; a failed repair is reported in the entry, not raised.
    """
    linked = core.linked
    linked.ensure_connected()
    cols = linked.key_columns
    keys = sorted(tuple(r) for r in linked.local_db.query(table.proj().make_sql()))
    report = VerifyReport(checked=len(keys), table=type(table).__name__)

    def as_dict(key: Key) -> dict[str, Any]:
        return dict(zip(cols, key, strict=True))

    report.missing_local = [as_dict(k) for k in lost_local(core, table.restriction, set(keys))]
    check = ObjectCheck(linked, report, repair)
    refs = linked.references
    by_json = JsonVerify(linked, refs) if isinstance(refs, JsonReferences) else None
    try:
        with Progress("VERIFY", total=len(keys), unit="row", enabled=display_progress) as bar:
            for number, batch in enumerate(chunks(keys, VERIFY_BATCH), 1):  # in key order
                before = (len(report.objects_missing), len(report.objects_wrong_size))
                if by_json is not None:  # DataJoint 2.x: documents instead of ~external rows
                    differ = by_json.batch(batch, repair, check.pool, report)
                else:
                    differ = differing(linked, batch)
                    check.batch(batch)
                report.rows_differ += [as_dict(k) for k in differ]
                log.info(
                    "verify %s: batch %d, %d rows, %d differ, %d objects missing, %d wrong size",
                    linked.local_master, number, len(batch), len(differ),
                    len(report.objects_missing) - before[0],
                    len(report.objects_wrong_size) - before[1],
                )  # fmt: skip
                bar.update(len(batch))
    finally:
        check.close()
    if not report.ok:
        log.warning("verify %s: %s", linked.local_master, report.summary().replace("\n", ";"))
    return report
