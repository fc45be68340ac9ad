"""A TCP proxy that adds a fixed latency, to benchmark the tools as if between two labs.

netem is not available on the benchmark machines, so this stands in for a slow
network: every chunk of bytes is held for ``delay_s`` in each direction before it
is passed on, so a request-response round trip costs ``2 * delay_s`` more.
Bandwidth stays unlimited and chunks keep their order: a chunk is due at its
arrival time plus the delay, and a connection's chunks are delivered in arrival
order, so many requests in flight overlap their delays exactly as on a real link.

The proxy runs its own asyncio loop in a daemon thread, so synchronous benchmark
code can start it, point a client at it and stop it again:

    from bench.latency_proxy import start_proxy
    host, port, stop = start_proxy("127.0.0.1", 3306, delay_s=0.1)   # 200 ms round trips
    ...  # connect to host:port instead of the server
    stop()

To count how many round trips a client makes, pass a :class:`Turns`. A *turn* is
one request-response exchange on one connection: a client-to-server burst of
chunks followed by a server-to-client burst. It is counted when the answer starts
to arrive, and stamped with the ``time.monotonic()`` at which its request arrived,
so a benchmark can count the turns inside a window a child process reports:

    turns = Turns()
    host, port, stop = start_proxy("127.0.0.1", 3306, delay_s=0.01, turns=turns)
    ...
    turns.between(began, ended), len(turns)   # turns that began in the window, all turns

From a shell: ``python -m bench.latency_proxy --target 127.0.0.1:3306 --rtt-ms 200``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Callable

CHUNK = 64 * 1024


class Turns:
    """The request-response turns seen by one proxy, over all its connections."""

    def __init__(self) -> None:
        self._began: list[float] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._began)

    def add(self, began: float) -> None:
        """Record one turn whose request arrived at ``began`` (``time.monotonic()``)."""
        with self._lock:
            self._began.append(began)

    def between(self, start: float, end: float) -> int:
        """Return how many turns began within ``[start, end]`` (``time.monotonic()``)."""
        with self._lock:
            return sum(start <= began <= end for began in self._began)


class _Conversation:
    """One connection's side of the count: which way the last chunk went."""

    def __init__(self, turns: Turns) -> None:
        self.turns = turns
        self.asked_at: float | None = None  # set while a request has no answer yet

    def chunk(self, upstream: bool) -> None:
        if upstream and self.asked_at is None:
            self.asked_at = time.monotonic()
        elif not upstream and self.asked_at is not None:
            self.turns.add(self.asked_at)
            self.asked_at = None


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay: float,
    seen: Callable[[], None] | None = None,
) -> None:
    """Copy ``reader`` to ``writer``, each chunk held until ``delay`` after its arrival."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def receive() -> None:
        try:
            while chunk := await reader.read(CHUNK):
                if seen is not None:
                    seen()
                queue.put_nowait((loop.time() + delay, chunk))
        except OSError:
            pass
        queue.put_nowait((loop.time() + delay, b""))

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()

    receiving = asyncio.ensure_future(receive())
    try:
        await deliver()
    except OSError:
        receiving.cancel()
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def _handle(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    target: tuple[str, int],
    delay: float,
    turns: Turns | None,
    live: set[asyncio.Task[None]],
) -> None:
    # Once the client has sent its EOF, the loop holds this task only through a cycle
    # (a stream protocol keeps its reader by weak reference), and the garbage collector
    # would end it while the server's answer is still due. ``live`` holds it until then.
    task = asyncio.current_task()
    assert task is not None
    live.add(task)
    try:
        await _relay(client_reader, client_writer, target, delay, turns)
    finally:
        live.discard(task)


async def _relay(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    target: tuple[str, int],
    delay: float,
    turns: Turns | None,
) -> None:
    try:
        server_reader, server_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.close()
        return
    up: Callable[[], None] | None = None
    down: Callable[[], None] | None = None
    if turns is not None:
        talk = _Conversation(turns)
        up, down = (lambda: talk.chunk(True)), (lambda: talk.chunk(False))
    try:
        await asyncio.gather(
            _pipe(client_reader, server_writer, delay, up),
            _pipe(server_reader, client_writer, delay, down),
        )
    finally:
        for writer in (server_writer, client_writer):
            writer.close()


def start_proxy(
    target_host: str,
    target_port: int,
    delay_s: float,
    listen_host: str = "127.0.0.1",
    *,
    turns: Turns | None = None,
) -> tuple[str, int, Callable[[], None]]:
    """Start a proxy to ``target_host:target_port`` that delays each direction by ``delay_s``.

    Parameters
    ----------
    target_host, target_port
        The server to forward to.
    delay_s
        One-way delay in seconds; a round trip costs twice as much.
    listen_host
        The address to listen on (an ephemeral port is chosen).
    turns
        If given, every request-response turn through the proxy is recorded there.

    Returns
    -------
    tuple
        ``(host, port, stop)``: connect to ``host:port``; ``stop()`` closes the
        listener and every open connection and ends the proxy's thread.
    """
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, int] = {}
    stopping = asyncio.Event()
    live: set[asyncio.Task[None]] = set()

    async def serve() -> None:
        server = await asyncio.start_server(
            lambda r, w: _handle(r, w, (target_host, target_port), delay_s, turns, live),
            listen_host,
            0,
        )
        box["port"] = int(server.sockets[0].getsockname()[1])
        ready.set()
        await stopping.wait()
        server.close()
        connections = asyncio.all_tasks() - {asyncio.current_task()}
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)

    def run() -> None:
        loop.run_until_complete(serve())
        loop.close()

    thread = threading.Thread(target=run, name="latency-proxy", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the latency proxy did not start")

    def stop() -> None:
        if thread.is_alive():
            loop.call_soon_threadsafe(stopping.set)
        thread.join(10)

    port = box["port"]
    return listen_host, port, stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="host:port to forward to")
    parser.add_argument("--rtt-ms", type=float, required=True, help="added round-trip time")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    listen, listen_port, stop = start_proxy(host, int(port), args.rtt_ms / 2000)
    print(f"{listen}:{listen_port} -> {args.target}, +{args.rtt_ms:g} ms per round trip")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
