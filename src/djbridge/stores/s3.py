"""The S3 backend (AWS S3, MinIO, moto), built on minio-py like DataJoint itself.

A store is one bucket plus a key prefix (the DataJoint store ``location``). The
location is normalised the way DataJoint 0.14 does on Python <= 3.11: leading and
trailing slashes are dropped, so ``/dj/raw/`` and ``dj/raw`` name the same keys.

Deletes go out as ``DeleteObjects`` batches of up to 1,000 keys, and every per-key
error the server returns is read and handed back; none is dropped. Copies between
two stores on the same endpoint with the same credentials are server-side
``CopyObject`` calls: the bytes never pass through this process.

    from djbridge.stores.s3 import S3Store
    store = S3Store.open(server, bucket="lab", location="dj/raw")
    store.put("lab/ab/cd/abcd...", b"payload")
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any

import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from minio.helpers import check_bucket_name

from djbridge.config import StorageServer
from djbridge.errors import ConfigError, ObjectNotFound, StoreError, redact
from djbridge.stores import DeleteFailure, ObjectInfo, Store

MISSING_CODES = {"NoSuchKey", "NoSuchObject", "NotFound"}
POOL_SIZE = 32


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

    def iter_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        """Stream the listing page by page; a failure mid-way raises, never truncates."""
        full_prefix = self._full(prefix)
        skip = len(self.root) + 1 if self.root else 0
        try:
            for obj in self.client.list_objects(self.bucket, prefix=full_prefix, recursive=True):
                if obj.is_dir or obj.object_name is None:
                    continue
                modified = obj.last_modified.timestamp() if obj.last_modified else 0.0
                yield ObjectInfo(obj.object_name[skip:], int(obj.size or 0), modified)
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
        """Return the bytes of ``key``."""
        response: Any = None
        try:
            response = self.client.get_object(self.bucket, self._full(key))
            return bytes(response.read())
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as err:
            raise self._error("read", key, err) from err
        finally:
            if response is not None:
                response.close()
                response.release_conn()

    def put(self, key: str, data: bytes) -> None:
        """Upload ``data`` (a single PUT, or multipart above minio's part size)."""
        try:
            self.client.put_object(self.bucket, self._full(key), io.BytesIO(data), len(data))
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

    def copy(self, source: Store, source_key: str, key: str) -> int:
        """Server-side copy on a shared endpoint, otherwise GET from ``source`` and PUT here."""
        if isinstance(source, S3Store) and self.shares_endpoint(source):
            try:
                self.client.copy_object(
                    self.bucket,
                    self._full(key),
                    CopySource(source.bucket, source._full(source_key)),
                )
            except (MinioException, urllib3.exceptions.HTTPError, OSError) as err:
                raise source._error("copy", source_key, err) from err
            return self.stat(key).size
        data = source.get(source_key)
        self.put(key, data)
        return len(data)

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
