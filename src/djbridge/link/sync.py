"""The batch engine: read the state of many keys at once, then apply one step per group.

A pull or a delete runs in rounds. Each round reads the persisted state of all
pending keys with one query per table per chunk, classifies every key
(:mod:`djbridge.link.states`), groups the keys by their next step and applies each
step to its whole group, a chunk at a time, on **one** server:

* source steps are single conditioned statements on the outbound table
  (``INSERT IGNORE``, ``UPDATE ... WHERE process = 'PULL'``), each atomic;
* "add to local" (:mod:`djbridge.link.transfer`) takes batches cut by rows and by
  bytes: it copies a batch's external objects first, streamed and verified, then
  inserts the ``~external`` rows, the master rows and the part rows in one local
  transaction, with the raw column values: blobs are never decoded;
* "remove from local" deletes parts and masters in one local transaction.

Rounds repeat until every key is done. Because every step is conditioned on the
state it expects, a crash, a lost connection or a second process working on the
same keys only means a later round (or the next run) finds a different state.

    engine = Engine(linked)
    result = engine.run(keys, Operation.PULL, progress)
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from djbridge.errors import IntegrityError, LinkError, StoreError
from djbridge.heap import settled
from djbridge.link.mirror import SourceTable
from djbridge.link.states import Operation, Persisted, State, Step, after, classify, next_step
from djbridge.link.transfer import (
    Key,
    LocalParent,
    Placement,
    References,
    TrackedReferences,
    add_to_local,
    missing_parents,
    plan_batches,
    row_sizes,
)
from djbridge.mysql import chunks
from djbridge.progress import Progress
from djbridge.sqldialect import Connection

log = logging.getLogger(__name__)

__all__ = ["Engine", "Key", "Linked", "RunResult"]

MAX_ROUNDS = 12
STATE_CHUNK = 1000

SOURCE_STEPS = {
    Step.FINISH_PULL: "UPDATE {t} SET process='NONE' WHERE process='PULL' AND {w}",
    Step.START_DELETE: "UPDATE {t} SET process='DELETE' WHERE process='NONE' AND {w}",
    Step.FINISH_DELETE: "DELETE FROM {t} WHERE process='DELETE' AND is_flagged='FALSE' AND {w}",
    Step.DEPRECATE: (
        "UPDATE {t} SET process='NONE', is_deprecated='TRUE' "
        "WHERE process IN ('PULL','DELETE') AND is_flagged='TRUE' AND {w}"
    ),
    Step.RESTART_PULL: (
        "UPDATE {t} SET process='PULL' WHERE process='NONE' AND is_flagged='FALSE' AND {w}"
    ),
}
"""The conditioned statement of each source step but START_PULL (an INSERT IGNORE);
``{t}`` is the outbound table, ``{w}`` the key filter."""


@dataclass
class Linked:
    """Everything a link needs at run time, resolved once when the class is decorated."""

    source_db: Connection
    local_db: Connection
    master: SourceTable
    parts: dict[str, SourceTable]  # suffix -> source part
    outbound: str  # quoted outbound table on the source server
    local_master: str  # quoted local master table
    local_parts: dict[str, str]  # suffix -> quoted local part table
    placements: dict[str, tuple[Placement, Placement, str]]  # src store -> (src, dst, dst store)
    local_schema: str
    references: References = field(default_factory=TrackedReferences)
    batch_size: int = 500
    batch_bytes: int = 16 << 20  # row data per local transaction, parts included
    remove_local: Callable[[Sequence[Key]], int] | None = None
    copy_threads: int = 16  # a pool of this size lives for one run, never longer
    local_parents: Sequence[LocalParent] = ()  # foreign keys kept to linked parents

    @property
    def local_name(self) -> str:
        """The local master table's name, unquoted."""
        return self.local_master.rsplit(".", 1)[-1][1:-1]

    def ensure_connected(self) -> None:
        """Reopen a connection the server dropped (killed, timed out) since the last run.

        Raises
        ------
        DatabaseError
            If a server cannot be reached again.
        """
        for db in (self.source_db, self.local_db):
            db.ensure_open()

    @property
    def key_columns(self) -> list[str]:
        """The primary key columns of the master (and the outbound table)."""
        return self.master.primary_key


@dataclass
class RunResult:
    """What a pull or delete did: final states of the requested keys and the work done."""

    operation: Operation
    requested: int
    final_states: Counter[State] = field(default_factory=Counter)
    steps: Counter[Step] = field(default_factory=Counter)
    failed: dict[Key, str] = field(default_factory=dict)
    rows_copied: int = 0
    part_rows_copied: int = 0
    objects_copied: int = 0
    bytes_copied: int = 0


class Engine:
    """Runs pulls and deletes for one link, in batches."""

    def __init__(self, linked: Linked) -> None:
        self.ln = linked
        self.pool: ThreadPoolExecutor | None = None
        self.max_packet: int | None = None  # the local server's max_allowed_packet
        self.heavy: set[Key] = set()  # keys whose rows exceed batch_bytes: parts stream

    # ---- reading state -------------------------------------------------------------------
    def _present(self, db: Connection, table: str, keys: Sequence[Key]) -> set[Key]:
        cols = self.ln.key_columns
        sql_ = db.dialect
        found: set[Key] = set()
        for chunk in chunks(keys, STATE_CHUNK):
            where, params = sql_.key_filter(cols, chunk)
            sql = f"SELECT {', '.join(sql_.quote(c) for c in cols)} FROM {table} WHERE {where}"
            found.update(tuple(r) for r in db.query(sql, params))
        return found

    def read_states(self, keys: Sequence[Key]) -> dict[Key, Persisted]:
        """Return the persisted state of every key: two queries per 1,000 keys.

        One query on the source server reads the source rows joined with their
        outbound rows; one on the local server reads which keys are present.
        """
        cols = self.ln.key_columns
        n = len(cols)
        q = self.ln.source_db.dialect
        source_table = q.quote(self.ln.master.schema, self.ln.master.name)
        on = " AND ".join(f"o.{q.quote(c)} = s.{q.quote(c)}" for c in cols)
        found: dict[Key, tuple[bool, str, bool]] = {}
        for chunk in chunks(keys, STATE_CHUNK):
            where, params = q.key_filter(cols, chunk, alias="s")
            sql = (
                f"SELECT {', '.join('s.' + q.quote(c) for c in cols)}, o.process, o.is_flagged "
                f"FROM {source_table} AS s LEFT JOIN {self.ln.outbound} AS o ON {on} "
                f"WHERE {where}"
            )
            for row in self.ln.source_db.query(sql, params):
                found[tuple(row[:n])] = (row[n] is not None, row[n] or "NONE", row[n + 1] == "TRUE")
        in_local = self._present(self.ln.local_db, self.ln.local_master, keys)
        states = {}
        for key in keys:
            outbound, process, flagged = found.get(key, (False, "NONE", False))
            states[key] = Persisted(key in found, outbound, key in in_local, process, flagged)
        return states

    # ---- the loop ------------------------------------------------------------------------
    def run(self, keys: Sequence[Key], op: Operation, progress: Progress) -> RunResult:
        """Drive ``keys`` to the end state of ``op``, round after round.

        State is read from the servers at the start and again for any key whose
        step did not change exactly the rows expected; otherwise the engine knows
        the new state from the statement it just ran (:func:`states.after`).
        """
        # The copy threads live exactly as long as the run: none is left behind.
        self.max_packet = None  # read again by each run that adds rows
        if op is Operation.PULL:
            self.ln.references.preflight(self.ln, list(dict.fromkeys(keys)))
        with (
            settled(),
            ThreadPoolExecutor(self.ln.copy_threads, thread_name_prefix="djbridge-copy") as pool,
        ):
            self.pool = pool
            try:
                return self._rounds(keys, op, progress)
            finally:
                self.pool = None

    def _rounds(self, keys: Sequence[Key], op: Operation, progress: Progress) -> RunResult:
        result = RunResult(op, len(keys))
        states = self.read_states(list(dict.fromkeys(keys)))
        counted: set[Key] = set()
        for _ in range(MAX_ROUNDS):
            groups: dict[Step, list[Key]] = defaultdict(list)
            for key, persisted in list(states.items()):
                state = classify(persisted)
                step = next_step(state, op, process=persisted.process, flagged=persisted.flagged)
                if step is None:
                    result.final_states[state] += 1
                    if key not in counted:
                        progress.update(1)
                    del states[key]
                elif key not in result.failed:
                    groups[step].append(key)
            if not groups:
                return self._finish(result)
            stale: list[Key] = []
            for step in sorted(groups, key=lambda s: s is Step.ADD_TO_LOCAL):
                for key, moved in self.apply(step, groups[step], result, progress, counted):
                    if moved:
                        states[key] = after(step, states[key])
                    else:
                        stale.append(key)
            states.update(self.read_states(stale) if stale else {})
            for key in result.failed:
                states.pop(key, None)
        raise LinkError(
            f"{op.value}: {len(states)} entities did not settle after {MAX_ROUNDS} rounds; "
            "another process may be working on them, run again"
        )

    @staticmethod
    def _finish(result: RunResult) -> RunResult:
        if result.failed:
            first = next(iter(result.failed.values()))
            raise LinkError(
                f"{result.operation.value}: {len(result.failed)} of {result.requested} entities "
                f"failed and were left for the next run to finish; first error: {first}"
            )
        return result

    def apply(
        self, step: Step, keys: list[Key], result: RunResult, progress: Progress, counted: set[Key]
    ) -> Iterator[tuple[Key, bool]]:
        """Apply ``step`` to ``keys`` in chunks; yield each key and whether it surely moved.

        Each chunk is one statement or one transaction. A chunk whose statement
        changed fewer rows than it had keys is reported as not moved, so the caller
        re-reads those keys instead of guessing.
        """
        batches = (
            self._add_batches(keys, result)
            if step is Step.ADD_TO_LOCAL
            else chunks(keys, self.ln.batch_size)
        )
        for chunk in batches:
            moved = True
            if step is Step.ADD_TO_LOCAL:
                try:
                    moved = self.add_to_local(chunk, result, progress, counted)
                except (StoreError, IntegrityError, LinkError) as err:
                    log.error("add to local: %d entities not copied: %s", len(chunk), err)
                    result.failed.update(dict.fromkeys(chunk, str(err)))
                    continue
            elif step is Step.REMOVE_FROM_LOCAL:
                moved = self.remove_from_local(chunk) == len(chunk)
                progress.update(len(chunk))
                counted.update(chunk)
            else:
                changed = self.source_step(step, chunk)
                moved = changed == len(chunk)
                log.info(
                    "%s: %d of %d entities on the source server", step.value, changed, len(chunk)
                )
            result.steps[step] += len(chunk)
            yield from ((key, moved) for key in chunk)

    def _add_batches(self, keys: Sequence[Key], result: RunResult) -> list[list[Key]]:
        """Cut ``keys`` into batches of at most ``batch_size`` rows and ``batch_bytes`` bytes.

        A key with a row larger than the local server's ``max_allowed_packet`` can
        never be inserted: it fails here, named, before any transaction starts. A
        key whose rows together exceed ``batch_bytes`` goes alone, and its part rows
        stream into the local transaction instead of being read up front.
        """
        sizes = row_sizes(self.ln, keys)
        if self.max_packet is None:
            self.max_packet = self.ln.local_db.dialect.statement_limit(self.ln.local_db)
        fits = []
        for key in keys:
            size = sizes.get(key)
            if size is not None and size.largest > self.max_packet:
                error = (
                    f"row {dict(zip(self.ln.key_columns, key, strict=True))} of {size.table} is "
                    f"{size.largest} bytes, more than max_allowed_packet ({self.max_packet} "
                    f"bytes) on the local server {self.ln.local_db.server.address}; raise that "
                    "server variable to pull it"
                )
                log.error("add to local: %s", error)
                result.failed[key] = error
            else:
                fits.append(key)
        orphans = missing_parents(self.ln, fits) if self.ln.local_parents else {}
        for key, error in orphans.items():
            log.error("add to local: %s", error)
            result.failed[key] = error
        fits = [k for k in fits if k not in orphans]
        self.heavy = {k for k in fits if k in sizes and sizes[k].total > self.ln.batch_bytes}
        return plan_batches(fits, sizes, self.ln.batch_size, self.ln.batch_bytes)

    # ---- source steps --------------------------------------------------------------------
    def source_step(self, step: Step, keys: Sequence[Key]) -> int:
        """Run one conditioned statement on the outbound table; return the rows changed."""
        cols = self.ln.key_columns
        q = self.ln.source_db.dialect
        if step is Step.START_PULL:
            columns = [*cols, "process", "is_flagged", "is_deprecated"]
            sql = q.insert_ignore(self.ln.outbound, columns)
            # Every value is a placeholder: one multi-row INSERT (MySQL) or one pipeline.
            rows = [(*key, "PULL", "FALSE", "FALSE") for key in keys]
            return self.ln.source_db.executemany(sql, rows)
        where, params = q.key_filter(cols, keys)
        sql = SOURCE_STEPS[step].format(t=self.ln.outbound, w=where)
        return self.ln.source_db.execute(sql, params)

    # ---- local steps ---------------------------------------------------------------------
    def add_to_local(
        self, keys: Sequence[Key], result: RunResult, progress: Progress, counted: set[Key]
    ) -> bool:
        """Copy the keys' rows and objects into the local server; return whether all arrived."""
        assert self.pool is not None, "add_to_local runs inside Engine.run"
        heavy = len(keys) == 1 and keys[0] in self.heavy  # alone in its batch: parts stream
        added = add_to_local(self.ln, keys, self.pool, progress.add_bytes, stream_parts=heavy)
        if added is None:
            return False
        result.rows_copied += added.rows
        result.part_rows_copied += added.part_rows
        result.objects_copied += added.objects
        result.bytes_copied += added.bytes
        progress.update(len(keys))
        counted.update(keys)
        return added.rows == len(keys)

    def _has_foreign_children(self) -> bool:
        """Return whether local tables other than the parts reference the local master."""
        q = self.ln.local_db.dialect
        rows = q.referencing_tables(self.ln.local_db, self.ln.local_schema, self.ln.local_name)
        parts = set(self.ln.local_parts.values())
        return any(q.quote(s, t) not in parts for s, t in rows)

    def remove_from_local(self, keys: Sequence[Key]) -> int:
        """Delete the keys' part rows and master rows locally, in one transaction.

        Returns the number of master rows deleted.
        """
        if self.ln.remove_local is not None and self._has_foreign_children():
            deleted = self.ln.remove_local(keys)
        else:
            where, params = self.ln.local_db.dialect.key_filter(self.ln.key_columns, keys)
            with self.ln.local_db.transaction() as db:
                for table in self.ln.local_parts.values():
                    db.execute(f"DELETE FROM {table} WHERE {where}", params)
                deleted = db.execute(f"DELETE FROM {self.ln.local_master} WHERE {where}", params)
        log.info("remove from local: %d of %d entities deleted from %s",
                 deleted, len(keys), self.ln.local_master)  # fmt: skip
        return deleted
