"""DataJoint 0.14's naming and object-key rules, as both tools share them."""

from __future__ import annotations

import hashlib

import pytest

from djbridge import layout

DIGEST = bytes.fromhex("18285198e5f67356fd7ad37635720e23")


def test_a_blob_key_folds_the_hash_into_its_own_prefixes() -> None:
    assert layout.object_key("s", DIGEST) == "s/18/28/18285198e5f67356fd7ad37635720e23"


def test_an_attachment_key_appends_the_attachment_name() -> None:
    digest = hashlib.md5(b"f2.bin\0" + b"payload").digest()
    key = layout.object_key("s", digest, "f2.bin")
    assert key == f"s/{digest.hex()[:2]}/{digest.hex()[2:4]}/{digest.hex()}.f2.bin"


def test_a_filepath_row_keeps_its_relative_path() -> None:
    assert layout.object_key("s", DIGEST, filepath="raw/run1/a.dat") == "raw/run1/a.dat"


@pytest.mark.parametrize("subfolding", [(2, 2), (1,), (3, 1, 2), ()])
@pytest.mark.parametrize("attachment", [None, "notes.txt"])
def test_object_key_and_managed_hash_are_inverses(
    subfolding: tuple[int, ...], attachment: str | None
) -> None:
    key = layout.object_key("lab", DIGEST, attachment, subfolding=subfolding)
    schema, _, name = key.partition("/")
    assert schema == "lab"
    assert layout.managed_hash(name, subfolding) == DIGEST.hex()


def test_keys_sort_like_their_hashes() -> None:
    digests = [hashlib.md5(str(i).encode()).digest() for i in range(200)]
    keys = [layout.object_key("lab", d) for d in digests]
    assert sorted(keys) == [layout.object_key("lab", d) for d in sorted(digests)]


def test_table_names() -> None:
    assert layout.tracking_table("raw") == "~external_raw"
    assert layout.part_table("recording", "channel") == "recording__channel"


@pytest.mark.parametrize("name", ["lab", "lab_djx", "acc-hydyidje", "$x", "9", "a" * 64])
def test_schema_names_datajoint_can_hold(name: str) -> None:
    assert layout.is_schema_name(name)


@pytest.mark.parametrize(
    "name", ["", "a" * 65, "lab;drop", "la`b", "la b", "lab\n", "lab/x", "-lab", "läb", 3]
)
def test_schema_names_refused(name: object) -> None:
    assert not layout.is_schema_name(name)


@pytest.mark.parametrize("name", ["raw", "raw-local", "raw_2", "rAW", "a" * 54])
def test_store_names_datajoint_can_declare(name: str) -> None:
    assert layout.is_store_name(name)
    assert len(layout.tracking_table(name)) <= layout.MAX_IDENTIFIER


@pytest.mark.parametrize("name", ["", "Raw", "2raw", "raw\n", "ra w", "a" * 55, "räw", None])
def test_store_names_refused(name: object) -> None:
    assert not layout.is_store_name(name)
