"""Listing a DataJoint 2.x area into spool files, in byte order, in parallel key ranges.

A 2.x run merges each area's listing with that area's referenced paths, and both
must come in byte order (:class:`djbridge.cleaner.dj2.Coverage`). Stores list in
that order; this module does not trust it: a listing that comes out of order is
sorted on disk (sorted chunks, then a k-way merge) before the merge sees it.

The hash area can be split into key ranges by the first character of the hash:
hashes are base32 (``2``-``7`` then ``a``-``z``) and any folds are the hash's own
leading characters, so every key of the area lies in exactly one range and the
ranges, read one after another, are the whole area in order. Ranges are listed at
the same time, each into its own spool file; the listing is complete only when
every range is, and a failed range fails the whole listing by name.

    ranges = hash_ranges("_hash/lab/", jobs=8)
    listing = AreaListing(store, area, ranges, stack)
    run_listings([listing, other], jobs=8, progress=None)
    for obj in listing:            # ascending keys, from disk
        ...
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO

from djbridge.errors import DjBridgeError, StoreError
from djbridge.progress import Progress
from djbridge.stores import ObjectInfo, Store

BASE32_ORDER = "234567abcdefghijklmnopqrstuvwxyz"  # the hash alphabet, in byte order
SORT_CHUNK = 100_000


@dataclass(frozen=True)
class Bounds:
    """Listing bounds of one range: keys ``start_after < key <= end_at`` (``None``: open)."""

    start_after: str | None = None
    end_at: str | None = None

    def label(self, prefix: str) -> str:
        """Name the range for messages, e.g. ``keys after _hash/lab/a up to _hash/lab/e``."""
        low = self.start_after[len(prefix) :] if self.start_after else "the start"
        high = self.end_at[len(prefix) :] if self.end_at else "the end"
        return f"range from {low} up to {high}"


def hash_ranges(prefix: str, jobs: int) -> list[Bounds]:
    """Split a hash area into ``jobs`` ranges by the hash's first character (at most 32)."""
    count = max(1, min(jobs, len(BASE32_ORDER)))
    cuts = [BASE32_ORDER[(len(BASE32_ORDER) * i) // count] for i in range(1, count)]
    edges: list[str | None] = [None, *(prefix + cut for cut in cuts), None]
    return [Bounds(edges[i], edges[i + 1]) for i in range(count)]


def temporary(stack: ExitStack, kind: str) -> IO[str]:
    """Open a text spool file that disappears when ``stack`` closes."""
    return stack.enter_context(
        tempfile.TemporaryFile("w+", encoding="utf-8", prefix=f"dj-cleaner-{kind}-")
    )


def _sorted_lines(spool: IO[str], stack: ExitStack) -> Iterator[str]:
    """Sort a spool of lines on disk: sorted chunks in temporary files, merged."""
    spool.seek(0)
    runs = []
    while chunk := [line for _, line in zip(range(SORT_CHUNK), spool, strict=False)]:
        chunk.sort()
        run = temporary(stack, "sort")
        run.writelines(chunk)
        run.seek(0)
        runs.append(run)
    return heapq.merge(*runs)


class RangeSpool:
    """One range's listing on disk, and whether it came in order."""

    def __init__(self, bounds: Bounds, stack: ExitStack) -> None:
        self.bounds = bounds
        self.spool = temporary(stack, "list")
        self.ordered = True
        self.count = 0
        self.odd = 0  # keys with a tab or newline: counted, kept, never candidates

    def fill(self, store: Store, prefix: str, bar: Progress) -> None:
        """List the range into the spool."""
        last = ""
        objects = (
            store.iter_objects(prefix)
            if self.bounds == Bounds()
            else store.iter_objects(
                prefix, start_after=self.bounds.start_after, end_at=self.bounds.end_at
            )
        )
        for obj in objects:
            self.count += 1
            if not self.count % 1000:
                bar.update(1000)
            if "\t" in obj.key or "\n" in obj.key:
                self.odd += 1
                continue
            self.ordered = self.ordered and obj.key > last
            last = obj.key
            self.spool.write(f"{obj.key}\t{obj.size}\t{obj.mtime}\n")
        bar.update(self.count % 1000)

    def lines(self, stack: ExitStack) -> Iterator[str]:
        """Yield the spooled lines in byte order of their keys."""
        if not self.ordered:
            return _sorted_lines(self.spool, stack)
        self.spool.seek(0)
        return iter(self.spool)


class AreaListing:
    """An area's listing in one or more ranges; iterate it for ascending keys."""

    def __init__(
        self, store: Store, name: str, prefix: str, ranges: Sequence[Bounds], stack: ExitStack
    ) -> None:
        self.store = store
        self.name = name
        self.prefix = prefix
        self.stack = stack
        self.ranges = [RangeSpool(bounds, stack) for bounds in ranges]

    @property
    def count(self) -> int:
        """How many objects the listing found."""
        return sum(spool.count for spool in self.ranges)

    @property
    def odd(self) -> int:
        """How many keys had a tab or newline (kept, never candidates)."""
        return sum(spool.odd for spool in self.ranges)

    def __iter__(self) -> Iterator[ObjectInfo]:
        for spool in self.ranges:
            for line in spool.lines(self.stack):
                key, size, mtime = line.rstrip("\n").split("\t")
                yield ObjectInfo(key, int(size), float(mtime))


def run_listings(
    listings: Sequence[AreaListing], jobs: int, progress: bool | None, label: str
) -> None:
    """List every range of every listing, ``jobs`` at a time; all finish before this returns.

    Raises
    ------
    StoreError
        Naming each range whose listing failed, once every range has ended.
    """
    tasks = [(listing, spool) for listing in listings for spool in listing.ranges]
    with (
        Progress(f"listing {label}", unit="obj", enabled=progress) as bar,
        ThreadPoolExecutor(max(1, jobs)) as pool,
    ):
        futures = [
            (listing, spool, pool.submit(spool.fill, listing.store, listing.prefix, bar))
            for listing, spool in tasks
        ]
        failed = []
        for listing, spool, future in futures:
            try:
                future.result()
            except DjBridgeError as err:
                where = f"{listing.name} area {listing.prefix}"
                if len(listing.ranges) > 1:
                    where += f", {spool.bounds.label(listing.prefix)}"
                failed.append(f"{where}: {err}")
    if failed:
        raise StoreError(
            f"listing failed in {len(failed)} of {len(tasks)} ranges; nothing was deleted: "
            + "; ".join(failed)
        )
