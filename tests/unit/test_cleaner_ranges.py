"""Key ranges cover a folder exactly once, and the ordered merge classifies like a set would."""

from __future__ import annotations

import hashlib
import random

import pytest

from djbridge import layout
from djbridge.cleaner.ranges import References, split
from djbridge.errors import UnsafeToDelete
from djbridge.stores import in_bounds

DIGESTS = sorted(hashlib.md5(str(i).encode()).digest() for i in range(500))
FOREIGN = ["lab/docs/readme.md", "lab/ZZ", "lab/!", "lab/ff~", "lab/10", "lab/7f"]


@pytest.mark.parametrize("jobs", [1, 2, 3, 8, 16, 255, 256, 1000])
@pytest.mark.parametrize("subfolding", [(2, 2), (1, 1), (3,), ()])
def test_every_key_lies_in_one_range_and_a_managed_key_in_its_hashs(
    jobs: int, subfolding: tuple[int, ...]
) -> None:
    ranges = split("lab", subfolding, jobs)
    assert 1 <= len(ranges) <= jobs
    keys = [layout.object_key("lab", d, subfolding=subfolding) for d in DIGESTS]
    for key in keys + FOREIGN:
        holders = [r for r in ranges if in_bounds(key, r.start_after, r.end_at)]
        assert len(holders) == 1, key
    for digest, key in zip(DIGESTS, keys, strict=True):
        [holder] = [r for r in ranges if in_bounds(key, r.start_after, r.end_at)]
        assert (holder.lo is None or digest >= holder.lo) and (
            holder.hi is None or digest < holder.hi
        )


def test_eight_ranges_split_the_first_fold_evenly() -> None:
    ranges = split("lab", (2, 2), 8)
    assert [r.end_at for r in ranges] == [f"lab/{v:02x}" for v in range(32, 256, 32)] + [None]
    assert ranges[2].label == "range 3/8 (hashes 40.. up to 60..)"


def merged_classes(
    listed: list[bytes],
    managed: set[bytes],
    filepath: set[bytes],
    peers: set[bytes],
    unused: set[bytes],
) -> tuple[list[str], int, int]:
    rows = sorted([(d, True) for d in managed] + [(d, False) for d in filepath])
    refs = References(rows, [sorted(peers)], sorted(unused))
    out = []
    for digest in listed:
        ref = refs.seek(digest)
        live = ref is not None and (ref.protected or (ref.managed and not ref.unused))
        out.append("referenced" if live else "orphan")
    refs.finish()
    return out, refs.tracked, refs.found


def test_the_merge_agrees_with_sets() -> None:
    rng = random.Random(7)
    listed = sorted(rng.sample(DIGESTS, 300) + rng.sample(DIGESTS, 20))  # some hashes twice
    managed = set(rng.sample(DIGESTS, 200))
    filepath = set(rng.sample(DIGESTS, 30))
    peers = set(rng.sample(DIGESTS, 30))
    unused = set(rng.sample(sorted(managed), 40))
    classes, tracked, found = merged_classes(listed, managed, filepath, peers, unused)
    protected = filepath | peers
    expected = [
        "referenced" if d in protected or (d in managed and d not in unused) else "orphan"
        for d in listed
    ]
    assert classes == expected
    assert tracked == len(managed)
    assert found == len(managed & set(listed))


def test_an_unsorted_listing_is_refused() -> None:
    refs = References([(DIGESTS[5], True)])
    refs.seek(DIGESTS[10])
    with pytest.raises(UnsafeToDelete, match="not in key order"):
        refs.seek(DIGESTS[3])


def test_empty_streams() -> None:
    refs = References([])
    assert refs.seek(DIGESTS[0]) is None
    refs.finish()
    assert (refs.tracked, refs.found) == (0, 0)


class _Run:
    """The one thing default_jobs reads of a run: its storage kind."""

    def __init__(self, kind: str) -> None:
        self.storage = type("Storage", (), {"kind": kind})()


@pytest.mark.parametrize(
    ("kind", "round_trip", "ranges"),
    [("file", 0.0, 1), ("file", None, 1), ("s3", 0.002, 1), ("s3", None, 1), ("s3", 0.020, 1),
     ("s3", 0.060, 4), ("s3", 0.200, 8), ("s3", 2.0, 8)],
)  # fmt: skip
def test_ranges_grow_with_the_stores_round_trip(
    kind: str, round_trip: float | None, ranges: int
) -> None:
    from djbridge.cleaner.scan import default_jobs

    assert default_jobs(_Run(kind), round_trip) == ranges  # type: ignore[arg-type]
