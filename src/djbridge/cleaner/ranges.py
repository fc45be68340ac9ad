"""Key ranges of a schema folder, and the ordered merge that classifies objects in constant memory.

DataJoint 0.14's fold directories are the hash's own leading digits, so inside a
schema folder the managed names sort exactly like their hashes, and S3 lists keys
in that order. A run therefore never holds a set of hashes: it walks two sorted
streams side by side, the listing and the tracking rows (``ORDER BY hash``), the
way a merge join does. Memory stays constant however many rows or objects there are.

A folder is split into ``N`` :class:`KeyRange` values by the leading hex digits:
range ``i`` holds the listing keys ``start_after < key <= end_at`` and the hashes
``lo <= hash < hi``. Every key of the folder lies in exactly one range (foreign
names too), and a managed name lies in the range of its hash, so ranges can be
listed, merged and deleted independently and their counts add up to a serial run.

The invariant the merge checks rather than trusts: managed hashes must come out of
the listing in non-decreasing order. A store that lists otherwise makes the run
refuse (:class:`~djbridge.errors.UnsafeToDelete`), because a merge over unsorted
input would call a live object an orphan.

    from djbridge.cleaner.ranges import References, split
    for key_range in split("lab", (2, 2), jobs=8):
        refs = References(tracking_stream, protected_streams)
        ref = refs.seek(digest)            # the rows listing this hash, or None
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from djbridge.errors import UnsafeToDelete

HASH_BYTES = 16
MAX_JOBS = 256


@dataclass(frozen=True)
class KeyRange:
    """One slice of a schema folder: listing bounds and the matching hash bounds."""

    index: int
    count: int
    start_after: str | None  # listing keys greater than this (None: from the start)
    end_at: str | None  # ... and at most this (None: to the end)
    lo: bytes | None  # hashes at least this
    hi: bytes | None  # ... and less than this

    @property
    def label(self) -> str:
        """Name the range for messages, e.g. ``range 3/8 (hashes 40.. to 60..)``."""
        lo = self.lo.hex()[:2] if self.lo else "00"
        hi = f"{self.hi.hex()[:2]}.." if self.hi else "the end"
        return f"range {self.index + 1}/{self.count} (hashes {lo}.. up to {hi})"


def split(schema: str, subfolding: tuple[int, ...], jobs: int) -> list[KeyRange]:
    """Split ``<schema>/`` into ``jobs`` ranges (fewer if the leading fold has fewer values).

    Parameters
    ----------
    schema
        The schema folder, without the slash.
    subfolding
        The store's subfolding; the boundaries use the first fold's digits (at most two).
    jobs
        The wanted number of ranges, 1 to 256.

    Returns
    -------
    list of KeyRange
        Contiguous ranges covering the whole folder, in key order.
    """
    digits = min(subfolding[0], 2) if subfolding else 2
    values = 16**digits
    count = max(1, min(jobs, values))
    cuts = [f"{(values * i) // count:0{digits}x}" for i in range(1, count)]
    ranges = []
    for index in range(count):
        low = cuts[index - 1] if index else None
        high = cuts[index] if index < count - 1 else None
        ranges.append(
            KeyRange(
                index=index,
                count=count,
                start_after=f"{schema}/{low}" if low else None,
                end_at=f"{schema}/{high}" if high else None,
                lo=_hash_bound(low),
                hi=_hash_bound(high),
            )
        )
    return ranges


def _hash_bound(digits: str | None) -> bytes | None:
    return bytes.fromhex(digits.ljust(2 * HASH_BYTES, "0")) if digits else None


@dataclass
class Ref:
    """What the tracking rows say about one hash."""

    digest: bytes
    managed: bool = False  # a blob or attachment row of the run's own store
    protected: bool = False  # a filepath row, another store's row, or a peer server's row
    unused: bool = False  # a managed row that --include-unused will delete
    found: bool = False  # the listing holds an object of this hash


class References:
    """The merged, hash-ordered view of every tracking stream of one range.

    ``managed`` yields ``(hash, is_managed)`` from the run's own server (its store's
    blob and attachment rows are managed; its filepath rows and other tables are
    not); each of ``protected`` yields hashes from a peer server; ``unused`` yields
    the unused managed hashes. All must be sorted. :meth:`seek` moves forward only,
    so memory holds one row per stream.
    """

    def __init__(
        self,
        managed: Iterable[tuple[bytes, bool]],
        protected: Iterable[Iterable[bytes]] = (),
        unused: Iterable[bytes] = (),
    ) -> None:
        streams: list[Iterator[tuple[bytes, int]]] = [
            ((d, 0 if is_managed else 1) for d, is_managed in managed),
            *(((d, 1) for d in stream) for stream in protected),
            ((d, 2) for d in unused),
        ]
        self._rows = heapq.merge(*streams)
        self._pending: tuple[bytes, int] | None = next(self._rows, None)
        self.current: Ref | None = None
        self._last: bytes | None = None
        self.tracked = 0  # distinct managed hashes passed so far
        self.found = 0  # of those, how many the listing held

    def _next_ref(self) -> Ref | None:
        if self._pending is None:
            return None
        ref = Ref(self._pending[0])
        while self._pending is not None and self._pending[0] == ref.digest:
            kind = self._pending[1]
            ref.managed |= kind == 0
            ref.protected |= kind == 1
            ref.unused |= kind == 2
            self._pending = next(self._rows, None)
        if ref.managed:
            self.tracked += 1
        return ref

    def seek(self, digest: bytes) -> Ref | None:
        """Return the rows for ``digest``, or ``None``; each call's digest must not be smaller.

        Raises
        ------
        UnsafeToDelete
            If ``digest`` is smaller than the previous one: the listing is not sorted.
        """
        if self._last is not None and digest < self._last:
            raise UnsafeToDelete(
                f"refusing to delete: the store listed {digest.hex()} after "
                f"{self._last.hex()}; its listing is not in key order"
            )
        self._last = digest
        while self.current is None or self.current.digest < digest:
            self.current = self._next_ref()
            if self.current is None:
                return None  # past every row
        if self.current.digest != digest:
            return None
        if self.current.managed and not self.current.found:
            self.found += 1
        self.current.found = True
        return self.current

    def finish(self) -> None:
        """Pass the remaining rows, so :attr:`tracked` counts every managed hash."""
        while self._next_ref() is not None:
            pass
