"""Object stores: one small protocol, two backends (S3/MinIO and plain directories).

A :class:`Store` is rooted at one *location*: an S3 bucket plus key prefix, or a
directory. Keys are ``/``-separated paths relative to that root, exactly the part
of a DataJoint object path that follows the store's ``location``, for example
``lab/18/28/18285198e5f67356fd7ad37635720e23``. The backends agree on these
rules, and ``tests/contract`` holds both to them:

* ``iter_objects(prefix)`` streams every object whose key starts with ``prefix``,
  with its size and last-modified time, without loading the whole listing;
  ``start_after`` and ``end_at`` narrow it to the keys ``k`` with
  ``start_after < k <= end_at``, so that ranges of one folder list in parallel;
* listings come in key order wherever DataJoint's names are concerned: S3 lists
  in byte order, and a file store walks each directory in sorted order, so the
  names ``<schema>/ab/cd/<hash>`` arrive sorted by hash;
* a failed listing raises :class:`~djbridge.errors.StoreError`, it never ends early
  as if the store were smaller;
* ``delete_many`` returns one :class:`DeleteFailure` per key that could not be
  deleted; an already absent key is not a failure (S3 ``DeleteObjects`` agrees);
* ``put`` and ``put_stream`` are atomic: readers see the old object, or the whole
  new one, never a part;
* nothing is held whole in memory on the streaming paths: ``open_read`` yields an
  object in chunks of :data:`CHUNK_SIZE`, and ``put_stream`` writes from a reader
  a part at a time (S3 multipart uploads above the part size).

A store also says what suits it: ``concurrency`` (how many copies at once are
worth running against it), ``inline_limit`` (objects up to this size copy fastest
one after another in the calling thread, because a thread would cost more than the
copy) and ``can_copy_from(other)`` (whether it copies from ``other`` without the
bytes passing through this process).
:func:`stream_copy` is the one copy that does pass through: it streams, and lets
the caller watch every chunk (to checksum it, to count it) and veto the result
before it becomes visible.

Backends are chosen from the plain mapping :data:`BACKENDS` by protocol name.

    from djbridge.stores import open_store
    store = open_store(server, bucket="lab-data", location="dj/store")
    for obj in store.iter_objects("lab/"):
        print(obj.key, obj.size)
    failures = store.delete_many(["lab/18/28/18285198e5f67356fd7ad37635720e23"])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from djbridge.config import StorageServer
from djbridge.errors import ConfigError, IntegrityError

CHUNK_SIZE = 4 << 20
"""Bytes per chunk on every streaming path: large enough for throughput, small
enough that a few copies at once stay well inside a lab machine's memory."""


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
    concurrency: int  # how many copies at once suit this backend
    inline_limit: int  # objects up to this size copy fastest in the calling thread
    read_buffer: int  # bytes a streaming read holds at once
    write_buffer: int  # bytes a streaming write holds at once

    def iter_objects(
        self, prefix: str, *, start_after: str | None = None, end_at: str | None = None
    ) -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix`` (within the bounds), in order."""
        ...

    def round_trip(self) -> float:
        """Return the seconds one small request takes (0.0 where nothing crosses a network)."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Return one object's info; raise :class:`~djbridge.errors.ObjectNotFound`."""
        ...

    def get(self, key: str) -> bytes:
        """Return an object's bytes; raise :class:`~djbridge.errors.ObjectNotFound`."""
        ...

    def open_read(self, key: str) -> ObjectStream:
        """Open ``key`` for streaming; raise :class:`~djbridge.errors.ObjectNotFound`."""
        ...

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically, replacing any previous object."""
        ...

    def put_stream(self, key: str, reader: ChunkReader) -> None:
        """Store what ``reader`` yields under ``key`` atomically, a part at a time.

        An exception raised by the reader (a failed check) leaves nothing visible.
        """
        ...

    def can_copy_from(self, source: Store) -> bool:
        """Return whether :meth:`copy` from ``source`` runs without passing the bytes here."""
        ...

    def copy(
        self,
        source: Store,
        source_key: str,
        key: str,
        *,
        md5: bytes | None = None,
    ) -> int:
        """Copy ``source_key`` of ``source`` to ``key`` here; return the bytes copied.

        Server-side when :meth:`can_copy_from` says so, otherwise a
        :func:`stream_copy`. ``md5``, when the caller knows the MD5 the object's
        contents must have, lets a server-side copy check the source before it writes;
        a store that cannot raises :class:`~djbridge.errors.SourceMismatch`, having
        written nothing, and the caller copies the object through itself.
        """
        ...

    def delete_many(self, keys: Iterable[str]) -> list[DeleteFailure]:
        """Delete keys in bulk and return the per-key failures."""
        ...

    def move_many(self, pairs: Iterable[tuple[str, str]]) -> list[DeleteFailure]:
        """Move each ``(key, new_key)`` within this store, never replacing an existing object.

        A file store renames (a hard link, then an unlink); S3 copies server-side and
        then deletes the sources in one batch. A pair whose ``new_key`` exists, or
        whose ``key`` is missing, is left alone and returned as a failure of ``key``.
        """
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


@dataclass
class ObjectStream:
    """An object being read: its size, its chunks, and how to release the connection."""

    size: int
    chunks: Iterator[bytes]
    close: Callable[[], None] = lambda: None


class ChunkReader:
    """A file-like ``read(n)`` over an :class:`ObjectStream`, with hooks.

    ``observe(chunk)`` sees every chunk as it passes (a checksum, a byte counter);
    ``finish(total)`` runs once the stream's last byte was read and may raise to
    veto the write. Backends call :meth:`read` until it returns ``b""``, so the
    veto always comes before the object becomes visible.
    """

    def __init__(
        self,
        stream: ObjectStream,
        observe: Callable[[bytes], None] | None = None,
        finish: Callable[[int], None] | None = None,
    ) -> None:
        self.stream = stream
        self.size = stream.size
        self.total = 0
        self._buffer = b""
        self._observe = observe
        self._finish = finish
        self._done = False

    def read(self, size: int = -1) -> bytes:
        """Return up to ``size`` bytes (all that is left for ``-1``); ``b""`` at the end."""
        while not self._done and (size < 0 or len(self._buffer) < size):
            chunk = next(self.stream.chunks, b"")
            self.total += len(chunk)
            if chunk and self._observe is not None:
                self._observe(chunk)
            self._buffer = chunk if not self._buffer else self._buffer + chunk
            if not chunk or self.total >= self.size:
                # The last byte is in: check now, before a backend that stops reading at
                # the announced length can make the object visible.
                self.total += len(next(self.stream.chunks, b"")) if chunk else 0
                self._end()
        if size < 0 or size >= len(self._buffer):
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def _end(self) -> None:
        self._done = True
        if self.total != self.size:
            raise IntegrityError(f"read {self.total} bytes of an object of {self.size} bytes")
        if self._finish is not None:
            self._finish(self.total)


def stream_copy(
    source: Store,
    source_key: str,
    dest: Store,
    key: str,
    *,
    observe: Callable[[bytes], None] | None = None,
    finish: Callable[[int], None] | None = None,
    header: bytes = b"",
) -> int:
    """Copy through this process, a chunk at a time; return the source bytes copied.

    ``observe`` and ``finish`` are :class:`ChunkReader`'s hooks over the source's bytes:
    a ``finish`` that raises leaves no object at ``key``. ``header`` is written before
    them (DataJoint 2.x stores an attachment as its name, a NUL byte and the contents).
    """
    stream = source.open_read(source_key)
    try:
        reader = ChunkReader(stream, observe, finish)
        if header:
            outer = ChunkReader(ObjectStream(len(header) + stream.size, _prefixed(header, reader)))
            dest.put_stream(key, outer)
            return outer.total - len(header)
        dest.put_stream(key, reader)
        return reader.total
    finally:
        stream.close()


def _prefixed(header: bytes, reader: ChunkReader) -> Iterator[bytes]:
    yield header
    while chunk := reader.read(CHUNK_SIZE):
        yield chunk


@dataclass(frozen=True)
class DjStoreSpec:
    """One ``dj.config["stores"]`` entry, parsed once at the edge.

    Only the keys djbridge uses are kept: where the objects are (``protocol``,
    ``location`` and, for S3, the endpoint, bucket and account) and how their keys
    are folded (``subfolding``, DataJoint's default ``(2, 2)`` when unset).
    """

    name: str
    protocol: str
    location: str
    subfolding: tuple[int, ...] = (2, 2)
    endpoint: str = ""
    bucket: str = ""
    access_key: str = ""
    secret_key: str = field(default="", repr=False)
    secure: bool = False

    @classmethod
    def parse(cls, name: str, spec: Mapping[str, Any]) -> DjStoreSpec:
        """Check and parse ``spec``, the entry ``name`` of ``dj.config["stores"]``.

        Raises
        ------
        ConfigError
            If the protocol is not ``file`` or ``s3``, or a required key is missing.
        """
        where = f"dj.config['stores'][{name!r}]"
        protocol = spec.get("protocol")
        required = {
            "file": ("location",),
            "s3": ("endpoint", "bucket", "location", "access_key", "secret_key"),
        }
        if protocol not in required:
            raise ConfigError(f"{where}: unsupported protocol {protocol!r} (use 'file' or 's3')")
        missing = [k for k in required[str(protocol)] if spec.get(k) in (None, "")]
        if protocol == "s3" and "location" in spec:  # an empty S3 location is the bucket root
            missing = [k for k in missing if k != "location"]
        if missing:
            raise ConfigError(f"{where}: missing key {', '.join(map(repr, missing))}")
        return cls(
            name=name, protocol=str(protocol), location=str(spec["location"]),
            subfolding=tuple(spec.get("subfolding") or ()) or (2, 2),
            endpoint=str(spec.get("endpoint", "")), bucket=str(spec.get("bucket", "")),
            access_key=str(spec.get("access_key", "")), secret_key=str(spec.get("secret_key", "")),
            secure=bool(spec.get("secure", False)),
        )  # fmt: skip

    def open(self) -> Store:
        """Open the store this entry describes."""
        if self.protocol == "file":
            return open_store(StorageServer(name=self.name, kind="file"), location=self.location)
        server = StorageServer(
            name=self.name, kind="s3", endpoint=self.endpoint, access_key=self.access_key,
            secret_key=self.secret_key, secure=self.secure,
        )  # fmt: skip
        return open_store(server, bucket=self.bucket, location=self.location)


def s3_dj_spec(server: StorageServer, bucket: str, location: str) -> dict[str, Any]:
    """Return the ``dj.config["stores"]`` entry of an S3 store (``DjStoreSpec.parse`` reads it)."""
    return {
        "protocol": "s3",
        "endpoint": server.endpoint,
        "bucket": bucket,
        "location": location,
        "access_key": server.access_key,
        "secret_key": server.secret_key,
        "secure": server.secure,
    }


def store_from_dj_spec(name: str, spec: Mapping[str, Any]) -> Store:
    """Open the store that a ``dj.config["stores"][name]`` entry describes.

    Raises
    ------
    ConfigError
        If the protocol is not ``file`` or ``s3`` or a required key is missing.
    """
    return DjStoreSpec.parse(name, spec).open()


def in_bounds(key: str, start_after: str | None, end_at: str | None) -> bool:
    """Return whether ``start_after < key <= end_at`` (a missing bound is no bound)."""
    return (start_after is None or key > start_after) and (end_at is None or key <= end_at)


def prefix_outside(prefix: str, start_after: str | None, end_at: str | None) -> bool:
    """Return whether no key that starts with ``prefix`` can lie within the bounds."""
    if end_at is not None and prefix > end_at:
        return True  # every such key is at least the prefix
    return start_after is not None and prefix < start_after and not start_after.startswith(prefix)


def _backends() -> dict[str, Any]:
    from djbridge.stores.file import FileStore
    from djbridge.stores.s3 import S3Store

    return {"file": FileStore, "s3": S3Store}


BACKENDS: dict[str, Any] = _backends()
