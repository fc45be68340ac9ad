"""Object stores: one small protocol, two backends (S3/MinIO and plain directories).

A :class:`Store` is rooted at one *location*: an S3 bucket plus key prefix, or a
directory. Keys are ``/``-separated paths relative to that root, exactly the part
of a DataJoint object path that follows the store's ``location``, for example
``lab/18/28/18285198e5f67356fd7ad37635720e23``. The backends agree on these
rules, and ``tests/contract`` holds both to them:

* ``iter_objects(prefix)`` streams every object whose key starts with ``prefix``,
  with its size and last-modified time, without loading the whole listing;
* a failed listing raises :class:`~djbridge.errors.StoreError`, it never ends early
  as if the store were smaller;
* ``delete_many`` returns one :class:`DeleteFailure` per key that could not be
  deleted; an already absent key is not a failure (S3 ``DeleteObjects`` agrees);
* ``put`` is atomic: readers see the old object, or the whole new one.

Backends are chosen from the plain mapping :data:`BACKENDS` by protocol name.

    from djbridge.stores import open_store
    store = open_store(server, bucket="lab-data", location="dj/store")
    for obj in store.iter_objects("lab/"):
        print(obj.key, obj.size)
    failures = store.delete_many(["lab/18/28/18285198e5f67356fd7ad37635720e23"])
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from djbridge.config import StorageServer
from djbridge.errors import ConfigError


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its key under the store root, size in bytes, mtime in epoch seconds."""

    key: str
    size: int
    mtime: float


@dataclass(frozen=True)
class DeleteFailure:
    """A key that ``delete_many`` could not delete, and the reason the store gave."""

    key: str
    reason: str


@runtime_checkable
class Store(Protocol):
    """The primitives both tools need; everything else is a plain function on top."""

    description: str
    root_id: str  # equal for two stores rooted at the same place, e.g. "file:/data/raw"

    def iter_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix``, in no particular order."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Return one object's info; raise :class:`~djbridge.errors.ObjectNotFound`."""
        ...

    def get(self, key: str) -> bytes:
        """Return an object's bytes; raise :class:`~djbridge.errors.ObjectNotFound`."""
        ...

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically, replacing any previous object."""
        ...

    def copy(self, source: Store, source_key: str, key: str) -> int:
        """Copy ``source_key`` of ``source`` to ``key`` here; return the bytes copied.

        Backends copy without a round trip through this process when they can (S3
        server-side copy on one endpoint, a file copy between directories) and fall
        back to ``source.get`` plus ``put`` otherwise.
        """
        ...

    def delete_many(self, keys: Iterable[str]) -> list[DeleteFailure]:
        """Delete keys in bulk and return the per-key failures."""
        ...


def open_store(server: StorageServer, *, bucket: str = "", location: str = "") -> Store:
    """Open the store for ``server`` rooted at ``bucket``/``location`` (a directory for file).

    Raises
    ------
    ConfigError
        If the storage kind is unknown, or a file store has no location.
    """
    try:
        backend = BACKENDS[server.kind]
    except KeyError:
        raise ConfigError(f"unknown storage kind {server.kind!r}") from None
    store: Store = backend.open(server, bucket=bucket, location=location)
    return store


def store_from_dj_spec(name: str, spec: Mapping[str, Any]) -> Store:
    """Open the store that a ``dj.config["stores"][name]`` entry describes.

    Raises
    ------
    ConfigError
        If the protocol is not ``file`` or ``s3`` or a required key is missing.
    """
    protocol = spec.get("protocol")
    if protocol == "file":
        if not spec.get("location"):
            raise ConfigError(f"dj.config['stores'][{name!r}]: missing key 'location'")
        server = StorageServer(name=name, kind="file")
        return open_store(server, location=str(spec.get("location", "")))
    if protocol == "s3":
        required = ("endpoint", "bucket", "location", "access_key", "secret_key")
        missing = [k for k in required if k not in spec]
        if missing:
            raise ConfigError(
                f"dj.config['stores'][{name!r}]: missing key {', '.join(map(repr, missing))}"
            )
        server = StorageServer(
            name=name,
            kind="s3",
            endpoint=str(spec["endpoint"]),
            access_key=str(spec["access_key"]),
            secret_key=str(spec["secret_key"]),
            secure=bool(spec.get("secure", False)),
        )
        return open_store(server, bucket=str(spec["bucket"]), location=str(spec["location"]))
    raise ConfigError(f"store {name!r}: unsupported protocol {protocol!r} (use 'file' or 's3')")


def _backends() -> dict[str, Any]:
    from djbridge.stores.file import FileStore
    from djbridge.stores.s3 import S3Store

    return {"file": FileStore, "s3": S3Store}


BACKENDS: dict[str, Any] = _backends()
