"""Move a batch of rows, and the external objects they reference, into the local server.

:func:`add_to_local` is the link's one local write of a pull. For a batch of keys
it reads the master and part rows from the source with their raw column values
(blobs are never decoded), copies the objects those rows reference into the
destination stores, verifies each copy, and only then inserts the ``~external``
rows, the master rows and the part rows in one local transaction.

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

A batch holds at most ``batch_bytes`` of row data, except a single key whose rows
alone are larger. For such a key only the part tables' reference columns are read
first; once its objects are copied, its part rows stream from the source into the
local transaction, a statement of ``batch_bytes`` at a time, so no number of part
rows is ever held in memory at once.

    from djbridge.link.transfer import add_to_local
    added = add_to_local(linked, keys, pool)   # None: rows appeared concurrently
    added.rows, added.objects, added.bytes
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from djbridge.errors import DatabaseError, IntegrityError, LinkError, SourceMismatch, StoreError
from djbridge.layout import dj2_hash_key, object_key, tracking_table
from djbridge.mysql import CHUNK_SIZE, chunks, placeholders, quote
from djbridge.progress import human_bytes
from djbridge.stores import CHUNK_SIZE as STREAM_CHUNK
from djbridge.stores import Store, stream_copy

if TYPE_CHECKING:
    from djbridge.link.mirror import SourceTable
    from djbridge.link.sync import Linked
    from djbridge.sqldialect import Connection

log = logging.getLogger(__name__)

Key = tuple[Any, ...]


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

    def header(self, row: ExternalRow) -> bytes:
        """Return the bytes stored before the object's contents: none in DataJoint 0.14."""
        return b""


@dataclass(frozen=True)
class Dj2Placement:
    """Where a DataJoint 2.x store keeps one schema's hash-addressed objects.

    The other layout behind the copy engine's one interface (``key``, ``header``): a
    blob or attachment goes to ``{hash_prefix}/{schema}/[folds/]{base32 of its MD5}``,
    an attachment stored as its name, a NUL byte and its contents; a filepath file keeps
    its relative path. Either way the MD5 of the bytes written is the hash 0.14 recorded.
    """

    store: Store
    schema: str
    subfolding: tuple[int, ...] = ()
    hash_prefix: str = "_hash"
    filepath: bool = False  # the placement of a filepath@ column's files

    def key(self, row: ExternalRow) -> str:
        """Return the object key of ``row`` in this placement (DataJoint 2.x layout)."""
        if self.filepath:  # a 0.11-era blob's row has a filepath too, but is hashed
            return str(row.filepath)
        return dj2_hash_key(self.schema, dj2_hash(row), self.subfolding, self.hash_prefix)

    def header(self, row: ExternalRow) -> bytes:
        """Return an attachment's name and a NUL byte; nothing for any other object."""
        return row.attachment_name.encode() + b"\0" if row.attachment_name else b""


AnyPlacement = Placement | Dj2Placement
"""A copy's destination: the 0.14 layout (a link) or the 2.x layout (a migration)."""


def dj2_hash(row: ExternalRow) -> str:
    """Return the 2.x content hash of ``row``'s object: base32 of the MD5 0.14 recorded."""
    digest = row.expected_digest() or row.hash
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower()


@dataclass(frozen=True)
class ExternalRow:
    """One ``~external_<store>`` row, raw, as DataJoint stores it."""

    hash: bytes
    size: int
    attachment_name: str | None
    filepath: str | None
    contents_hash: bytes | None

    def new_digest(self) -> Any:
        """Return an MD5 primed as DataJoint primes it: for an attachment, name and NUL first."""
        digest = hashlib.md5()
        if self.attachment_name:
            digest.update(self.attachment_name.encode() + b"\0")
        return digest

    def expected_digest(self) -> bytes | None:
        """Return the MD5 the row records for its object, or None when it records none."""
        if self.filepath and not self.attachment_name:
            return self.contents_hash
        return self.hash

    def copy(self, src: Placement, dst: AnyPlacement) -> Copy:
        """Return the copy of this row's object from ``src`` to ``dst``, with its checks."""
        return Copy(
            src.store, src.key(self), dst.store, dst.key(self), self.size,
            md5=self.expected_digest(), header=dst.header(self),
            prime=self.attachment_name.encode() + b"\0" if self.attachment_name else b"",
        )  # fmt: skip

    def checksum_ok(self, data: bytes) -> bool:
        """Check ``data`` against the checksum DataJoint recorded for this row."""
        digest = self.new_digest()
        digest.update(data)
        expected = self.expected_digest()
        return expected is None or digest.digest() == expected


class ByteBudget:
    """Bounds the bytes that copies in flight may buffer at once, across threads.

    A copy holds its cost (what its backends buffer, at most its size) while it
    runs; a copy that would exceed the budget waits for others to finish. One copy
    larger than the whole budget still runs, alone.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, cost: int) -> Iterator[None]:
        """Hold ``cost`` bytes of the budget for the duration of the ``with`` block."""
        cost = min(cost, self.limit)
        with self._cond:
            self._cond.wait_for(lambda: self.used + cost <= self.limit)
            self.used += cost
        try:
            yield
        finally:
            with self._cond:
                self.used -= cost
                self._cond.notify_all()


class BackgroundDigest:
    """An MD5 that hashes each chunk on a thread of its own while the copy goes on.

    hashlib releases the GIL on large buffers, so hashing a chunk overlaps with
    reading the next one and writing this one: a verified copy then costs about
    its slowest stage rather than the sum of all three. At most two chunks wait.
    """

    def __init__(self, digest: Any) -> None:
        self._digest = digest
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._run, name="djbridge-md5", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._digest.update(chunk)

    def update(self, chunk: bytes) -> None:
        """Queue ``chunk`` for hashing."""
        self._queue.put(chunk)

    def digest(self) -> bytes:
        """Wait for every queued chunk to be hashed; return the digest."""
        self.close()
        return bytes(self._digest.digest())

    def close(self) -> None:
        """Stop the hashing thread (safe to call twice)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class InlineDigest:
    """An MD5 hashed in the copying thread: for objects of a chunk or two."""

    def __init__(self, digest: Any) -> None:
        self._digest = digest
        self.update = digest.update

    def digest(self) -> bytes:
        """Return the digest of everything hashed so far."""
        return bytes(self._digest.digest())

    def close(self) -> None:
        """Nothing to stop."""


COPY_BUDGET = 64 << 20
"""Bytes all copies of one pull may buffer at once (chunks and upload parts)."""


@dataclass(frozen=True)
class Copy:
    """One object to copy between two stores, and what the copy must turn out to be.

    Both DataJoint generations describe their objects this way: 0.14 from an
    ``~external`` row (:meth:`ExternalRow.copy`), 2.x from a column's JSON
    (:mod:`djbridge.link.jsonrefs`). ``md5`` is checked over ``prime`` followed by the
    source's bytes (0.14 hashes an attachment's name and a NUL before its contents);
    ``header`` is written before the bytes at the destination (2.x stores that name
    and NUL in the object itself). An unknown ``size`` is not checked.
    """

    src: Store
    src_key: str
    dst: Store
    dst_key: str
    size: int | None
    md5: bytes | None = None
    prime: bytes = b""
    header: bytes = b""
    record: str = "~external records"  # what the expected size and checksum come from

    def new_digest(self) -> Any:
        """Return an MD5 primed with ``prime``."""
        digest = hashlib.md5()
        digest.update(self.prime)
        return digest


def copy_one(copy: Copy, on_bytes: Callable[[int], None]) -> int:
    """Copy and verify one object; return its size. ``on_bytes`` sees progress as it streams.

    A copy through this process streams in chunks (or, when small, is read whole),
    computes the size and the MD5 while the bytes pass, and vetoes the write before
    it becomes visible when either differs from the record. A server-side copy is
    checked by its size, and on S3 by the source's ETag: when the record gives the
    contents' MD5, the copy happens only if the source's ETag is that MD5, and an
    object that does not pass (one uploaded in parts, or a wrong one) is copied
    through this process instead, checked.

    Raises
    ------
    IntegrityError
        If the copy's size or checksum does not match the record.
    StoreError
        If either store fails.
    """
    if copy.dst.can_copy_from(copy.src) and not copy.header:
        # An MD5 of the contents alone (no prefix hashed first) lets S3 check the source.
        md5 = copy.md5 if not copy.prime else None
        try:
            size = copy.dst.copy(copy.src, copy.src_key, copy.dst_key, md5=md5)
        except SourceMismatch as err:
            log.info("%s; copying it through this process, checked", err)
        else:
            on_bytes(size)
            return checked_size(copy, size)
    small = min(copy.src.inline_limit, copy.dst.inline_limit)
    if copy.size is not None and copy.size <= small:
        return checked_size(copy, copy_small(copy, on_bytes))
    return checked_size(copy, copy_streamed(copy, on_bytes))


def checked_size(copy: Copy, size: int) -> int:
    """Return ``size`` if it is what the record says (or the record says nothing)."""
    if copy.size is not None and size != copy.size:
        raise IntegrityError(
            f"{copy.dst.description}/{copy.dst_key}: copied {size} bytes, {copy.record} {copy.size}"
        )
    return size


def copy_small(copy: Copy, on_bytes: Callable[[int], None]) -> int:
    """Copy a small object whole: read it (at most the inline limit), check it, write it.

    Both stores copy it fastest in the calling thread, with no stream machinery per chunk.
    """
    where = f"{copy.src.description}/{copy.src_key}"
    stream = copy.src.open_read(copy.src_key)
    try:  # the size is known before a byte is read: a larger object is never held
        if stream.size not in (None, copy.size):
            raise IntegrityError(f"{where}: {stream.size} bytes, {copy.record} {copy.size}")
        data = b"".join(stream.chunks)
    finally:
        stream.close()
    digest = copy.new_digest()
    digest.update(data)
    if len(data) != copy.size:
        raise IntegrityError(f"{where}: {len(data)} bytes, {copy.record} {copy.size}")
    if copy.md5 is not None and digest.digest() != copy.md5:
        raise IntegrityError(f"{where}: checksum does not match what {copy.record}")
    copy.dst.put(copy.dst_key, copy.header + data)
    on_bytes(len(data))
    return len(data)


def copy_streamed(copy: Copy, on_bytes: Callable[[int], None]) -> int:
    """Stream an object through this process in chunks, checked before it becomes visible."""
    where = f"{copy.src.description}/{copy.src_key}"
    # A thread of its own pays off only when there are chunks to overlap.
    big = copy.size is None or copy.size > 2 * STREAM_CHUNK
    digest = BackgroundDigest(copy.new_digest()) if big else InlineDigest(copy.new_digest())

    def observe(chunk: bytes) -> None:
        digest.update(chunk)
        on_bytes(len(chunk))

    def finish(total: int) -> None:
        if copy.size is not None and total != copy.size:
            raise IntegrityError(f"{where}: {total} bytes, {copy.record} {copy.size}")
        if copy.md5 is not None and digest.digest() != copy.md5:
            raise IntegrityError(f"{where}: checksum does not match what {copy.record}")

    try:
        return stream_copy(copy.src, copy.src_key, copy.dst, copy.dst_key,
                           observe=observe, finish=finish, header=copy.header)  # fmt: skip
    except IntegrityError as err:
        raise IntegrityError(f"{where}: {err}" if where not in str(err) else str(err)) from err
    finally:
        digest.close()


def pool_size(pairs: Sequence[tuple[Any, Any]]) -> int:
    """Return how many copies to run at once: what the slowest-to-saturate store suits.

    ``pairs`` holds (source, destination) placements or stores. Directories are
    bound by this process (the GIL and the disk), so extra threads only contend;
    S3 copies wait on the endpoint, so more of them help.
    """
    stores = [getattr(p, "store", p) for pair in pairs for p in pair]
    return max(s.concurrency for s in stores) if stores else 1


def copy_all(
    copies: Sequence[Copy],
    pool: Executor,
    on_bytes: Callable[[int], None] = lambda n: None,
    budget: ByteBudget | None = None,
) -> int:
    """Copy ``copies`` concurrently, within a byte budget; return the bytes copied.

    Objects both stores would rather copy inline (``inline_limit``: small files)
    are copied one after another in this thread while the pool copies the rest.
    All copies are awaited even when one fails, so no copy is still running when
    the caller rolls back; the first error is then raised.
    """
    budget = budget or ByteBudget(COPY_BUDGET)

    def through(c: Copy) -> bool:
        return bool(c.header) or not c.dst.can_copy_from(c.src)

    def inline(c: Copy) -> bool:
        limit = min(c.src.inline_limit, c.dst.inline_limit) if through(c) else 0
        return c.size is not None and c.size <= limit

    def run(c: Copy) -> int:
        buffer = c.src.read_buffer + c.dst.write_buffer if through(c) else 0
        with budget.hold(min(buffer if c.size is None else c.size, buffer)):
            return copy_one(c, on_bytes)

    futures = [pool.submit(run, c) for c in copies if not inline(c)]
    total, first_error = 0, None
    for c in copies:
        if inline(c) and first_error is None:
            try:
                total += copy_one(c, on_bytes)
            except (StoreError, IntegrityError) as err:
                first_error = err
    for future in futures:
        try:
            total += future.result()
        except (StoreError, IntegrityError) as err:
            first_error = first_error or err
    if first_error is not None:
        raise first_error
    return total


def copy_objects(
    rows: Sequence[ExternalRow],
    src: Placement,
    dst: AnyPlacement,
    pool: Executor,
    on_bytes: Callable[[int], None] = lambda n: None,
    budget: ByteBudget | None = None,
) -> int:
    """Copy the objects of 0.14 ``~external`` ``rows`` from ``src`` to ``dst``."""
    return copy_all([row.copy(src, dst) for row in rows], pool, on_bytes, budget)


@dataclass(frozen=True)
class RowSize:
    """The bytes one master key's rows hold: in all, and in its largest single row."""

    total: int
    largest: int
    table: str  # the table of the largest row


def row_sizes(linked: Linked, keys: Sequence[Key]) -> dict[Key, RowSize]:
    """Return the row data per key (master plus parts), measured by the source server.

    One grouped query per table per chunk of keys: the server adds up
    ``LENGTH()`` of every column, so no row is read to size it.
    """
    cols = linked.key_columns
    sql_ = linked.source_db.dialect
    names = ", ".join(sql_.quote(c) for c in cols)
    sizes: dict[Key, RowSize] = {}
    for table in [linked.master, *linked.parts.values()]:
        length = " + ".join(f"COALESCE({sql_.size_of(c.name)}, 0)" for c in table.columns)
        for chunk in chunks(keys, CHUNK_SIZE):
            where, params = sql_.key_filter(cols, chunk)
            sql = (
                f"SELECT {names}, SUM({length}), MAX({length}) FROM "
                f"{sql_.quote(table.schema, table.name)} WHERE {where} GROUP BY {names}"
            )
            for row in linked.source_db.query(sql, params):
                key, total, largest = tuple(row[: len(cols)]), int(row[-2]), int(row[-1])
                have = sizes.get(key, RowSize(0, 0, table.name))
                big = (
                    (largest, table.name) if largest > have.largest else (have.largest, have.table)
                )
                sizes[key] = RowSize(have.total + total, *big)
    return sizes


@dataclass(frozen=True)
class LocalParent:
    """A foreign key the local table keeps: to a parent the lab linked into the local schema.

    ``table`` is the source table (master or part) holding the key's columns,
    ``parent`` the quoted local parent table, ``columns`` each column with the parent
    column it names.
    """

    table: SourceTable
    parent: str
    columns: Mapping[str, str]


def kept_parents(
    local_db: Connection, schema: str, tables: Sequence[tuple[SourceTable, str]]
) -> list[LocalParent]:
    """Return the foreign keys the local tables keep to other tables of the local schema.

    ``tables`` pairs each source table (master, parts) with its local table's name.
    A key from a part to its master is not one: the master row arrives with it.
    """
    own = {name for _, name in tables}
    q = local_db.dialect
    found = []
    for table, name in tables:
        for key in q.foreign_keys(local_db, schema, name):
            if key.schema == schema and key.table not in own and not key.table.startswith("~"):
                found.append(LocalParent(table, q.quote(schema, key.table), key.columns))
    return found


def _exact(value: tuple[Any, ...]) -> tuple[Any, ...]:
    return value


def _loose(value: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v.rstrip(" ").casefold() if isinstance(v, str) else v for v in value)


def missing_parents(linked: Linked, keys: Sequence[Key]) -> dict[Key, str]:
    """Return the keys whose rows reference a parent row the local side lacks, with why.

    Such a row cannot be inserted locally (its foreign key would fail the whole
    batch), so it waits until the parent is pulled into the local table. Per kept
    foreign key and chunk of keys, one query reads the source rows' parent columns
    (streamed, a thousand at a time) and one per thousand asks the local parent
    which of those exist.
    """
    cols = linked.key_columns
    src, dst = linked.source_db.dialect, linked.local_db.dialect
    width = len(cols)
    # MySQL's usual collations compare text without case and trailing spaces: so does this.
    loose = _loose if dst.name == "mysql" else _exact
    found: dict[Key, str] = {}
    for link in linked.local_parents:
        fk, referenced = list(link.columns), list(link.columns.values())
        select = ", ".join(src.quote(c) for c in [*cols, *fk])
        table = src.quote(link.table.schema, link.table.name)
        not_null = " AND ".join(f"{src.quote(c)} IS NOT NULL" for c in fk)
        parent_cols = ", ".join(dst.quote(c) for c in referenced)
        for chunk in chunks(keys, CHUNK_SIZE):
            where, params = src.key_filter(cols, chunk)
            rows = iter(
                linked.source_db.stream(
                    f"SELECT DISTINCT {select} FROM {table} WHERE {where} AND {not_null}",
                    params,
                )
            )
            while group := list(itertools.islice(rows, CHUNK_SIZE)):
                values = sorted({tuple(r[width:]) for r in group})
                where_p, params_p = dst.key_filter(referenced, values)
                sql = f"SELECT {parent_cols} FROM {link.parent} WHERE {where_p}"
                present = {loose(tuple(r)) for r in linked.local_db.query(sql, params_p)}
                for row in group:
                    value = tuple(row[width:])
                    if loose(value) not in present:
                        key = tuple(row[:width])
                        found.setdefault(key, (
                            f"row {dict(zip(cols, key, strict=True))} of {link.table.name} "
                            f"references {dict(zip(referenced, value, strict=True))}, "
                            f"which is not in the local table {link.parent}; pull that parent "
                            "row into it first"
                        ))  # fmt: skip
    return found


def plan_batches(
    keys: Sequence[Key], sizes: Mapping[Key, RowSize], max_rows: int, max_bytes: int
) -> list[list[Key]]:
    """Cut ``keys``, in order, into batches of at most ``max_rows`` keys and ``max_bytes``.

    A batch always takes at least one key, so a key larger than ``max_bytes`` goes
    alone. Keys without a size (gone from the source) weigh nothing.
    """
    batches: list[list[Key]] = []
    batch: list[Key] = []
    weight = 0
    for key in keys:
        size = sizes[key].total if key in sizes else 0
        if batch and (len(batch) >= max_rows or weight + size > max_bytes):
            batches.append(batch)
            batch, weight = [], 0
        batch.append(key)
        weight += size
    if batch:
        batches.append(batch)
    return batches


@dataclass(frozen=True)
class Added:
    """What one :func:`add_to_local` committed."""

    rows: int
    part_rows: int
    objects: int
    bytes: int


Fetched = list[tuple["SourceTable", list[tuple[Any, ...]]]]


class References(Protocol):
    """Where a DataJoint generation keeps a row's external references, and how they move.

    The engine reads a batch's rows raw and asks this interface four things: which
    objects the rows need (:meth:`collect`, or :meth:`collect_streamed` for part rows
    that stream later), to copy and verify them (:meth:`copy`), to write whatever
    tracks them inside the local transaction (:meth:`write_tracking`), and how a
    source row reads on the local side (:meth:`local_rows`). DataJoint 0.14 keeps
    references in ``~external_<store>`` rows (:class:`TrackedReferences`); 2.x in the
    JSON of the column itself (:class:`djbridge.link.jsonrefs.JsonReferences`).
    """

    def preflight(self, linked: Linked, keys: Sequence[Key]) -> None:
        """Refuse, before a pull writes anything, source rows the local side cannot hold.

        Raises
        ------
        LinkError
            Naming the table, the column and the first keys.
        """

    def collect(self, linked: Linked, fetched: Fetched) -> Any:
        """Return what the ``fetched`` rows reference, to be copied."""

    def collect_streamed(
        self, linked: Linked, table: SourceTable, keys: Sequence[Key], pending: Any
    ) -> None:
        """Add to ``pending`` what ``table``'s rows of ``keys`` reference, reading only that."""

    def copy(
        self, linked: Linked, pending: Any, pool: Executor, on_bytes: Callable[[int], None]
    ) -> tuple[int, int, Any]:
        """Copy and verify the objects of ``pending``; return (objects, bytes, tracking)."""

    def write_tracking(self, linked: Linked, db: Any, tracking: Any) -> None:
        """Record the copied objects inside the local transaction ``db``."""

    def local_rows(
        self, linked: Linked, table: SourceTable, rows: Sequence[tuple[Any, ...]], pending: Any
    ) -> list[tuple[Any, ...]]:
        """Return ``rows`` as the local table stores them.

        Raises
        ------
        LinkError
            If a row references an object outside ``pending`` (it changed on the source
            since its objects were copied).
        """


def select_rows(linked: Linked, table: SourceTable, keys: Sequence[Key]) -> tuple[str, list[Any]]:
    """Return the source query (and its parameters) of ``table``'s rows of ``keys``, raw."""
    sql = linked.source_db.dialect
    where, params = sql.key_filter(linked.key_columns, keys)
    names = ", ".join(sql.quote(c.name) for c in table.columns)
    return f"SELECT {names} FROM {sql.quote(table.schema, table.name)} WHERE {where}", params


def insert_rows(linked: Linked, table: SourceTable) -> str:
    """Return the local multi-row INSERT of ``table``'s rows, columns in table order."""
    sql = linked.local_db.dialect
    names = ", ".join(sql.quote(c.name) for c in table.columns)
    holes = placeholders(len(table.columns))
    return f"INSERT INTO {local_target(linked, table)} ({names}) VALUES ({holes})"


def fetch_rows(linked: Linked, table: SourceTable, keys: Sequence[Key]) -> list[tuple[Any, ...]]:
    """Read ``table``'s rows of ``keys`` from the source, raw column values in table order."""
    return linked.source_db.query(*select_rows(linked, table, keys))


def reference_columns(table: SourceTable) -> list[tuple[int, str]]:
    """Return ``(position, store)`` of each external column of ``table``."""
    return [(i, c.store) for i, c in enumerate(table.columns) if c.store is not None]


def stream_references(
    linked: Linked, table: SourceTable, keys: Sequence[Key]
) -> Iterator[tuple[Any, ...]]:
    """Yield the external columns of ``table``'s rows of ``keys``, nothing else of the rows."""
    refs = reference_columns(table)
    if not refs:
        return
    sql = linked.source_db.dialect
    where, params = sql.key_filter(linked.key_columns, keys)
    names = ", ".join(sql.quote(table.columns[i].name) for i, _ in refs)
    yield from linked.source_db.stream(
        f"SELECT {names} FROM {sql.quote(table.schema, table.name)} WHERE {where}", params
    )


class TrackedReferences:
    """DataJoint 0.14: a column holds a hash; ``~external_<store>`` rows describe the objects.

    ``pending`` is ``{source store: {hash, ...}}``; ``tracking`` the ``~external`` rows
    to insert locally, per destination store.
    """

    def preflight(self, linked: Linked, keys: Sequence[Key]) -> None:
        """Refuse nothing: MySQL and MariaDB hold each other's 0.14 values.

        Their collations are adapted when the link is declared.
        """

    def collect(self, linked: Linked, fetched: Fetched) -> dict[str, set[bytes]]:
        """Return, per source store, the hashes the fetched rows' external columns hold."""
        wanted: dict[str, set[bytes]] = defaultdict(set)
        for table, rows in fetched:
            for index, store in reference_columns(table):
                wanted[store].update(r[index] for r in rows if r[index] is not None)
        return wanted

    def collect_streamed(self, linked: Linked, table: SourceTable, keys: Sequence[Key],
                         pending: dict[str, set[bytes]]) -> None:  # fmt: skip
        """Add the hashes of ``table``'s rows of ``keys``, reading only their reference columns."""
        stores = [store for _, store in reference_columns(table)]
        for row in stream_references(linked, table, keys):
            for value, store in zip(row, stores, strict=True):
                if value is not None:
                    pending[store].add(value)

    def copy(self, linked: Linked, pending: dict[str, set[bytes]], pool: Executor,
             on_bytes: Callable[[int], None]) -> tuple[int, int, Any]:  # fmt: skip
        """Copy the objects the local ``~external`` tables do not track yet."""
        tracking: list[tuple[str, list[ExternalRow]]] = []
        copied_bytes = copied = 0
        for store, hashes in pending.items():
            src, dst, dst_name = linked.placements[store]
            rows = tracking_rows(linked, store, hashes)
            have = already_local(linked, dst_name, rows)
            todo = [r for r in rows if r.hash not in have]
            copied_bytes += copy_objects(todo, src, dst, pool, on_bytes)
            copied += len(todo)
            tracking.append((dst_name, rows))
        return copied, copied_bytes, tracking

    def write_tracking(self, linked: Linked, db: Any,
                       tracking: list[tuple[str, list[ExternalRow]]]) -> None:  # fmt: skip
        """Insert (or touch) the ``~external`` rows of the copied objects."""
        for dst_name, rows in tracking:
            db.executemany(
                f"INSERT INTO {quote(linked.local_schema, tracking_table(dst_name))} "
                "(hash, size, attachment_name, filepath, contents_hash) "
                "VALUES (%s, %s, %s, %s, %s) "
                "ON DUPLICATE KEY UPDATE timestamp=CURRENT_TIMESTAMP",
                [(r.hash, r.size, r.attachment_name, r.filepath, r.contents_hash) for r in rows],
            )

    def local_rows(self, linked: Linked, table: SourceTable, rows: Sequence[tuple[Any, ...]],
                   pending: dict[str, set[bytes]]) -> list[tuple[Any, ...]]:  # fmt: skip
        """Return ``rows`` unchanged: a 0.14 row keeps its hashes and raw values."""
        for row in rows:
            for index, store in reference_columns(table):
                if row[index] is not None and row[index] not in pending.get(store, ()):
                    raise changed_on_source(table)
        return list(rows)


def changed_on_source(table: SourceTable) -> LinkError:
    """Return the error of a row that references an object its pull did not copy."""
    return LinkError(
        f"{table.name}: a row changed on the source during the pull (it now references an "
        "object that was not copied); nothing was committed, pull again"
    )


def row_bytes(row: Sequence[Any]) -> int:
    """Return about how many bytes ``row`` carries (its strings and bytes; 8 per other value)."""
    return sum(len(v) if isinstance(v, bytes | bytearray | str) else 8 for v in row)


def stream_rows(linked: Linked, db: Any, table: SourceTable, keys: Sequence[Key],
                pending: Any) -> int:  # fmt: skip
    """Stream ``table``'s rows of ``keys`` from the source into its local table; return the count.

    Rows are read one at a time (an unbuffered cursor) and inserted in multi-row
    statements of about ``linked.batch_bytes`` each, inside the caller's
    transaction ``db``, so memory holds one statement's rows however many part
    rows a key has. A row that references an object outside ``pending`` changed on
    the source after its objects were copied: the pull of this key fails, and the
    caller's rollback leaves nothing committed.
    """
    insert = insert_rows(linked, table)
    rows: list[tuple[Any, ...]] = []
    weight = total = 0
    sql, params = select_rows(linked, table, keys)
    for row in linked.source_db.stream(sql, params, size=1):
        rows.append(row)
        weight += row_bytes(row)
        if weight >= linked.batch_bytes:
            total += db.executemany(insert, linked.references.local_rows(linked, table, rows,
                                                                         pending))  # fmt: skip
            rows, weight = [], 0
    return total + int(db.executemany(insert, linked.references.local_rows(linked, table, rows,
                                                                        pending)))  # fmt: skip


def tracking_rows(linked: Linked, store: str, hashes: set[bytes]) -> list[ExternalRow]:
    """Read the source ``~external_<store>`` rows of ``hashes``; all must exist."""
    table = quote(linked.master.schema, tracking_table(store))
    out: list[ExternalRow] = []
    for chunk in chunks(sorted(hashes), CHUNK_SIZE):
        sql = (
            "SELECT hash, size, attachment_name, filepath, contents_hash FROM "
            f"{table} WHERE hash IN ({placeholders(len(chunk))})"
        )
        out.extend(ExternalRow(*r) for r in linked.source_db.query(sql, list(chunk)))
    missing = len(hashes) - len(out)
    if missing:
        raise LinkError(f"{missing} external values have no row in {table} on the source")
    return out


def already_local(linked: Linked, dst_store: str, rows: list[ExternalRow]) -> set[bytes]:
    """Return the hashes of ``rows`` the local ``~external_<dst_store>`` already tracks."""
    table = quote(linked.local_schema, tracking_table(dst_store))
    have: set[bytes] = set()
    for chunk in chunks(rows, CHUNK_SIZE):
        sql = f"SELECT hash FROM {table} WHERE hash IN ({placeholders(len(chunk))})"
        have.update(r[0] for r in linked.local_db.query(sql, [r.hash for r in chunk]))
    return have


def local_target(linked: Linked, table: SourceTable) -> str:
    """Return the quoted local table that mirrors source ``table``."""
    if table is linked.master:
        return linked.local_master
    return linked.local_parts[table.name[len(linked.master.name) + 2 :]]


def commit_rows(linked: Linked, tracking: Any, fetched: Fetched,
                streamed: Sequence[tuple[SourceTable, Sequence[Key]]] = (),
                pending: Any = None) -> int:  # fmt: skip
    """Insert tracking, master and part rows in one local transaction.

    ``streamed`` part tables are read from the source during the transaction
    (:func:`stream_rows`); the number of their rows is returned.
    """
    refs = linked.references
    with linked.local_db.transaction() as db:
        refs.write_tracking(linked, db, tracking)
        for table, values in fetched:
            db.executemany(insert_rows(linked, table),
                           refs.local_rows(linked, table, values, pending))  # fmt: skip
        return sum(int(stream_rows(linked, db, table, keys, pending)) for table, keys in streamed)


def add_to_local(
    linked: Linked,
    keys: Sequence[Key],
    pool: Executor,
    on_bytes: Callable[[int], None] = lambda n: None,
    *,
    stream_parts: bool = False,
) -> Added | None:
    """Copy the keys' objects, then commit their tracking, master and part rows locally.

    With ``stream_parts`` (a key whose part rows alone exceed the byte budget),
    only the parts' reference columns are read up front; their rows stream from
    the source into the local transaction in statements of ``batch_bytes``.

    Returns None, having committed nothing, when some of the rows appeared in the
    local table concurrently (another process pulled them): the caller re-reads.

    Raises
    ------
    IntegrityError, StoreError, LinkError
        If an object cannot be copied or verified; nothing is committed then.
    """
    refs = linked.references
    fetched: Fetched = [(linked.master, fetch_rows(linked, linked.master, keys))]
    streamed = [(part, keys) for part in linked.parts.values()] if stream_parts else []
    if not stream_parts:
        fetched += [(part, fetch_rows(linked, part, keys)) for part in linked.parts.values()]
    pending = refs.collect(linked, fetched)
    for part, _ in streamed:
        refs.collect_streamed(linked, part, keys, pending)
    copied, copied_bytes, tracking = refs.copy(linked, pending, pool, on_bytes)
    try:
        streamed_rows = commit_rows(linked, tracking, fetched, streamed, pending)
    except DatabaseError as err:
        if linked.local_db.dialect.is_duplicate(err):
            log.warning("add to local: %d rows appeared concurrently; re-reading", len(keys))
            return None
        raise
    part_rows = sum(len(v) for _, v in fetched[1:]) + streamed_rows
    added = Added(len(fetched[0][1]), part_rows, copied, copied_bytes)
    log.info(
        "add to local: %d rows, %d part rows, %d objects (%s) committed to %s",
        added.rows, added.part_rows, copied, human_bytes(copied_bytes), linked.local_master,
    )  # fmt: skip
    return added
