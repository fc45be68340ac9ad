"""``ChunkReader``: the file-like view every streaming write reads from, and its veto.

A backend's ``put_stream`` calls ``reader.read(n)`` until it returns ``b""`` (the
file store) or until it has the announced length (minio's ``put_object``). The
reader must therefore check the stream *while the last bytes are read*: the call
that consumes the final byte runs ``finish`` (the link's size and MD5 check) and
raises before it returns those bytes, so no backend ever holds a complete object
that failed its check. A stream shorter or longer than it announced is an
:class:`~djbridge.errors.IntegrityError` too.

    reader = ChunkReader(ObjectStream(size, iter(chunks)), observe=md5.update, finish=check)
    while part := reader.read(1 << 20):
        ...
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from djbridge.errors import IntegrityError
from djbridge.stores import ChunkReader, ObjectStream

CHUNKS = [b"a" * 5, b"b" * 5, b"c" * 3]
DATA = b"".join(CHUNKS)


def stream(chunks: list[bytes], size: int | None = None) -> ObjectStream:
    return ObjectStream(len(b"".join(chunks)) if size is None else size, iter(chunks))


def drain(reader: ChunkReader, n: int) -> list[bytes]:
    out = []
    while part := reader.read(n):
        out.append(part)
    return out


@pytest.mark.parametrize("n", [1, 2, 4, 5, 6, 13, 100])
def test_read_n_returns_n_bytes_until_the_tail(n: int) -> None:
    parts = drain(ChunkReader(stream(CHUNKS)), n)
    assert b"".join(parts) == DATA
    assert all(len(p) == n for p in parts[:-1])
    assert 0 < len(parts[-1]) <= n


def test_read_all_and_then_end_of_stream() -> None:
    reader = ChunkReader(stream(CHUNKS))
    assert reader.read() == DATA
    assert reader.read() == b""
    assert reader.read(4) == b""
    assert reader.total == len(DATA)


def test_observe_sees_every_chunk_once_in_order_and_finish_sees_the_total() -> None:
    seen: list[bytes] = []
    finished: list[int] = []
    reader = ChunkReader(stream(CHUNKS), observe=seen.append, finish=finished.append)
    drain(reader, 4)
    assert seen == CHUNKS
    assert finished == [len(DATA)]


def test_a_veto_comes_with_the_last_byte_before_a_backend_receives_it() -> None:
    received = bytearray()
    visible: dict[str, bytes] = {}
    digest = hashlib.md5()

    def backend(reader: ChunkReader) -> None:
        """Reads up to the announced length, then makes the object visible."""
        while len(received) < reader.size and (part := reader.read(reader.size)):
            received.extend(part)
        visible["key"] = bytes(received)

    def finish(total: int) -> None:
        raise IntegrityError(f"checksum mismatch after {total} bytes")

    reader = ChunkReader(stream(CHUNKS), observe=digest.update, finish=finish)
    with pytest.raises(IntegrityError, match="after 13 bytes"):
        backend(reader)
    assert not visible
    assert len(received) < len(DATA), "the backend had the whole object before the veto"
    assert digest.digest() == hashlib.md5(DATA).digest()


def test_a_veto_also_comes_when_the_last_chunk_ends_exactly_at_a_read_boundary() -> None:
    def finish(total: int) -> None:
        raise IntegrityError("vetoed")

    reader = ChunkReader(stream(CHUNKS), finish=finish)
    assert reader.read(5) == CHUNKS[0]
    assert reader.read(5) == CHUNKS[1]
    with pytest.raises(IntegrityError):
        reader.read(3)


def test_a_stream_shorter_than_announced_raises() -> None:
    finished: list[int] = []
    reader = ChunkReader(stream(CHUNKS, size=len(DATA) + 1), finish=finished.append)
    with pytest.raises(IntegrityError, match=f"read {len(DATA)} bytes of an object of 14"):
        drain(reader, 4)
    assert finished == [], "finish must not accept a short object"


def test_a_stream_longer_than_announced_raises() -> None:
    reader = ChunkReader(stream(CHUNKS, size=len(DATA) - 3))
    with pytest.raises(IntegrityError, match="of an object of 10 bytes"):
        reader.read(10)


def test_an_empty_object_finishes_on_the_first_read() -> None:
    finished: list[int] = []
    reader = ChunkReader(stream([]), finish=finished.append)
    assert reader.read(8) == b""
    assert finished == [0]


def test_chunks_are_pulled_lazily_not_all_at_once() -> None:
    pulled: list[int] = []

    def chunks() -> Iterator[bytes]:
        for i in range(100):
            pulled.append(i)
            yield b"x" * 10

    reader = ChunkReader(ObjectStream(1000, chunks()))
    assert reader.read(25) == b"x" * 25
    assert len(pulled) == 3
