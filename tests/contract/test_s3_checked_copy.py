"""A server-side S3 copy that knows the contents' MD5 checks the source before it writes.

Two buckets on one endpoint (moto) and :func:`djbridge.link.transfer.copy_one`, as a
pull uses it:

* a right object goes in one conditional CopyObject and arrives byte for byte;
* a wrong object of the right size is refused before anything is written, so a
  live object already at the destination key is left as it was;
* an object uploaded in parts (whose ETag is not its MD5) still arrives, copied
  through this process and checked.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from djbridge.config import StorageServer
from djbridge.errors import IntegrityError
from djbridge.link.transfer import Copy, copy_one
from djbridge.stores import open_store
from djbridge.stores.s3 import S3Store

pytestmark = pytest.mark.integration


@pytest.fixture
def buckets(
    s3_a: StorageServer, bucket_factory: Callable[[StorageServer], str]
) -> tuple[S3Store, S3Store]:
    src = open_store(s3_a, bucket=bucket_factory(s3_a), location="src")
    dst = open_store(s3_a, bucket=bucket_factory(s3_a), location="dst")
    assert isinstance(src, S3Store) and isinstance(dst, S3Store)
    assert dst.can_copy_from(src)
    return src, dst


def copy_of(src: S3Store, dst: S3Store, data: bytes) -> Copy:
    return Copy(src, "obj", dst, "obj", len(data), md5=hashlib.md5(data).digest())


def test_a_right_object_is_copied_server_side(buckets: tuple[S3Store, S3Store]) -> None:
    src, dst = buckets
    data = os.urandom(5000)
    src.put("obj", data)
    assert copy_one(copy_of(src, dst, data), lambda n: None) == len(data)
    assert dst.get("obj") == data


def test_a_wrong_object_never_overwrites_the_destination(buckets: tuple[S3Store, S3Store]) -> None:
    src, dst = buckets
    right = os.urandom(5000)
    src.put("obj", bytes(b ^ 1 for b in right))  # same size, other contents
    dst.put("obj", right)  # a live copy already pulled
    with pytest.raises(IntegrityError, match="checksum"):
        copy_one(copy_of(src, dst, right), lambda n: None)
    assert dst.get("obj") == right


def test_an_object_uploaded_in_parts_arrives_checked(buckets: tuple[S3Store, S3Store]) -> None:
    src, dst = buckets
    data = os.urandom(12 << 20)  # above the multipart threshold: its ETag is not its MD5
    src.put("obj", data)
    assert "-" in src.client.stat_object(src.bucket, src._full("obj")).etag
    with ThreadPoolExecutor(1):
        assert copy_one(copy_of(src, dst, data), lambda n: None) == len(data)
    assert hashlib.md5(dst.get("obj")).digest() == hashlib.md5(data).digest()
