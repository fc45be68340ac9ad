"""The S3 backend (AWS S3, MinIO, moto), built on minio-py like DataJoint itself.

A store is one bucket plus a key prefix (the DataJoint store ``location``). The
location is normalised the way DataJoint 0.14 does on Python <= 3.11: leading and
trailing slashes are dropped, so ``/dj/raw/`` and ``dj/raw`` name the same keys.

Deletes go out as ``DeleteObjects`` batches of up to 1,000 keys, and every per-key
error the server returns is read and handed back; none is dropped. Copies between
two stores on the same endpoint with the same credentials are server-side: one
``CopyObject`` up to :data:`COPY_LIMIT` (S3's 5 GiB), ``UploadPartCopy`` ranges of
:data:`COPY_PART_SIZE` above it. Everything else streams: reads in chunks, writes
as one PUT up to :data:`PART_SIZE` and as a multipart upload of such parts above
it, one part in memory at a time. An upload that fails or is vetoed midway is
aborted, so no partial object ever becomes visible. The three sizes can be set
(``DJB_S3_PART_SIZE``, ``DJB_S3_COPY_LIMIT``, ``DJB_S3_COPY_PART_SIZE``, in bytes)
so that tests reach the multipart paths with small objects.

    from djbridge.stores.s3 import S3Store
    store = S3Store.open(server, bucket="lab", location="dj/raw")
    store.put("lab/ab/cd/abcd...", b"payload")
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import urllib3
from minio import Minio
from minio.commonconfig import ComposeSource, CopySource
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from minio.helpers import check_bucket_name

from djbridge.config import StorageServer
from djbridge.errors import ConfigError, ObjectNotFound, SourceMismatch, StoreError, redact
from djbridge.stores import (
    CHUNK_SIZE,
    ChunkReader,
    DeleteFailure,
    ObjectInfo,
    ObjectStream,
    Store,
    stream_copy,
)

MISSING_CODES = {"NoSuchKey", "NoSuchObject", "NotFound"}
POOL_SIZE = 32
MAX_PARTS = 10_000
MIB = 1 << 20
PART_SIZE = int(os.environ.get("DJB_S3_PART_SIZE", 8 * MIB))
"""Multipart part size of a streamed upload (S3's minimum is 5 MiB)."""
COPY_LIMIT = int(os.environ.get("DJB_S3_COPY_LIMIT", 5 << 30))
"""The largest object copied server-side in one ``CopyObject`` (S3's limit: 5 GiB)."""
COPY_PART_SIZE = int(os.environ.get("DJB_S3_COPY_PART_SIZE", 1 << 30))
"""Range size of each ``UploadPartCopy`` above :data:`COPY_LIMIT`."""


def make_client(server: StorageServer) -> Minio:
    """Create a minio client with short timeouts and few retries (fail fast, report clearly)."""
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=5, read=60),
        maxsize=POOL_SIZE,
        retries=urllib3.Retry(
            total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504], redirect=False
        ),
    )
    try:
        return Minio(
            server.endpoint,
            access_key=server.access_key or None,
            secret_key=server.secret_key or None,
            secure=server.secure,
            region=server.region,
            http_client=http,
        )
    except ValueError as err:
        raise ConfigError(f"storage server {server.name!r}: {_scrub(err, server)}") from err


def _scrub(err: object, server: StorageServer) -> str:
    """Return a library's or endpoint's text with the server's secret key masked."""
    return redact(str(err), [server.secret_key])


class S3Store:
    """One bucket and location on an S3-compatible endpoint."""

    def __init__(self, client: Minio, bucket: str, location: str, server: StorageServer) -> None:
        self.client = client
        self.bucket = bucket
        self.root = location.strip("/")
        self.server = server
        self.description = f"s3://{server.endpoint}/{bucket}/{self.root}".rstrip("/")
        self.root_id = self.description
        self.concurrency = 16  # copies wait on the endpoint, so more of them help
        self.inline_limit = 0  # every request waits on the network: always in threads
        self.part_size = PART_SIZE
        self.read_buffer = CHUNK_SIZE  # a GET is read a chunk at a time
        self.write_buffer = PART_SIZE  # an upload holds one part
        self.copy_limit = COPY_LIMIT
        self.copy_part_size = COPY_PART_SIZE

    @classmethod
    def open(cls, server: StorageServer, *, bucket: str = "", location: str = "") -> S3Store:
        """Open ``bucket``/``location`` on ``server``; the bucket is required."""
        if not bucket:
            raise ConfigError(f"S3 storage server {server.name!r} needs a bucket")
        try:
            check_bucket_name(bucket)
        except ValueError as err:
            raise ConfigError(f"storage server {server.name!r}: {_scrub(err, server)}") from err
        return cls(make_client(server), bucket, location, server)

    def __repr__(self) -> str:
        return f"S3Store({self.description!r})"

    def _full(self, key: str) -> str:
        return f"{self.root}/{key}" if self.root else key

    def _error(self, action: str, key: str, err: Exception) -> StoreError:
        if isinstance(err, S3Error) and err.code in MISSING_CODES:
            return ObjectNotFound(f"{self.description}: no object {key!r}")
        if isinstance(err, S3Error) and err.code == "NoSuchBucket":
            return StoreError(f"{self.description}: bucket {self.bucket!r} does not exist")
        return StoreError(
            f"{self.description}: cannot {action} {key!r}: {_scrub(err, self.server)}"
        )

    def round_trip(self, probes: int = 2) -> float:
        """Return the fastest of ``probes`` bucket look-ups (``HEAD``), in seconds.

        Raises
        ------
        StoreError
            If the endpoint does not answer, refuses the account, or has no such bucket.
        """
        fastest = float("inf")
        for _ in range(probes):
            started = time.perf_counter()
            try:
                exists = self.client.bucket_exists(self.bucket)
            except (MinioException, urllib3.exceptions.HTTPError, OSError) as err:
                raise self._error("reach", self.bucket, err) from err
            fastest = min(fastest, time.perf_counter() - started)
            if not exists:
                raise StoreError(f"{self.description}: bucket {self.bucket!r} does not exist")
        return fastest

    def iter_objects(
        self, prefix: str, *, start_after: str | None = None, end_at: str | None = None
    ) -> Iterator[ObjectInfo]:
        """Stream the listing page by page, in key order; a failure mid-way raises.

        ``start_after`` is passed to the endpoint, and the listing stops at the first
        key beyond ``end_at``, so a range costs only its own pages.
        """
        full_prefix = self._full(prefix)
        skip = len(self.root) + 1 if self.root else 0
        after = self._full(start_after) if start_after is not None else None
        try:
            for obj in self.client.list_objects(
                self.bucket, prefix=full_prefix, recursive=True, start_after=after
            ):
                if obj.is_dir or obj.object_name is None:
                    continue
                key = obj.object_name[skip:]
                if end_at is not None and key > end_at:
                    return
                modified = obj.last_modified.timestamp() if obj.last_modified else 0.0
                yield ObjectInfo(key, int(obj.size or 0), modified)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as err:
            raise self._error("list", prefix, err) from err

    def stat(self, key: str) -> ObjectInfo:
        """Return the size and last-modified time of ``key``."""
        try:
            st = self.client.stat_object(self.bucket, self._full(key))
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as err:
            raise self._error("stat", key, err) from err
        modified = st.last_modified.timestamp() if st.last_modified else 0.0
        return ObjectInfo(key, int(st.size or 0), modified)

    def get(self, key: str) -> bytes:
        """Return the bytes of ``key`` (small objects only: manifests, tests)."""
        stream = self.open_read(key)
        try:
            return b"".join(stream.chunks)
        finally:
            stream.close()

    def open_read(self, key: str) -> ObjectStream:
        """Start a GET of ``key``; its chunks arrive as they are read."""
        try:
            response = self.client.get_object(self.bucket, self._full(key))
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as err:
            raise self._error("read", key, err) from err

        def chunks() -> Iterator[bytes]:
            try:
                yield from response.stream(CHUNK_SIZE)
            except (urllib3.exceptions.HTTPError, OSError) as err:
                raise self._error("read", key, err) from err

        def close() -> None:
            response.close()
            response.release_conn()

        size = int(response.headers.get("Content-Length", 0))
        return ObjectStream(size, chunks(), close)

    def put(self, key: str, data: bytes) -> None:
        """Upload ``data`` (a single PUT, or multipart above the part size)."""
        self._upload(key, io.BytesIO(data), len(data))

    def put_stream(self, key: str, reader: ChunkReader) -> None:
        """Upload what ``reader`` yields: one PUT, or parts of ``part_size`` one at a time."""
        self._upload(key, reader, reader.size)

    def _upload(self, key: str, data: Any, size: int) -> None:
        # Parts stay within S3's 10,000-part limit however large the object is.
        part = max(self.part_size, math.ceil(size / MAX_PARTS / MIB) * MIB)
        try:
            self.client.put_object(self.bucket, self._full(key), data, size,
                                   part_size=part, num_parallel_uploads=1)  # fmt: skip
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as err:
            raise self._error("write", key, err) from err

    def shares_endpoint(self, other: Store) -> bool:
        """Return whether ``other`` is on this endpoint with the same credentials."""
        return (
            isinstance(other, S3Store)
            and other.server.endpoint == self.server.endpoint
            and other.server.access_key == self.server.access_key
            and other.server.secret_key == self.server.secret_key
        )

    def can_copy_from(self, source: Store) -> bool:
        """Return whether ``source`` shares this endpoint and credentials (server-side copy)."""
        return self.shares_endpoint(source)

    def copy(
        self,
        source: Store,
        source_key: str,
        key: str,
        *,
        md5: bytes | None = None,
    ) -> int:
        """Server-side copy on a shared endpoint (multipart above the copy limit), else stream.

        A HEAD reads the source's size and ETag, and one CopyObject, conditioned on that
        ETag, copies exactly the object whose size was read. With the contents' ``md5``
        known, the source is checked before anything is written: an object uploaded in
        one part has its MD5 as ETag. One that has not (uploaded in parts, or not the
        expected contents) is not copied, and :class:`SourceMismatch` says so: the
        caller copies it through itself, checking the MD5. (The condition is not trusted
        alone: some S3 servers, moto among them, ignore ``x-amz-copy-source-if-match``.)

        Raises
        ------
        SourceMismatch
            If ``md5`` is given and the source's ETag is not it.
        """
        if not isinstance(source, S3Store) or not self.shares_endpoint(source):
            return stream_copy(source, source_key, self, key)
        origin = source._full(source_key)
        try:
            head = source.client.stat_object(source.bucket, origin)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as err:
            raise source._error("stat", source_key, err) from err
        size = int(head.size or 0)
        if md5 is not None and (head.etag or "").strip('"') != md5.hex():
            # Uploaded in parts (its ETag is not its MD5), or not the expected contents:
            # nothing is written here; the caller copies it through itself, checked.
            raise SourceMismatch(f"{source.description}/{source_key}: its ETag is not its MD5")
        try:
            if size <= self.copy_limit:
                # One CopyObject, conditioned on the ETag just read: what lands is the
                # object whose size was read, so no HEAD of the copy is needed (minio's
                # copy_object would send a HEAD of its own first).
                self._copy_if(source, origin, key, head.etag)
                return size
            else:
                step = self.copy_part_size
                ranges = [ComposeSource(source.bucket, origin, offset=start,
                                        length=min(step, size - start))
                          for start in range(0, size, step)]  # fmt: skip
                self.client.compose_object(self.bucket, self._full(key), ranges)
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as err:
            raise source._error("copy", source_key, err) from err
        return self.stat(key).size

    def _copy_if(self, source: S3Store, origin: str, key: str, etag: str | None) -> None:
        """Send one CopyObject of ``origin`` to ``key``, only if the source's ETag is ``etag``."""
        headers = CopySource(source.bucket, origin, match_etag=etag).gen_copy_headers()
        self.client._execute(  # noqa: SLF001 - the one request minio's copy_object sends
            "PUT", self.bucket, object_name=self._full(key), headers=cast(Any, headers)
        )

    def delete_many(self, keys: Iterable[str]) -> list[DeleteFailure]:
        """Delete with ``DeleteObjects`` (1,000 keys a request); return every per-key error."""
        back = {}
        objects = []
        for key in keys:
            full = self._full(key)
            back[full] = key
            objects.append(DeleteObject(full))
        if not objects:
            return []
        try:
            errors = list(self.client.remove_objects(self.bucket, objects))
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as err:
            raise StoreError(
                f"{self.description}: DeleteObjects failed: {_scrub(err, self.server)}"
            ) from err
        failures = []
        for error in errors:
            name = error.name or ""
            reason = _scrub(f"{error.code}: {error.message}", self.server)
            failures.append(DeleteFailure(back.get(name, name), reason))
        return failures

    def move_many(self, pairs: Iterable[tuple[str, str]]) -> list[DeleteFailure]:
        """Copy each ``(key, new_key)`` server-side, then delete the copied sources in one batch.

        A target that exists is never replaced. A run killed between the copies and
        the delete leaves both copies, byte for byte the same.
        """

        def one(pair: tuple[str, str]) -> DeleteFailure | None:
            key, new_key = pair
            try:
                self.stat(new_key)
                return DeleteFailure(key, f"{new_key} exists; nothing was replaced")
            except ObjectNotFound:
                pass
            try:
                self.copy(self, key, new_key)
            except ObjectNotFound:
                return DeleteFailure(key, "no such object")
            except StoreError as err:
                return DeleteFailure(key, str(err))
            return None

        pairs = list(pairs)
        with ThreadPoolExecutor(max(1, min(self.concurrency, len(pairs)))) as pool:
            outcomes = list(pool.map(one, pairs))
        failures = [failure for failure in outcomes if failure is not None]
        copied = [key for (key, _), failure in zip(pairs, outcomes, strict=True) if failure is None]
        return failures + self.delete_many(copied)
