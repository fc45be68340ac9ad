"""Streaming, on every backend: chunked reads, atomic streamed writes, vetoes, multipart.

Nothing on these paths may hold a whole object: the tests use objects larger
than a chunk and than an S3 part (the part size is lowered to S3's 5 MiB
minimum so that a 12 MiB object takes three parts), and check that a write the
caller vetoes at its last byte, or a stream that ends early, leaves no object.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from djbridge.config import StorageServer
from djbridge.errors import IntegrityError, ObjectNotFound
from djbridge.stores import CHUNK_SIZE, ObjectStream, Store, open_store, stream_copy
from djbridge.stores.s3 import S3Store
from tests.contract.test_store_contract import keys

MIB = 1 << 20
BIG = 12 * MIB + 12345


@pytest.fixture(params=["file", "s3"])
def pair(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    bucket_factory: Callable[[StorageServer], str],
) -> tuple[Store, Store]:
    """A source and a destination store of one backend (S3: two endpoints)."""
    if request.param == "file":
        stores = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            stores.append(open_store(StorageServer(name, "file"), location=str(tmp_path / name)))
        return stores[0], stores[1]
    a: StorageServer = request.getfixturevalue("s3_a")
    b: StorageServer = request.getfixturevalue("s3_b")
    src = open_store(a, bucket=bucket_factory(a), location="lab")
    dst = open_store(b, bucket=bucket_factory(b), location="copy")
    for store in (src, dst):
        assert isinstance(store, S3Store)
        store.part_size = store.write_buffer = 5 * MIB
    return src, dst


def test_open_read_streams_in_chunks(pair: tuple[Store, Store]) -> None:
    src, _ = pair
    payload = os.urandom(BIG)
    src.put("lab/big", payload)
    stream = src.open_read("lab/big")
    try:
        sizes = [len(c) for c in stream.chunks]
    finally:
        stream.close()
    assert stream.size == BIG and sum(sizes) == BIG
    assert max(sizes) <= CHUNK_SIZE and len(sizes) >= 3
    with pytest.raises(ObjectNotFound):
        src.open_read("lab/missing")


def test_stream_copy_is_byte_identical_and_observed(pair: tuple[Store, Store]) -> None:
    src, dst = pair
    payload = os.urandom(BIG)
    src.put("lab/big", payload)
    seen = hashlib.md5()
    finished: list[int] = []
    copied = stream_copy(src, "lab/big", dst, "x/big", observe=seen.update,
                         finish=finished.append)  # fmt: skip
    assert copied == BIG and finished == [BIG]
    assert seen.digest() == hashlib.md5(payload).digest()
    assert dst.get("x/big") == payload and dst.stat("x/big").size == BIG


@pytest.mark.parametrize("size", [1000, BIG], ids=["single-put", "multipart"])
def test_a_veto_at_the_last_byte_leaves_no_object(pair: tuple[Store, Store], size: int) -> None:
    src, dst = pair
    src.put("lab/obj", os.urandom(size))
    dst.put("x/other", b"keep me")

    def veto(total: int) -> None:
        raise IntegrityError(f"checksum does not match after {total} bytes")

    with pytest.raises(IntegrityError, match="checksum"):
        stream_copy(src, "lab/obj", dst, "x/obj", finish=veto)
    assert keys(dst, "x/") == {"x/other"}
    with pytest.raises(ObjectNotFound):
        dst.stat("x/obj")


def test_a_stream_that_ends_early_leaves_no_object(pair: tuple[Store, Store]) -> None:
    _, dst = pair

    class Short:
        def open_read(self, key: str) -> ObjectStream:
            return ObjectStream(BIG, iter([b"x" * MIB, b"y" * MIB]))

    with pytest.raises((IntegrityError, OSError)):
        stream_copy(Short(), "any", dst, "x/short")  # type: ignore[arg-type]
    assert keys(dst, "x/") == set()


def test_server_side_copy_above_the_single_copy_limit(
    s3_a: StorageServer, bucket_factory: Callable[[StorageServer], str]
) -> None:
    bucket = bucket_factory(s3_a)
    src = open_store(s3_a, bucket=bucket, location="lab")
    dst = open_store(s3_a, bucket=bucket, location="copy")
    assert isinstance(dst, S3Store) and dst.can_copy_from(src)
    dst.copy_limit, dst.copy_part_size = 6 * MIB, 5 * MIB  # 12 MiB: three UploadPartCopy ranges
    payload = os.urandom(BIG)
    src.put("lab/big", payload)
    assert dst.copy(src, "lab/big", "x/big") == BIG
    assert dst.get("x/big") == payload
    small = b"tiny object"
    src.put("lab/small", small)
    assert dst.copy(src, "lab/small", "x/small") == len(small)
    assert dst.get("x/small") == small
