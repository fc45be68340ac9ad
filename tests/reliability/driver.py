"""The child side of the fault tests: run one link pull or delete and die where told.

This file runs as a *zygote*: ``python tests/reliability/driver.py`` imports
DataJoint, numpy and the link once, then reads one JSON request per line on
stdin. Each request names one or more *cases*; the zygote forks one child per
case (so every child is a fresh process that can be SIGKILLed without paying the
import again), waits for all of them and answers one JSON line with their exit
codes (``-9`` for a SIGKILL).

A child configures DataJoint like a user would (``LINK_USER``/``LINK_PASS``, the
local account, the stores), decorates ``Recording`` with ``link(...)`` and then
installs a fault hook that sees every *event* of the run, in order:

* each statement on the source or the local server, through the
  ``Database.tracer`` hook the link already has, labelled by the step it belongs
  to (``start_pull``, ``insert_part``, ...);
* ``commit`` / ``committed`` around the local transaction's commit;
* ``put`` before each object write into the destination store (``put``,
  ``put_stream`` or a server-side ``copy``);
* with ``"stream_events": true`` in the case, inside each streamed write: ``chunk``
  whenever the store asks its reader for more bytes while the object is still
  incomplete (a file store has written the chunks so far to its temporary file;
  an S3 store has uploaded the parts so far of a multipart upload), and
  ``chunk_last`` when a store that read an object in several chunks asks once more
  after its last byte (a file store then renames the finished temporary file).
  They are off by default because concurrent copies interleave them, and the
  seeded kill plans need the same labels in the same order on every run.

The hook can SIGKILL the child at the N-th event (``kill``), or stop it there
until a file appears (``pause``). Nothing in ``src/`` is patched: the hook only
wraps this process's own store and connection objects.

    request = {"cases": [{"op": "pull", "kill": {"at": 17}, ...}]}
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# Source statements, matched in this order against the SQL text.
SOURCE_LABELS = (
    ("INSERT IGNORE INTO", "start_pull"),
    ("is_deprecated='TRUE'", "deprecate"),
    ("SET process='NONE' WHERE process='PULL'", "finish_pull"),
    ("SET process='DELETE'", "start_delete"),
    ("SET process='PULL'", "restart_pull"),
    ("DELETE FROM", "finish_delete"),
    ("LEFT JOIN", "read_state"),
    ("~external_", "read_tracking"),
)


def source_label(sql: str) -> str:
    for needle, label in SOURCE_LABELS:
        if needle in sql:
            return label
    return "fetch_rows" if sql.lstrip().upper().startswith("SELECT") else "source_other"


def local_label(sql: str) -> str:
    head = sql.lstrip().upper()
    if head.startswith("START TRANSACTION"):
        return "local_begin"
    if head.startswith("INSERT"):
        if "~external_" in sql:
            return "insert_external"
        return "insert_part" if "__" in sql.split("(")[0] else "insert_master"
    if head.startswith("DELETE"):
        return "delete_part" if "__" in sql else "delete_master"
    return "read_local"


class Faults:
    """Counts events; kills or pauses the process at the chosen one."""

    def __init__(self, spec: dict[str, Any] | None, note: Path) -> None:
        self.spec = spec or {}
        self.note = note
        self.events: list[str] = []
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()

    def _hit(self, label: str) -> bool:
        if "at" in self.spec:
            return len(self.events) == self.spec["at"]
        return label == self.spec.get("label") and self.seen[label] == self.spec.get("nth", 1)

    def event(self, label: str) -> None:
        with self.lock:
            self.events.append(label)
            self.seen[label] = self.seen.get(label, 0) + 1
            if not self.spec or not self._hit(label):
                return
            self.note.write_text(json.dumps({"at": len(self.events), "label": label}))
            if self.spec.get("action", "kill") == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            go = Path(self.spec["go"])
            deadline = time.monotonic() + 120
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.02)


class TracedReader:
    """The reader a store's ``put_stream`` sees: a ChunkReader that reports each request."""

    def __init__(self, reader: Any, faults: Faults) -> None:
        self.reader = reader
        self.faults = faults
        self.size = reader.size
        self.delivered = self.reads = 0

    def read(self, size: int = -1) -> bytes:
        if 0 < self.delivered < self.size:
            self.faults.event("chunk")
        elif self.delivered and self.reads > 1:
            self.faults.event("chunk_last")
        data: bytes = self.reader.read(size)
        self.delivered += len(data)
        self.reads += bool(data)
        return data


def install(linked: Any, faults: Faults, stream_events: bool = False) -> None:
    """Route the link's statements, its local commit and its object writes through ``faults``."""
    linked.source_db.tracer = lambda sql, params: faults.event(source_label(sql))
    linked.local_db.tracer = lambda sql, params: faults.event(local_label(sql))
    conn = linked.local_db.conn
    commit = conn.commit

    def traced_commit() -> None:
        faults.event("commit")
        commit()
        faults.event("committed")

    conn.commit = traced_commit
    for _src, dst, _name in linked.placements.values():
        for method in ("put", "copy"):
            real = getattr(dst.store, method)

            def wrapped(*args: Any, _real: Any = real) -> Any:
                faults.event("put")
                return _real(*args)

            setattr(dst.store, method, wrapped)
        put_stream = dst.store.put_stream

        def traced_put_stream(key: str, reader: Any, _real: Any = put_stream) -> None:
            faults.event("put")
            _real(key, TracedReader(reader, faults) if stream_events else reader)

        dst.store.put_stream = traced_put_stream


def restriction(rec_ids: list[int] | None) -> Any:
    return [] if rec_ids is None else [{"rec_id": r} for r in rec_ids]


def run_case(case: dict[str, Any]) -> int:
    """Run one pull or delete as a user's script would; return the exit code."""
    import datajoint as dj

    from djbridge.config import DatabaseServer
    from tests.integration.linkworld import World, make_link

    os.environ["LINK_USER"], os.environ["LINK_PASS"] = case["link_user"], case["link_pass"]
    local = DatabaseServer(**case["local"])
    dj.config["database.host"] = f"{local.host}:{local.port}"
    dj.config["database.user"] = local.user
    dj.config["database.password"] = local.password
    dj.config["database.use_tls"] = local.use_tls
    dj.config["stores"] = case["stores"]
    dj.config["safemode"] = False
    world = World(
        DatabaseServer(**case["source"]), local, case["src_schema"], case["out_schema"],
        case["local_schema"], case["stores"], Path(case["tmp"]),
    )  # fmt: skip
    out = Path(case["result"])
    faults = Faults(case.get("kill"), out.with_suffix(".note"))
    try:
        Recording = make_link(world, batch_size=case["batch_size"])
        install(Recording._core.linked, faults, case.get("stream_events", False))
        if "ready" in case:  # start together with the other cases of this request
            Path(case["ready"]).touch()
            while not Path(case["go"]).exists():
                time.sleep(0.01)
        rows = restriction(case.get("rec_ids"))
        began, copied, final = time.time(), 0, {}
        if case["op"] == "pull":
            source = Recording().source
            result = (source & rows if rows else source).pull()
            final = {s.value: n for s, n in result.final_states.items()}
            copied = result.rows_copied
        else:
            table = Recording()
            (table & rows if rows else table).delete(safemode=False)
        report: dict[str, Any] = {"ok": True, "final": final, "copied": copied,
                                  "began": began, "ended": time.time()}  # fmt: skip
        code = 0
    except Exception as err:  # reported to the test, which decides
        report = {"ok": False, "error": f"{type(err).__name__}: {err}",
                  "module": type(err).__module__, "trace": traceback.format_exc()}  # fmt: skip
        code = 3
    report["events"] = faults.events
    out.write_text(json.dumps(report))
    return code


def serve() -> None:
    """Fork one child per case of each request line; answer with their exit codes."""
    for line in sys.stdin:
        request = json.loads(line)
        pids = []
        for case in request["cases"]:
            pid = os.fork()
            if pid == 0:
                code = 4
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)  # the answer channel belongs to the zygote
                try:
                    code = run_case(case)
                finally:
                    sys.stdout.flush()
                    os._exit(code)
            pids.append(pid)
        codes = []
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            codes.append(os.waitstatus_to_exitcode(status))
        sys.stdout.write(json.dumps({"codes": codes}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    import datajoint  # noqa: F401 - imported once here, inherited by every child
    import numpy  # noqa: F401

    import link  # noqa: F401
    import tests.integration.linkworld  # noqa: F401

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    serve()
