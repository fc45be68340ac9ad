"""The file backend: a store rooted at a local (or mounted) directory.

Keys map to paths under the root directory; ``..`` and absolute keys are
refused, so no key can reach outside the root. Writes go to a temporary file in
the root's staging directory, ``.djbridge-staging/``, and are renamed into
place, so a reader or a crash never sees half an object, and a killed writer
leaves nothing inside an object's folder (a DataJoint 2.x folder object lists
every file it holds). Only where a target directory sits on another filesystem
than the root is the temporary file written beside the target instead. The first
write of a process removes the temporary files that writers on this host left
when they died. Listings walk the directory tree lazily with ``os.scandir``
and report regular files only; symbolic links are skipped, never followed, and
the staging directory is never listed.

    from djbridge.stores.file import FileStore
    store = FileStore("/data/dj-store")
    store.put("lab/ab/cd/abcd...", b"payload")
    [o.key for o in store.iter_objects("lab/")]
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from djbridge.config import StorageServer
from djbridge.errors import ConfigError, ObjectNotFound, StoreError
from djbridge.stores import (
    CHUNK_SIZE,
    DeleteFailure,
    ObjectInfo,
    ObjectStream,
    in_bounds,
    prefix_outside,
    stream_copy,
)

if TYPE_CHECKING:  # annotations only
    from djbridge.stores import ChunkReader, Store

log = logging.getLogger(__name__)

STAGING = ".djbridge-staging"
"""The directory under a store's root where objects are written before their rename."""

_HOST = socket.gethostname().replace("/", "_")


def _temp_name(serial: int) -> str:
    """Name a temporary file by its writer (pid, thread), a serial and the host: unique."""
    return f"djbridge-{os.getpid()}-{threading.get_ident()}-{serial}@{_HOST}.part"


def _dead_writer(name: str) -> bool:
    """Whether ``name`` is a temporary file of a process on this host that no longer runs."""
    stem, at, host = name.removesuffix(".part").rpartition("@")
    fields = stem.split("-")
    if not (at and host == _HOST and name.endswith(".part") and len(fields) == 4):
        return False
    if fields[0] != "djbridge" or not fields[1].isdigit():
        return False
    pid = int(fields[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by another user
        return False
    return False


class FileStore:
    """A directory as an object store."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._root = str(self.root).rstrip("/") or "/"
        self.description = f"file:{self.root}"
        self.root_id = f"file:{os.path.realpath(self.root)}"
        self.concurrency = 4  # bound by this process and the disk: more threads contend
        # A small file's copy is a few system calls and Python holding the GIL: threads
        # only contend for it (2,000 objects of 1.5 KB: 0.2 s in one thread, 0.6 s in 4).
        self.inline_limit = 256 << 10
        self.read_buffer = self.write_buffer = CHUNK_SIZE
        # Directories known to exist (no mkdir per write), each with the directory its
        # temporary files go to: the staging directory, or itself on another filesystem.
        self._folders: dict[str, str] = {}
        self._temp_names = itertools.count()
        self._staging: tuple[str, int] | None = None  # path and device, once made

    @classmethod
    def open(cls, server: StorageServer, *, bucket: str = "", location: str = "") -> FileStore:
        """Open the directory ``location``; ``bucket`` must be empty for file stores."""
        if bucket:
            raise ConfigError(f"file storage server {server.name!r} takes no bucket")
        if not location:
            raise ConfigError(f"file storage server {server.name!r} needs a location directory")
        return cls(location)

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r})"

    def path(self, key: str) -> Path:
        """Return the filesystem path of ``key``, refusing keys that escape the root."""
        return Path(self._os_path(key))

    def _os_path(self, key: str) -> str:
        if (
            not key
            or key[0] == "/"
            or key[-1] == "/"
            or "//" in key
            or (("." in key) and any(p in (".", "..") for p in key.split("/")))
        ):
            raise StoreError(f"{self.description}: invalid object key {key!r}")
        return f"{self._root}/{key}"

    def round_trip(self) -> float:
        """Return 0.0: a directory answers without a network round trip.

        Raises
        ------
        StoreError
            If the store's directory does not exist.
        """
        if not self.root.is_dir():
            raise StoreError(f"{self.description}: store directory does not exist")
        return 0.0

    def iter_objects(
        self, prefix: str, *, start_after: str | None = None, end_at: str | None = None
    ) -> Iterator[ObjectInfo]:
        """Yield regular files whose key starts with ``prefix``, each directory in sorted order.

        Only one directory's entries are held at a time; DataJoint's fold
        directories keep those small.
        """
        if not self.root.is_dir():
            raise StoreError(f"{self.description}: store directory does not exist")
        head, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*head.split("/")) if head else self.root
        if not start.is_dir():
            return
        bounds = (start_after, end_at)
        yield from self._walk(str(start), head + "/" if head else "", prefix, bounds)

    def _walk(
        self, directory: str, rel: str, prefix: str, bounds: tuple[str | None, str | None]
    ) -> Iterator[ObjectInfo]:
        try:
            with os.scandir(directory) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as err:
            raise StoreError(f"{self.description}: cannot list {directory}: {err}") from err
        for entry in entries:
            key = rel + entry.name
            if key == STAGING:  # temporary files, never objects
                continue
            if entry.is_dir(follow_symlinks=False):
                inside = (key + "/").startswith(prefix) or prefix.startswith(key + "/")
                if inside and not prefix_outside(key + "/", *bounds):
                    yield from self._walk(entry.path, key + "/", prefix, bounds)
            elif (
                entry.is_file(follow_symlinks=False)
                and key.startswith(prefix)
                and in_bounds(key, *bounds)
            ):
                st = entry.stat(follow_symlinks=False)
                yield ObjectInfo(key, st.st_size, st.st_mtime)

    def stat(self, key: str) -> ObjectInfo:
        """Return the size and mtime of ``key``."""
        try:
            st = self.path(key).stat()
        except FileNotFoundError as err:
            raise ObjectNotFound(f"{self.description}: no object {key!r}") from err
        except OSError as err:
            raise StoreError(f"{self.description}: cannot stat {key!r}: {err}") from err
        return ObjectInfo(key, st.st_size, st.st_mtime)

    def get(self, key: str) -> bytes:
        """Return the bytes of ``key`` (small objects only: manifests, tests)."""
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError as err:
            raise ObjectNotFound(f"{self.description}: no object {key!r}") from err
        except OSError as err:
            raise StoreError(f"{self.description}: cannot read {key!r}: {err}") from err

    def open_read(self, key: str) -> ObjectStream:
        """Open ``key``; its chunks are read as they are consumed."""
        try:
            handle = open(self._os_path(key), "rb")  # noqa: SIM115 - closed by the stream
            size = os.fstat(handle.fileno()).st_size
        except FileNotFoundError as err:
            raise ObjectNotFound(f"{self.description}: no object {key!r}") from err
        except OSError as err:
            raise StoreError(f"{self.description}: cannot read {key!r}: {err}") from err

        def chunks() -> Iterator[bytes]:
            try:
                while chunk := handle.read(CHUNK_SIZE):
                    yield chunk
            except OSError as err:
                raise StoreError(f"{self.description}: cannot read {key!r}: {err}") from err

        return ObjectStream(size, chunks(), handle.close)

    def staging(self) -> str | None:
        """Return the staging directory, made (and swept of dead writers' files) on first use.

        None when it cannot be made (a root this account may not write to, say):
        temporary files then go beside their targets.
        """
        if self._staging is None:
            path = f"{self._root}/{STAGING}"
            try:
                os.makedirs(path, exist_ok=True)
                self._staging = (path, os.stat(path).st_dev)
            except OSError as err:
                log.info("%s: no staging directory (%s); temporary files go beside objects",
                         self.description, err)  # fmt: skip
                self._staging = ("", -1)
            else:
                self._sweep(path)
        return self._staging[0] or None

    def _sweep(self, path: str) -> None:
        """Remove the temporary files that writers on this host left when they died."""
        try:
            with os.scandir(path) as scan:
                names = [entry.name for entry in scan if _dead_writer(entry.name)]
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{path}/{name}")
        except OSError as err:  # never a reason to refuse a write
            log.info("%s: cannot sweep %s: %s", self.description, path, err)

    def _temp_folder(self, folder: str) -> str:
        """Make ``folder``; return where temporary files bound for it are written."""
        temp = self._folders.get(folder)
        if temp is None:
            staging = self.staging()
            os.makedirs(folder, exist_ok=True)
            assert self._staging is not None
            same = staging is not None and os.stat(folder).st_dev == self._staging[1]
            temp = self._folders[folder] = staging if staging and same else folder
        return temp

    def _temp_file(self, folder: str) -> tuple[int, str]:
        """Create a new, private temporary file for a target in ``folder``.

        Returns its descriptor and path. The name is unique to this process, thread
        and write (as ``mkstemp``'s is, at a fraction of its cost); ``O_EXCL`` still
        refuses to reuse a leftover name.
        """
        while True:
            temp = self._temp_folder(folder)
            tmp = f"{temp}/{_temp_name(next(self._temp_names))}"
            try:
                # 0644 less the umask, as open() gives a new file: the object's own mode.
                return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), tmp
            except FileExistsError:
                continue
            except FileNotFoundError:  # a directory was removed since we made it
                self._folders.pop(folder, None)
                self._staging = None

    def _write_atomically(self, key: str, source: bytes | ChunkReader) -> None:
        target = self._os_path(key)
        try:
            folder = os.path.dirname(target)
            fd, tmp = self._temp_file(folder)
            try:
                with os.fdopen(fd, "wb") as out:
                    if isinstance(source, bytes):
                        out.write(source)
                    else:
                        while chunk := source.read(CHUNK_SIZE):
                            out.write(chunk)
                try:
                    os.replace(tmp, target)
                except FileNotFoundError:  # the target's folder was removed meanwhile
                    self._folders.pop(folder, None)
                    self._temp_folder(folder)
                    os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as err:
            raise StoreError(f"{self.description}: cannot write {key!r}: {err}") from err

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` to ``key`` atomically (temporary name, then rename)."""
        self._write_atomically(key, data)

    def put_stream(self, key: str, reader: ChunkReader) -> None:
        """Write what ``reader`` yields to a temporary file, then rename it to ``key``."""
        self._write_atomically(key, reader)

    def can_copy_from(self, source: Store) -> bool:
        """Never: every copy into a directory passes through this process, checked."""
        return False

    def copy(
        self,
        source: Store,
        source_key: str,
        key: str,
        *,
        md5: bytes | None = None,
    ) -> int:
        """Stream ``source_key`` of ``source`` into ``key``, a chunk at a time."""
        return stream_copy(source, source_key, self, key)

    def delete_many(self, keys: Iterable[str]) -> list[DeleteFailure]:
        """Unlink each key; a missing file counts as deleted."""
        failures = []
        for key in keys:
            try:
                os.unlink(self._os_path(key))
            except FileNotFoundError:
                pass
            except (OSError, StoreError) as err:
                failures.append(DeleteFailure(key, str(err)))
        return failures

    def move_many(self, pairs: Iterable[tuple[str, str]]) -> list[DeleteFailure]:
        """Rename each ``(key, new_key)``: a hard link (never onto a target), then an unlink."""
        failures = []
        for key, new_key in pairs:
            try:
                source, target = self._os_path(key), self._os_path(new_key)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.link(source, target, follow_symlinks=False)
                os.unlink(source)
            except FileExistsError:
                failures.append(DeleteFailure(key, f"{new_key} exists; nothing was replaced"))
            except FileNotFoundError:
                failures.append(DeleteFailure(key, "no such object"))
            except (OSError, StoreError) as err:
                failures.append(DeleteFailure(key, str(err)))
        return failures
