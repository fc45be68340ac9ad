"""The parallel part of a run: one lane per key range, listing and deleting on its own.

A lane owns one :class:`~djbridge.cleaner.ranges.KeyRange` of the schema folder,
its own database connections (a connection serves one thread at a time) and two
spool files on disk: the candidates it found and the unused tracking rows of its
range. Memory therefore holds a few rows per lane and nothing that grows with the
store.

The phases keep the safety order of a serial run:

1. every lane lists its range and merges it against its range of hashes
   (:func:`list_lane`); a lane that fails is reported by its range, and then **no
   lane deletes anything**;
2. after the run-wide checks, the lanes delete the unused rows of their ranges,
   then all candidates are cut into batches of :data:`~djbridge.mysql.CHUNK_SIZE`
   that the lanes take in turn; each batch is re-checked against every tracking
   table right before its delete (:func:`delete_candidates`).

    lanes = open_lanes(target, split("lab", (2, 2), jobs=8), stack)
    failures = run_lanes(list_lane_job, lanes)        # [(lane, error), ...]
    delete_candidates(target, lanes, options, hook, bar)
"""

from __future__ import annotations

import itertools
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO

from djbridge.cleaner.quarantine import quarantine_key
from djbridge.cleaner.ranges import KeyRange, References
from djbridge.cleaner.settings import CleaningRun, CleanOptions
from djbridge.cleaner.tracking import Tracking
from djbridge.errors import DjBridgeError
from djbridge.layout import key_digest, managed_hash
from djbridge.mysql import CHUNK_SIZE
from djbridge.progress import Progress, human_bytes
from djbridge.stores import ObjectInfo, Store

log = logging.getLogger(__name__)

Hook = Callable[[str, CleaningRun], None]
COUNTS = ("scanned", "referenced", "orphaned", "kept_young", "kept_foreign", "to_delete")


@dataclass
class Tally:
    """The counters a run fills in; frozen into a report at the end."""

    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    quarantine_id: str = ""
    ranges: int = 1  # the key ranges the run was split into

    def add(self, name: str, count: int = 1) -> None:
        """Add ``count`` to the counter ``name``."""
        self.counts[name] = self.counts.get(name, 0) + count

    def absorb(self, other: Tally) -> None:
        """Add every counter and error of ``other``."""
        for name, count in other.counts.items():
            self.add(name, count)
        self.errors.extend(other.errors)


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


@dataclass
class Lane:
    """One key range with its own connections, spools and counters."""

    key_range: KeyRange
    tracking: Tracking
    peers: list[Tracking]
    candidates: IO[str]
    unused: IO[str]
    tally: Tally = field(default_factory=Tally)
    unmoved: list[str] = field(default_factory=list)  # candidates a quarantine did not move

    def trackers(self) -> list[Tracking]:
        """Return this lane's own tracking tables followed by its peers'."""
        return [self.tracking, *self.peers]

    def label(self, run: CleaningRun) -> str:
        """Name the lane in messages: the run, plus the range when there are several."""
        if self.key_range.count == 1:
            return run.label
        return f"{run.label} {self.key_range.label}"


def _spool(stack: ExitStack, kind: str) -> IO[str]:
    return stack.enter_context(
        tempfile.TemporaryFile("w+", encoding="utf-8", prefix=f"dj-cleaner-{kind}-")
    )


def open_lanes(target: Target, ranges: Sequence[KeyRange], stack: ExitStack) -> list[Lane]:
    """Give each range a lane; the first reuses the run's connections, the others open theirs.

    The extra connections are opened at once, so a distant server costs its
    handshake round trips once, not once per range.

    Raises
    ------
    DatabaseError
        If a server refuses another connection; nothing has been deleted then.
    """
    originals = target.trackers()
    wanted = [tracking for _ in ranges[1:] for tracking in originals]
    with ThreadPoolExecutor(max(1, min(len(wanted), 16))) as pool:
        futures = [pool.submit(tracking.reopen) for tracking in wanted]
    opened, errors = [], []
    for future in futures:  # every connection that did open is closed again, error or not
        try:
            opened.append(future.result())
        except DjBridgeError as err:
            errors.append(err)
    for tracking in opened:
        stack.callback(tracking.db.close)
    if errors:
        raise errors[0]
    sets = [originals] + [
        opened[i : i + len(originals)] for i in range(0, len(opened), len(originals))
    ]
    return [
        Lane(key_range, trackers[0], list(trackers[1:]), _spool(stack, "candidates"),
             _spool(stack, "unused"))
        for key_range, trackers in zip(ranges, sets, strict=True)
    ]  # fmt: skip


def run_lanes(job: Callable[[Lane], None], lanes: Sequence[Lane]) -> list[tuple[Lane, str]]:
    """Run ``job`` on every lane at once; return ``(lane, error)`` for each that failed."""

    def guarded(lane: Lane) -> str | None:
        try:
            job(lane)
        except DjBridgeError as err:
            return str(err)
        except OSError as err:  # a spool file, e.g. a full temporary directory
            return f"local I/O error: {err}"
        return None

    if len(lanes) == 1:
        outcomes = [guarded(lanes[0])]
    else:
        with ThreadPoolExecutor(len(lanes), thread_name_prefix="dj-cleaner") as pool:
            outcomes = list(pool.map(guarded, lanes))
    return [(lane, error) for lane, error in zip(lanes, outcomes, strict=True) if error]


class SharedBar:
    """A progress bar that several lanes advance; updates are batched and locked."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.lock = threading.Lock()

    def update(self, count: int) -> None:
        """Advance the bar by ``count``."""
        with self.lock:
            self.bar.update(count)


def _listing(target: Target, lane: Lane) -> Iterator[ObjectInfo]:
    prefix = f"{target.run.schema}/"
    key_range = lane.key_range
    if key_range.count == 1:
        return target.store.iter_objects(prefix)
    return target.store.iter_objects(
        prefix, start_after=key_range.start_after, end_at=key_range.end_at
    )


def _spool_unused(lane: Lane, options: CleanOptions) -> None:
    """Write the range's unused managed hashes to the lane's spool, sorted."""
    count = 0
    key_range = lane.key_range
    for digest in lane.tracking.unused(options.min_age, key_range.lo, key_range.hi):
        lane.unused.write(digest.hex() + "\n")
        count += 1
    lane.unused.seek(0)
    lane.tally.add("unused_rows", count)


def list_lane(target: Target, lane: Lane, options: CleanOptions, bar: SharedBar) -> None:
    """List one range, merge it against the range's tracking rows and spool the candidates.

    Raises
    ------
    DjBridgeError
        If the listing or a database stream fails, or the listing is out of order.
    """
    run = target.run
    if options.include_unused:
        _spool_unused(lane, options)
    key_range = lane.key_range
    refs = References(
        lane.tracking.hashes(key_range.lo, key_range.hi),
        [(d for d, _ in peer.hashes(key_range.lo, key_range.hi)) for peer in lane.peers],
        (bytes.fromhex(line) for line in lane.unused) if options.include_unused else (),
    )
    skip = len(run.schema) + 1
    cutoff = time.time() - options.min_age
    counts = dict.fromkeys(COUNTS, 0)
    candidate_bytes = 0
    for obj in _listing(target, lane):
        counts["scanned"] += 1
        if not counts["scanned"] % 1000:
            bar.update(1000)
        digest_hex = managed_hash(obj.key[skip:], run.subfolding)
        if digest_hex is None:
            counts["kept_foreign"] += 1
            continue
        ref = refs.seek(bytes.fromhex(digest_hex))
        if ref is not None and (ref.protected or (ref.managed and not ref.unused)):
            counts["referenced"] += 1
            continue
        counts["orphaned"] += 1
        if obj.mtime > cutoff:
            counts["kept_young"] += 1
            continue
        lane.candidates.write(f"{obj.size}\t{obj.key}\n")
        counts["to_delete"] += 1
        candidate_bytes += obj.size
    bar.update(counts["scanned"] % 1000)
    refs.finish()
    for name, count in counts.items():
        lane.tally.add(name, count)
    lane.tally.add("bytes_to_delete", candidate_bytes)
    lane.tally.add("tracked", refs.tracked)
    lane.tally.add("found", refs.found)
    lane.candidates.seek(0)


def delete_unused_rows(lane: Lane, options: CleanOptions) -> None:
    """Delete the lane's unused tracking rows in batches, each re-evaluated by the server."""
    lane.unused.seek(0)
    while batch := [bytes.fromhex(line) for line in itertools.islice(lane.unused, CHUNK_SIZE)]:
        deleted, errors = lane.tracking.delete_unused(batch, options.min_age)
        lane.tally.add("unused_rows_deleted", deleted)
        lane.tally.errors.extend(errors)


class Batches:
    """The candidates of every lane, in lane order, cut into numbered batches; thread-safe."""

    def __init__(self, lanes: Sequence[Lane], size: int = CHUNK_SIZE) -> None:
        self.lines = itertools.chain.from_iterable(lane.candidates for lane in lanes)
        self.size = size
        self.number = 0
        self.lock = threading.Lock()

    def next(self) -> tuple[int, list[tuple[int, str]]]:
        """Return ``(number, [(size, key), ...])``; the list is empty when all are taken."""
        with self.lock:
            batch = []
            for line in itertools.islice(self.lines, self.size):
                length, _, key = line.rstrip("\n").partition("\t")
                batch.append((int(length), key))
            self.number += 1
            return self.number, batch


def delete_batches(
    target: Target,
    lane: Lane,
    batches: Batches,
    hook: Hook,
    bar: SharedBar,
    quarantine_id: str = "",
) -> None:
    """Take batches until none is left; re-check each against every table, then delete it.

    With ``quarantine_id``, the batch is moved into that quarantine batch instead;
    the keys that were not moved are kept in :attr:`Lane.unmoved`.

    Raises
    ------
    DjBridgeError
        If the re-check fails; that batch is not deleted.
    """
    run = target.run
    while True:
        number, batch = batches.next()
        if not batch:
            return
        hook("batch", run)
        digests = [key_digest(key) for _, key in batch]
        live: set[bytes] = set()
        for tracking in lane.trackers():
            live |= tracking.still_tracked(digests)
        doomed = [
            (size, key) for (size, key), d in zip(batch, digests, strict=True) if d not in live
        ]
        if quarantine_id:
            moves = [(key, quarantine_key(quarantine_id, key)) for _, key in doomed]
            failures = target.store.move_many(moves)
        else:
            failures = target.store.delete_many([key for _, key in doomed])
        failed = {failure.key for failure in failures}
        verb = "quarantine" if quarantine_id else "delete"
        lane.tally.errors.extend(f"cannot {verb} {f.key}: {f.reason}" for f in failures)
        gone = [(size, key) for size, key in doomed if key not in failed]
        if quarantine_id:
            gone_keys = {key for _, key in gone}
            lane.unmoved.extend(key for _, key in batch if key not in gone_keys)
        freed = sum(size for size, _ in gone)
        done = "quarantined" if quarantine_id else "deleted"
        lane.tally.add("kept_rechecked", len(batch) - len(doomed))
        lane.tally.add("delete_failed", len(failed))
        lane.tally.add(done, len(gone))
        lane.tally.add(f"bytes_{done}", freed)
        log.info(
            "%s: batch %d: %s %d objects (%s), %d kept by the re-check, %d failed",
            *(run.label, number, done, len(gone), human_bytes(freed)),
            *(len(batch) - len(doomed), len(failed)),
        )
        bar.update(len(batch))
