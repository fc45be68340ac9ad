"""Copy the external objects of a batch of rows from source stores to destination stores.

DataJoint 0.14 derives an object's key from the store location, the schema
(database) name, the store's subfolding and the ``~external`` row; the 16-byte
hash in the row is independent of all of them. A pulled row therefore keeps its
hash, and only the object moves: from ``<src location>/<source schema>/ab/cd/<hash>``
to ``<dst location>/<local schema>/ab/cd/<hash>`` (attachments add
``.<attachment name>``; filepath objects keep their relative path).

Every copy is verified before the rows that reference it are committed:

* the size must equal the ``~external`` row's ``size``;
* when the bytes pass through this process, the checksum DataJoint records is
  checked too: MD5 of the bytes for a blob, MD5 of the name, a NUL byte and the bytes for an
  attachment, ``contents_hash`` for a filepath.

Copies between two buckets on one S3 endpoint are server-side; everything else
streams concurrently through a thread pool.

    from djbridge.link.transfer import Placement, ExternalRow, copy_objects
    src = Placement(store=source_store, schema="lab", subfolding=(2, 2))
    dst = Placement(store=dest_store, schema="lab_copy", subfolding=(2, 2))
    copied_bytes = copy_objects(rows, src, dst, pool)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from djbridge.errors import IntegrityError, StoreError
from djbridge.layout import object_key
from djbridge.stores import Store
from djbridge.stores.s3 import S3Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    """Where one DataJoint store keeps one schema's objects."""

    store: Store
    schema: str
    subfolding: tuple[int, ...] = (2, 2)

    def key(self, row: ExternalRow) -> str:
        """Return the object key of ``row`` in this placement (DataJoint 0.14 layout)."""
        return object_key(
            self.schema,
            row.hash,
            row.attachment_name,
            filepath=row.filepath,
            subfolding=self.subfolding,
        )


@dataclass(frozen=True)
class ExternalRow:
    """One ``~external_<store>`` row, raw, as DataJoint stores it."""

    hash: bytes
    size: int
    attachment_name: str | None
    filepath: str | None
    contents_hash: bytes | None

    def checksum_ok(self, data: bytes) -> bool:
        """Check ``data`` against the checksum DataJoint recorded for this row."""
        if self.attachment_name:
            return hashlib.md5(self.attachment_name.encode() + b"\0" + data).digest() == self.hash
        if self.filepath:
            return self.contents_hash is None or hashlib.md5(data).digest() == self.contents_hash
        return hashlib.md5(data).digest() == self.hash


def copy_one(row: ExternalRow, src: Placement, dst: Placement) -> int:
    """Copy and verify one object; return its size.

    Raises
    ------
    IntegrityError
        If the copy's size or checksum does not match the source's record.
    StoreError
        If either store fails.
    """
    src_key, dst_key = src.key(row), dst.key(row)
    if isinstance(dst.store, S3Store) and dst.store.shares_endpoint(src.store):
        size = dst.store.copy(src.store, src_key, dst_key)
    else:
        data = src.store.get(src_key)
        if not row.checksum_ok(data):
            raise IntegrityError(
                f"{src.store.description}/{src_key}: checksum does not match the ~external record"
            )
        dst.store.put(dst_key, data)
        size = len(data)
    if size != row.size:
        raise IntegrityError(
            f"{dst.store.description}/{dst_key}: copied {size} bytes, ~external records {row.size}"
        )
    return size


def pool_size(pairs: Sequence[tuple[Placement, Placement]]) -> int:
    """Return how many copies to run at once: few between directories, many over a network.

    Local file copies are bound by this process (the GIL and the disk), so extra
    threads only contend; S3 copies wait on the endpoint, so more help.
    """
    local_only = all(not isinstance(p.store, S3Store) for pair in pairs for p in pair)
    return 4 if local_only else 16


def copy_objects(
    rows: Sequence[ExternalRow], src: Placement, dst: Placement, pool: Executor
) -> int:
    """Copy ``rows``' objects concurrently; return the bytes copied.

    All copies are awaited even when one fails, so no copy is still running when
    the caller rolls back; the first error is then raised.
    """
    futures = [pool.submit(copy_one, row, src, dst) for row in rows]
    total, first_error = 0, None
    for future in futures:
        try:
            total += future.result()
        except (StoreError, IntegrityError) as err:
            first_error = first_error or err
    if first_error is not None:
        raise first_error
    return total
