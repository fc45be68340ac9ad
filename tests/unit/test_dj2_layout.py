"""DataJoint 2.x layout rules and the ordered coverage merge, without any server."""

from __future__ import annotations

import random

import pytest

from djbridge.cleaner.arealist import BASE32_ORDER, Bounds, hash_ranges
from djbridge.cleaner.dj2 import Coverage
from djbridge.errors import StoreError
from djbridge.layout import (
    dj2_codec,
    dj2_coverers,
    dj2_covers,
    dj2_hash_key,
    is_dj2_hash_name,
    is_dj2_schema_name,
)

HASH = "ntbkwkogoaeivvblrks3iudwiy"


def test_codec_comments() -> None:
    assert dj2_codec(":<blob@raw>:") == ("blob", "raw")
    assert dj2_codec(":<blob@>:") == ("blob", "")
    assert dj2_codec(":<graph>:") == ("graph", None)
    assert dj2_codec(":int32:") is None
    assert dj2_codec("") is None


def test_hash_keys_and_names() -> None:
    assert dj2_hash_key("lab", HASH) == f"_hash/lab/{HASH}"
    assert dj2_hash_key("lab", HASH, (2, 2)) == f"_hash/lab/nt/bk/{HASH}"
    assert is_dj2_hash_name(HASH, ())
    assert is_dj2_hash_name(f"nt/bk/{HASH}", (2, 2))
    assert not is_dj2_hash_name(f"nt/xx/{HASH}", (2, 2))
    assert not is_dj2_hash_name(f"nt/bk/{HASH}", ())
    assert not is_dj2_hash_name(HASH.upper(), ())
    assert not is_dj2_hash_name(HASH + ".saving", ())


def test_coverage_rules() -> None:
    obj = "_schema/lab/rec/id=1/o_tok"
    assert dj2_covers(obj, obj) and dj2_covers(obj, obj + "/a/b.txt")
    assert dj2_covers(obj, obj + ".manifest.json")
    assert not dj2_covers(obj, obj + "2") and not dj2_covers(obj, obj + ".npy")
    assert obj in dj2_coverers(obj + ".manifest.json") and obj in dj2_coverers(obj + "/x/y")


def test_coverage_merge_matches_brute_force() -> None:
    rng = random.Random(13)

    def name(n: int) -> str:
        return "".join(rng.choice("ab-_.") for _ in range(rng.randint(1, n)))

    for _ in range(3000):
        keys: set[str] = set()
        for _ in range(rng.randint(0, 8)):
            key = "/".join(name(3) for _ in range(rng.randint(1, 3)))
            keys.add(key)
            if rng.random() < 0.3:
                keys.add(key + ".manifest.json")
        refs = {name(4) for _ in range(rng.randint(0, 2))}
        for key in keys:
            roll = rng.random()
            if roll < 0.3:
                refs.add(key)
            elif roll < 0.5 and "/" in key:
                refs.add(key.rsplit("/", 1)[0])
            elif roll < 0.6:
                refs.add(key[: rng.randint(1, len(key))])
        coverage = Coverage(sorted(refs))
        got = [coverage.covered(key) for key in sorted(keys)]
        assert got == [any(dj2_covers(r, k) for r in refs) for k in sorted(keys)]
        coverage.finish()
        missing = sum(1 for r in refs if not any(dj2_covers(r, k) for k in keys))
        assert (coverage.tracked, coverage.missing) == (len(refs), missing)


def test_coverage_refuses_an_unordered_listing() -> None:
    coverage = Coverage(["a"])
    coverage.covered("b")
    with pytest.raises(StoreError, match="byte order"):
        coverage.covered("a")


@pytest.mark.parametrize("jobs", [1, 2, 3, 8, 32, 40])
def test_hash_ranges_put_every_key_in_exactly_one_range(jobs: int) -> None:
    prefix = "_hash/lab/"
    ranges = hash_ranges(prefix, jobs)
    assert len(ranges) == min(jobs, 32)
    rng = random.Random(jobs)
    keys = [prefix + "".join(rng.choice(BASE32_ORDER) for _ in range(26)) for _ in range(500)]
    keys += [prefix + "NOTAHASH", prefix + "2", prefix + "z", prefix + "ab/cd/x"]

    def inside(bounds: Bounds, key: str) -> bool:
        after = bounds.start_after is None or key > bounds.start_after
        return after and (bounds.end_at is None or key <= bounds.end_at)

    for key in keys:
        assert sum(inside(bounds, key) for bounds in ranges) == 1, key
    order = [next(i for i, b in enumerate(ranges) if inside(b, k)) for k in sorted(keys)]
    assert order == sorted(order)  # ranges read in turn are the area in order


@pytest.mark.parametrize(
    "rest",
    [
        "rec/rec_id=1/tag=t%2F1/o_yFXDScic",
        "rec/rec_id=1/n_9ThZOFx9.npy",
        "rec/rec_id=1/o_9ThZ-_x9.manifest.json",
        "rec/rec_id=1/o_9ThZOFx9/sub/one.txt",
        "__computed__part/_singleton=1/my_field_abcd.tar.gz",
        "#lookup/name=/f_abcdefghijklmnop",
    ],
)
def test_schema_area_names_of_datajoint_shape(rest: str) -> None:
    assert is_dj2_schema_name(rest)


@pytest.mark.parametrize(
    "rest",
    [
        "notes.txt",  # directly in the schema's folder
        "rec/notes.txt",  # in a table's folder, no key path
        "rec/o_9ThZOFx9",  # a field file with no key folder
        "rec/rec_id=1",  # a key folder's name as a file
        "rec/rec_id=1/notes.txt",  # no field_token
        "rec/rec_id=1/o_abc",  # a token shorter than 4
        "rec/rec_id=1/o_abcdefghijklmnopq",  # a token longer than 16
        "Rec/rec_id=1/o_abcdefgh",  # DataJoint's table names are lowercase
        "rec/Id=1/o_abcdefgh",  # and so are attribute names
    ],
)
def test_schema_area_names_of_other_shapes(rest: str) -> None:
    assert not is_dj2_schema_name(rest)
