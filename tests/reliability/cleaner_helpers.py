"""Shared pieces of the dj-cleaner reliability tests: labs, a blocking populate, a paced inserter.

The labs (a DataJoint pipeline with ``blob@``/``attach@``/``filepath@`` columns on a
file or S3 store) come from ``tests/integration/test_cleaner_rules.py``; this module
adds what the concurrency tests need on top:

* :class:`BlockingPopulate`: a ``dj.Computed`` table whose ``make()`` inserts a row
  with a blob and an attachment (the objects are uploaded, the ``~external`` rows are
  written but not committed) and then waits on an event, inside ``populate``'s
  transaction, until the test releases it;
* :class:`Inserter`: a thread that keeps inserting recordings with fresh content and
  counts the committed ones, so a test can wait for "k more inserts" at any phase.

    blocker = BlockingPopulate(lab, tmp_path)
    blocker.start({"rec": 1}); blocker.wait_inside()
    ...                       # run dj-cleaner while the transaction is open
    blocker.release(); blocker.join()
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from djbridge.mysql import connect, quote
from djbridge.stores import ObjectInfo, Store
from tests.integration.test_cleaner_rules import (
    STORE,
    Lab,
    all_keys,
    backdate,
    cli,
    insert_recs,
    make_lab,
    orphan,
)

__all__ = [
    "STORE",
    "BlockingPopulate",
    "Inserter",
    "Lab",
    "PausingStore",
    "all_keys",
    "backdate",
    "build_lab",
    "cli",
    "insert_recs",
    "make_lab",
    "orphan",
    "visible_hashes",
]

WAIT = 60.0


def build_lab(request: Any) -> Lab:
    """Build a lab on ``request.param`` (``"file"`` or ``"s3"``) for a ``lab`` fixture.

    Test modules define ``@pytest.fixture(params=["file", "s3"]) def lab(request)``
    that returns this, so tests can narrow it with ``indirect=True``.
    """
    request.getfixturevalue("monkeypatch").setenv("DJ_SUPPORT_FILEPATH_MANAGEMENT", "TRUE")
    server = request.getfixturevalue("source_server")
    schema = request.getfixturevalue("schema_factory")()
    base = request.getfixturevalue("tmp_path")
    stores = request.getfixturevalue("dj_stores")
    if request.param == "file":
        return make_lab("file", server, schema, base, stores)
    s3 = request.getfixturevalue("s3_a")
    bucket = request.getfixturevalue("bucket_factory")(s3)
    return make_lab("s3", server, schema, base, stores, s3, bucket)


def visible_hashes(lab: Lab) -> set[str]:
    """Return the hex hashes another session sees in ``~external_lab`` right now."""
    db = connect(lab.server)
    try:
        rows = db.query(f"SELECT hash FROM {quote(lab.schema, '~external_' + STORE)}")
    finally:
        db.close()
    return {bytes(h).hex() for (h,) in rows}


class BlockingPopulate:
    """A Computed table whose ``make()`` uploads external data, then blocks in its transaction."""

    def __init__(self, lab: Lab, tmp: Path) -> None:
        import datajoint as dj

        self.inside = threading.Event()
        self.released = threading.Event()
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.result = np.random.default_rng().integers(0, 2**31, 2000)
        self.attachment = tmp / f"inflight-{secrets.token_hex(4)}.bin"
        self.attachment.write_bytes(secrets.token_bytes(5000))
        blocker = self
        Rec = lab.tables["Rec"]  # noqa: N806 - the name the definition refers to

        class Proc(dj.Computed):
            definition = f"""
            -> Rec
            ---
            result : blob@{STORE}
            report : attach@{STORE}
            """

            def make(self, key: dict[str, Any]) -> None:
                self.insert1({**key, "result": blocker.result, "report": blocker.attachment})
                blocker.inside.set()
                if not blocker.released.wait(WAIT):
                    raise TimeoutError("the test never released the populate")

        self.table = lab.dj_schema(Proc, context={"Rec": Rec})

    def start(self, key: dict[str, Any]) -> None:
        """Run ``Proc.populate(key)`` in a thread."""

        def run() -> None:
            try:
                self.table.populate(key)
            except BaseException as err:  # re-raised in join()
                self.error = err
                self.inside.set()

        self.thread = threading.Thread(target=run, name="blocking-populate")
        self.thread.start()

    def wait_inside(self) -> None:
        """Wait until ``make()`` has inserted its row and is blocking in the transaction."""
        assert self.inside.wait(WAIT), "make() never ran"
        if self.error is not None:
            raise self.error

    def release(self) -> None:
        self.released.set()

    def join(self) -> None:
        """Wait for the populate to commit; re-raise its error, if any."""
        assert self.thread is not None
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "populate did not finish"
        if self.error is not None:
            raise self.error

    def check_fetch(self, key: dict[str, Any], download: Path) -> None:
        """Fetch the populated row and compare it byte for byte with what make() inserted."""
        row = (self.table & key).fetch1(download_path=str(download))
        assert np.array_equal(row["result"], self.result)
        assert Path(row["report"]).read_bytes() == self.attachment.read_bytes()


class Inserter:
    """A thread that inserts recordings with fresh content until stopped, counting commits."""

    def __init__(self, lab: Lab, first_id: int = 1000) -> None:
        self.lab = lab
        self.next_id = first_id
        self.done: list[int] = []
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="inserter")

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                rid = self.next_id
                self.next_id += 1
                insert_recs(self.lab, [rid], salt="live")
                with self.cond:
                    self.done.append(rid)
                    self.cond.notify_all()
        except BaseException as err:  # re-raised in stop()
            self.error = err
            with self.cond:
                self.cond.notify_all()

    def start(self) -> None:
        if not self.thread.is_alive():
            self.thread.start()

    def wait_for_more(self, count: int) -> None:
        """Start if needed, then block until ``count`` more inserts have committed."""
        self.start()
        with self.cond:
            target = len(self.done) + count
            deadline = time.monotonic() + WAIT
            while len(self.done) < target and self.error is None:
                assert time.monotonic() < deadline, "the inserter stalled"
                self.cond.wait(1.0)
        if self.error is not None:
            raise self.error

    def stop(self) -> list[int]:
        """Stop after the insert in progress; return the ids of every committed insert."""
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(WAIT)
        if self.error is not None:
            raise self.error
        return list(self.done)


class PausingStore:
    """Wraps a real store; the run's listing waits on ``pause(phase)`` before and during it.

    The listing pauses once before and once during it (a run listing key ranges in
    parallel pauses in the first range that gets there); the preflight lists nothing.
    """

    def __init__(self, inner: Store, pause: Any) -> None:
        self.inner = inner
        self.description = inner.description
        self.pause = pause
        self.listings = 0
        self.paused: set[str] = set()
        self.lock = threading.Lock()

    def _pause_once(self, phase: str) -> None:
        with self.lock:
            if phase in self.paused:
                return
            self.paused.add(phase)
            self.pause(phase)

    def iter_objects(self, prefix: str, **bounds: Any) -> Iterator[ObjectInfo]:
        with self.lock:
            self.listings += 1
        self._pause_once("before listing")
        for number, obj in enumerate(self.inner.iter_objects(prefix, **bounds)):
            if number == 1:
                self._pause_once("during listing")
            yield obj

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
