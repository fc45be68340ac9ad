"""One cleaning run: list a schema folder, classify every object, delete the orphans.

A run compares two things: the objects under ``<location>/<schema>/`` in a store,
and the hashes that the schema's tracking tables list. An object may be deleted
only when all of these hold:

1. its name has exactly DataJoint's managed shape for the run's subfolding:
   ``ab/cd/<32 hex>`` (a blob) or ``ab/cd/<32 hex>.<name>`` (an attachment), with
   the fold directories equal to the hash's prefixes. Anything else (filepath
   files, user files, ``.saving``/``.copying`` leftovers, 0.11 names) is *foreign*
   and kept;
2. no tracking row lists its hash, neither when the run loads the hashes nor in
   the fresh re-check right before its delete batch;
3. it is older than the minimum age;
4. the listing finished, and the configuration looks right: if the tracking table
   lists objects but none of them is in the folder, the bucket, location or
   subfolding is wrong and the run refuses.

The listing is streamed; candidates are spooled to a temporary file, so memory
holds the referenced hashes and nothing that grows with the store.

    from djbridge.cleaner.scan import Target, clean_target
    report = clean_target(Target(run, store, tracking), CleanOptions(dry_run=True))
    report.orphaned, report.to_delete
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from djbridge.cleaner.references import Tracking
from djbridge.cleaner.runs import CleaningRun, CleanOptions
from djbridge.errors import DjBridgeError, UnsafeToDelete
from djbridge.layout import managed_hash
from djbridge.mysql import CHUNK_SIZE
from djbridge.progress import Progress, human_bytes
from djbridge.stores import Store

log = logging.getLogger(__name__)

Hook = Callable[[str, CleaningRun], None]


@dataclass(frozen=True)
class RunReport:
    """The outcome of one run; :meth:`to_dict` gives the JSON report's object.

    The first sixteen fields are the contract's report keys. ``scanned`` equals
    ``referenced + orphaned + kept_foreign``; ``orphaned`` splits into
    ``kept_young``, ``kept_rechecked``, ``to_delete`` minus failures, and so on.
    ``to_delete`` is what a dry run would delete (before the re-check).
    """

    database_server: str
    schema: str
    store: str
    storage_server: str
    bucket: str
    location: str
    dry_run: bool
    scanned: int = 0
    referenced: int = 0
    orphaned: int = 0
    deleted: int = 0
    bytes_deleted: int = 0
    kept_young: int = 0
    kept_foreign: int = 0
    missing: int = 0
    errors: tuple[str, ...] = ()
    status: str = "ok"
    tracked: int = 0
    to_delete: int = 0
    bytes_to_delete: int = 0
    kept_rechecked: int = 0
    delete_failed: int = 0
    unused_rows: int = 0
    unused_rows_deleted: int = 0
    min_age_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the run finished without any error."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        out = asdict(self)
        out["errors"] = list(self.errors)
        return out


@dataclass
class Tally:
    """The counters a run fills in; frozen into a :class:`RunReport` at the end."""

    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, name: str, count: int = 1) -> None:
        """Add ``count`` to the counter ``name``."""
        self.counts[name] = self.counts.get(name, 0) + count


@dataclass
class Target:
    """A run after preflight: its open store, its tracking tables and those of its peers.

    ``peers`` are tracking tables on *other* database servers whose runs use the
    same store folder; their hashes are protected too.
    """

    run: CleaningRun
    store: Store
    tracking: Tracking
    peers: list[Tracking] = field(default_factory=list)

    def trackers(self) -> list[Tracking]:
        """Return the run's own tracking tables followed by its peers'."""
        return [self.tracking, *self.peers]


def clean_target(target: Target, options: CleanOptions, hook: Hook | None = None) -> RunReport:
    """Run one cleaning run and return its report; errors end up in the report.

    Parameters
    ----------
    target
        The run with its store and tracking tables, as the preflight opened them.
    options
        Dry run, minimum age, cap and the other flags.
    hook
        Called as ``hook(event, run)`` at ``"listed"`` (after the listing and the
        safety checks, before any deletion) and ``"batch"`` (before each delete
        batch's re-check). Tests use it to act between the phases.

    Returns
    -------
    RunReport
        Counts, bytes and errors. A run that refuses or fails has ``status``
        ``"failed"`` and at least one error.
    """
    run = target.run
    tally = Tally()
    started = time.monotonic()
    try:
        _clean(target, options, hook or (lambda event, run: None), tally)
    except DjBridgeError as err:
        tally.errors.append(str(err))
        log.error("%s: %s", run.label, err)
    except OSError as err:  # the spool file, e.g. a full temporary directory
        tally.errors.append(f"local I/O error: {err}")
        log.error("%s: local I/O error: %s", run.label, err)
    return RunReport(
        database_server=run.database.name,
        schema=run.schema,
        store=run.store,
        storage_server=run.storage_ref,
        bucket=run.bucket,
        location=run.location,
        dry_run=options.dry_run,
        errors=tuple(tally.errors),
        status="failed" if tally.errors else "ok",
        min_age_seconds=options.min_age,
        seconds=round(time.monotonic() - started, 3),
        **tally.counts,
    )


def _load(target: Target, tally: Tally) -> tuple[set[bytes], set[bytes]]:
    """Return ``(managed, protected)`` hashes after checking every tracking table exists."""
    for tracking in target.trackers():
        tracking.check()
    managed, protected = target.tracking.load()
    for peer in target.peers:
        peer_managed, peer_other = peer.load()
        protected |= peer_managed | peer_other
    tally.add("tracked", len(managed))
    return managed, protected


def _clean(target: Target, options: CleanOptions, hook: Hook, tally: Tally) -> None:
    run = target.run
    managed, protected = _load(target, tally)
    if options.include_unused and not options.dry_run:
        target.tracking.check_can_delete()  # before any deletion, objects included
    unused = target.tracking.unused(options.min_age) if options.include_unused else set()
    tally.add("unused_rows", len(unused))
    with tempfile.TemporaryFile("w+", encoding="utf-8", prefix="dj-cleaner-") as spool:
        found = _list(target, options, managed, protected, unused, spool, tally)
        tally.add("missing", len(managed) - found)
        log.info(
            "%s: listed %d objects: %d referenced, %d orphaned (%d to delete), "
            "%d too young, %d foreign, %d tracked objects missing",
            *(run.label, tally.counts.get("scanned", 0), tally.counts.get("referenced", 0)),
            *(tally.counts.get("orphaned", 0), tally.counts.get("to_delete", 0)),
            *(tally.counts.get("kept_young", 0), tally.counts.get("kept_foreign", 0)),
            len(managed) - found,
        )
        _refuse_if_unsure(target, options, len(managed), found, tally)
        hook("listed", run)
        if options.dry_run:
            return
        if unused:
            deleted, errors = target.tracking.delete_unused(unused, options.min_age)
            tally.add("unused_rows_deleted", deleted)
            tally.errors.extend(errors)
            log.info("%s: deleted %d unused tracking rows", run.label, deleted)
        spool.seek(0)
        _delete(target, options, hook, spool, tally)


def _list(
    target: Target,
    options: CleanOptions,
    managed: set[bytes],
    protected: set[bytes],
    unused: set[bytes],
    spool: IO[str],
    tally: Tally,
) -> int:
    """Stream the schema folder, count every object and spool the candidates.

    Returns the number of distinct tracked hashes found in the folder.
    """
    run = target.run
    prefix = f"{run.schema}/"
    cutoff = time.time() - options.min_age
    found: set[bytes] = set()
    counts = dict.fromkeys(
        ("scanned", "referenced", "orphaned", "kept_young", "kept_foreign", "to_delete"), 0
    )
    candidate_bytes = 0
    with Progress(f"listing {run.label}", unit="obj", enabled=options.progress) as bar:
        for obj in target.store.iter_objects(prefix):
            counts["scanned"] += 1
            if not counts["scanned"] % 1000:
                bar.update(1000)
            digest_hex = managed_hash(obj.key[len(prefix) :], run.subfolding)
            if digest_hex is None:
                counts["kept_foreign"] += 1
                continue
            digest = bytes.fromhex(digest_hex)
            if digest in managed:
                found.add(digest)
                if digest not in unused:
                    counts["referenced"] += 1
                    continue
            elif digest in protected:
                counts["referenced"] += 1
                continue
            counts["orphaned"] += 1
            if obj.mtime > cutoff:
                counts["kept_young"] += 1
                continue
            spool.write(f"{obj.size}\t{obj.key}\n")
            counts["to_delete"] += 1
            candidate_bytes += obj.size
        bar.update(counts["scanned"] % 1000)
    for name, count in counts.items():
        tally.add(name, count)
    tally.add("bytes_to_delete", candidate_bytes)
    return len(found)


def _refuse_if_unsure(
    target: Target, options: CleanOptions, tracked: int, found: int, tally: Tally
) -> None:
    """Raise :class:`UnsafeToDelete` when the configuration looks wrong or the cap is hit."""
    run = target.run
    if tracked and not found:
        raise UnsafeToDelete(
            f"refusing to delete: {run.table} lists {tracked} objects but none of them is "
            f"in {target.store.description}/{run.schema}/ with subfolding "
            f"{list(run.subfolding)}; check the bucket, location and subfolding"
        )
    to_delete = tally.counts.get("to_delete", 0)
    if options.max_delete is not None and to_delete > options.max_delete:
        raise UnsafeToDelete(
            f"refusing to delete: the run would delete {to_delete} objects, "
            f"more than --max-delete {options.max_delete}; nothing was deleted"
        )


def _batches(spool: IO[str], size: int = CHUNK_SIZE) -> Iterator[list[tuple[int, str]]]:
    batch: list[tuple[int, str]] = []
    for line in spool:
        length, _, key = line.rstrip("\n").partition("\t")
        batch.append((int(length), key))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _digest_of(key: str) -> bytes:
    return bytes.fromhex(key.rpartition("/")[2].partition(".")[0])


def _delete(
    target: Target, options: CleanOptions, hook: Hook, spool: IO[str], tally: Tally
) -> None:
    """Delete the spooled candidates in batches, re-checking each batch against the database."""
    run = target.run
    total = tally.counts.get("to_delete", 0)
    with Progress(
        f"deleting {run.label}", total=total, unit="obj", enabled=options.progress
    ) as bar:
        for number, batch in enumerate(_batches(spool), start=1):
            hook("batch", run)
            live: set[bytes] = set()
            digests = [_digest_of(key) for _, key in batch]
            for tracking in target.trackers():
                live |= tracking.still_tracked(digests)
            doomed = [
                (size, key) for (size, key), d in zip(batch, digests, strict=True) if d not in live
            ]
            failures = target.store.delete_many([key for _, key in doomed])
            failed = {failure.key for failure in failures}
            tally.errors.extend(f"cannot delete {f.key}: {f.reason}" for f in failures)
            gone = [(size, key) for size, key in doomed if key not in failed]
            freed = sum(size for size, _ in gone)
            tally.add("kept_rechecked", len(batch) - len(doomed))
            tally.add("delete_failed", len(failed))
            tally.add("deleted", len(gone))
            tally.add("bytes_deleted", freed)
            log.info(
                "%s: batch %d: deleted %d objects (%s), %d kept by the re-check, %d failed",
                *(run.label, number, len(gone), human_bytes(freed)),
                *(len(batch) - len(doomed), len(failed)),
            )
            bar.update(len(batch))
