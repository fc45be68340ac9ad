"""The benchmarks' latency proxy: bytes intact, every round trip delayed, pipelined."""

from __future__ import annotations

import gc
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from bench.latency_proxy import Turns, start_proxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield int(listener.getsockname()[1])
    listener.close()


def round_trip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        got += sock.recv(65536)
    return got


def test_a_round_trip_costs_twice_the_delay_and_keeps_the_bytes(echo_port: int) -> None:
    host, port, stop = start_proxy("127.0.0.1", echo_port, delay_s=0.05)
    try:
        with socket.create_connection((host, port)) as sock:
            round_trip(sock, b"warm-up")
            payload = bytes(range(256)) * 2000
            started = time.perf_counter()
            assert round_trip(sock, payload) == payload
            assert round_trip(sock, b"x") == b"x"
            elapsed = time.perf_counter() - started
    finally:
        stop()
    assert 0.2 <= elapsed < 1.0  # two round trips of 2 x 50 ms each


def test_parallel_connections_overlap_their_delays(echo_port: int) -> None:
    host, port, stop = start_proxy("127.0.0.1", echo_port, delay_s=0.1)
    results: list[bytes] = []

    def client(i: int) -> None:
        with socket.create_connection((host, port)) as sock:
            results.append(round_trip(sock, f"client {i}".encode()))

    try:
        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    finally:
        stop()
    assert sorted(results) == sorted(f"client {i}".encode() for i in range(8))
    assert 0.2 <= elapsed < 0.8  # one 200 ms round trip, not eight


def test_stop_closes_the_listener(echo_port: int) -> None:
    host, port, stop = start_proxy("127.0.0.1", echo_port, delay_s=0.0)
    stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=1).close()


def test_turns_count_each_request_and_answer_once_and_stamp_when_it_began(echo_port: int) -> None:
    turns = Turns()
    host, port, stop = start_proxy("127.0.0.1", echo_port, delay_s=0.01, turns=turns)
    try:
        with socket.create_connection((host, port)) as sock:
            round_trip(sock, b"before")
            began = time.monotonic()
            for i in range(5):
                round_trip(sock, f"question {i}".encode())
            ended = time.monotonic()
            round_trip(sock, b"after")
    finally:
        stop()
    assert len(turns) == 7
    assert turns.between(began, ended) == 5


def test_an_answer_after_the_client_half_closes_survives_garbage_collection() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_late() -> None:
        conn, _ = listener.accept()
        with conn:
            while conn.recv(65536):
                pass
            time.sleep(0.3)
            conn.sendall(b"late answer")

    threading.Thread(target=answer_late, daemon=True).start()
    host, port, stop = start_proxy("127.0.0.1", int(listener.getsockname()[1]), delay_s=0.0)
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(b"question")
            sock.shutdown(socket.SHUT_WR)
            time.sleep(0.1)
            gc.collect()  # the loop holds a connection's task only weakly by now
            got = b""
            while data := sock.recv(65536):
                got += data
    finally:
        stop()
        listener.close()
    assert got == b"late answer"
