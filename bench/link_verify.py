"""Benchmark: verify a link of 100k rows; statements per batch per server, time, peak RSS.

Issue 14 asks that ``verify`` touch each server a constant number of times per
batch, whatever the batch holds. This script builds a linked table of N master
rows (default 100,000), each with a ``blob@`` object and three part rows, and
runs ``Recording().verify()`` in a child process that counts every statement
each server receives (``Database.tracer``) and reports its wall-clock time and
its peak RSS (``ru_maxrss``; a bare Python with datajoint and numpy imported is
about 145 MB).

The rows are made by the servers themselves, not pulled: the link is declared
(which creates the outbound and local tables), then both servers fill their
tables with the same formulas (numbers and hashes from ``bench/seqrows.py``, which
MariaDB and MySQL both run; ``--server`` picks the kind of both servers), the
outbound rows are marked shared, and the destination objects are written as files in
``/dev/shm`` (the file store; on disk each small file would cost ~0.7 ms to make).
A little drift is planted so the run also shows verify finding it: one source row
updated, one source part row updated, one local row removed behind the link's
back, one destination object deleted and one truncated.

    .venv/bin/python -m bench.link_verify                 # 100,000 rows, on MariaDB
    .venv/bin/python -m bench.link_verify --rows 5000 --server mysql --json /tmp/verify.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.seqrows import hash_of, hash_sql, in_chunks, numbers
from djbridge.config import DatabaseServer
from djbridge.layout import object_key
from djbridge.mysql import connect, quote
from djbridge.sandbox import SERVER_KINDS

REPO = Path(__file__).resolve().parents[1]
LINK_USER, LINK_PASS = "benchlink", "bench-verify-pw"
SOURCE_SCHEMA, OUTBOUND_SCHEMA, LOCAL_SCHEMA = "bv_lab", "bv_outbound", "bv_copy"
RESULT_MARK = "BENCH-RESULT "
PARTS = 3
DRIFT = {"updated": 7, "part_updated": 8, "lost": 17, "object_gone": 11, "object_cut": 13}


# ---- building the world ---------------------------------------------------------------------
def declare_source(source: DatabaseServer, stores: dict[str, Any]) -> None:
    """Declare ``Recording`` (a ``blob@src`` and three part rows per master) on the source."""
    import datajoint as dj

    dj.config["stores"] = stores
    conn = dj.Connection(f"{source.host}:{source.port}", source.user, source.password,
                         use_tls=True)  # fmt: skip
    schema = dj.Schema(SOURCE_SCHEMA, connection=conn)

    @schema
    class Recording(dj.Manual):
        definition = """
        recording_id : int
        ---
        label : varchar(32)
        quality = null : double
        trace : blob@src
        """

        class Channel(dj.Part):
            definition = """
            -> master
            channel : tinyint unsigned
            ---
            gain : float
            note = null : varchar(16)   # NULL, '' and text, which verify must tell apart
            """

    del Recording
    conn.close()


def fill(db: Any, schema: str, store: str, rows: int) -> None:
    """Fill ``schema``'s tracking, master and part rows, numbered 1 to ``rows``, in SQL."""
    obj = hash_sql("CONCAT('obj', seq)")
    statements = [
        f"INSERT INTO {quote(schema, '~external_' + store)} (hash, size) "
        f"SELECT {obj}, 100 + seq % 400 FROM {{numbers}} AS s",
        f"INSERT INTO {quote(schema, 'recording')} SELECT seq, CONCAT('rec-', seq), "
        f"IF(seq % 5 = 0, NULL, seq / 7), {obj} FROM {{numbers}} AS s",
        f"INSERT INTO {quote(schema, 'recording__channel')} SELECT r.seq, c.seq, r.seq * 0.25, "
        f"ELT(c.seq, NULL, '', CONCAT('ch', r.seq)) FROM {{numbers}} AS r, "
        f"{numbers(1, PARTS)} AS c",
    ]
    for sql in statements:
        in_chunks(db, sql, 1, rows)


def write_objects(location: Path, rows: int) -> None:
    """Write the destination objects the local tracking rows record, at their sizes."""
    for seq in range(1, rows + 1):
        path = location / object_key(LOCAL_SCHEMA, hash_of(f"obj{seq}"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (100 + seq % 400))


def plant_drift(source: DatabaseServer, local: DatabaseServer, location: Path) -> None:
    """Change one source row and one part row, lose one local row, break two objects."""
    db = connect(source)
    db.execute(f"UPDATE {quote(SOURCE_SCHEMA, 'recording')} SET label='changed' "
               f"WHERE recording_id={DRIFT['updated']}")  # fmt: skip
    db.execute(f"UPDATE {quote(SOURCE_SCHEMA, 'recording__channel')} SET gain=-1 "
               f"WHERE recording_id={DRIFT['part_updated']} AND channel=2")  # fmt: skip
    db.close()
    db = connect(local)
    for table in ("recording__channel", "recording"):
        db.execute(f"DELETE FROM {quote(LOCAL_SCHEMA, table)} WHERE recording_id={DRIFT['lost']}")
    db.close()
    for seq, action in ((DRIFT["object_gone"], "delete"), (DRIFT["object_cut"], "cut")):
        path = location / object_key(LOCAL_SCHEMA, hash_of(f"obj{seq}"))
        if action == "delete":
            path.unlink()
        else:
            path.write_bytes(b"x")


def build(job: dict[str, Any], source: DatabaseServer, local: DatabaseServer) -> float:
    """Declare the source and the link, fill both sides and plant the drift; return seconds."""
    started = time.perf_counter()
    rows = job["rows"]
    db = connect(source)
    db.execute(f"CREATE USER '{LINK_USER}'@'%' IDENTIFIED BY '{LINK_PASS}'")
    db.execute(f"GRANT SELECT, REFERENCES ON {quote(SOURCE_SCHEMA)}.* TO '{LINK_USER}'@'%'")
    db.execute(f"GRANT ALL PRIVILEGES ON {quote(OUTBOUND_SCHEMA)}.* TO '{LINK_USER}'@'%'")
    declare_source(source, job["dj_stores"])
    fill(db, SOURCE_SCHEMA, "src", rows)
    open_link(job)  # creates the outbound and the local tables
    db.execute(
        f"INSERT INTO {quote(OUTBOUND_SCHEMA, 'outbound')} SELECT recording_id, 'NONE', "
        f"'FALSE', 'FALSE' FROM {quote(SOURCE_SCHEMA, 'recording')}"
    )
    db.close()
    db = connect(local)
    fill(db, LOCAL_SCHEMA, "dst", rows)
    db.close()
    write_objects(Path(job["dj_stores"]["dst"]["location"]), rows)
    plant_drift(source, local, Path(job["dj_stores"]["dst"]["location"]))
    return time.perf_counter() - started


# ---- the child: one verify, counted -------------------------------------------------------
def open_link(job: dict[str, Any]) -> Any:
    """Configure DataJoint from ``job`` and declare the link; return the local table class."""
    import datajoint as dj

    from djbridge.link import link

    os.environ["LINK_USER"], os.environ["LINK_PASS"] = LINK_USER, LINK_PASS
    dj.config["database.host"] = job["local"]
    dj.config["database.user"], dj.config["database.password"] = job["local_user"]
    dj.config["database.use_tls"] = False
    dj.config["stores"] = job["dj_stores"]
    decorator = link(job["source"], SOURCE_SCHEMA, OUTBOUND_SCHEMA, "Outbound", LOCAL_SCHEMA,
                     stores={"src": "dst"})  # fmt: skip
    return decorator(type("Recording", (), {}))


def child(job_path: str) -> int:
    """Run one verify with both servers traced; print what it measured."""
    job = json.loads(Path(job_path).read_text())
    table = open_link(job)
    linked = table._core.linked
    counts: dict[str, Counter[str]] = {"source": Counter(), "local": Counter()}

    def tracer(role: str) -> Any:
        def trace(sql: str, params: Any) -> None:
            per_batch = "SHA2(" in sql or "~external_" in sql
            counts[role]["per batch" if per_batch else "per run"] += 1

        return trace

    linked.source_db.tracer, linked.local_db.tracer = tracer("source"), tracer("local")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    report = table().verify()
    elapsed = time.perf_counter() - started
    result = {
        "verify_s": elapsed,
        "rss_before_kib": rss_before,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "statements": {role: dict(c) for role, c in counts.items()},
        "report": report.to_dict(),
    }
    print(RESULT_MARK + json.dumps(result, default=str), flush=True)
    return 0


# ---- the run ----------------------------------------------------------------------------------
def judge(result: dict[str, Any], rows: int) -> list[str]:
    """Return what is wrong with a result: the drift verify must find, and nothing else."""
    report = result["report"]
    found = {
        "updated": [k["recording_id"] for k in report["rows_differ"]],
        "lost": [k["recording_id"] for k in report["missing_local"]],
        "objects": (len(report["objects_missing"]), len(report["objects_wrong_size"])),
        "checked": report["checked"],
    }
    wanted = {
        "updated": sorted([DRIFT["updated"], DRIFT["part_updated"]]),
        "lost": [DRIFT["lost"]],
        "objects": (1, 1),
        "checked": rows - 1,
    }
    found["updated"] = sorted(found["updated"])
    return [f"{k}: found {found[k]}, wanted {wanted[k]}" for k in wanted if found[k] != wanted[k]]


def show(result: dict[str, Any], rows: int, batch: int, build_s: float, server: str) -> None:
    """Print the figures: statements per batch per server, time and peak RSS."""
    batches = -(-(rows - 1) // batch)
    print(
        f"\nverify of {rows - 1} local rows ({PARTS} part rows and 1 blob@ object each), "
        f"{batches} batches of up to {batch}; {server} servers, file store in /dev/shm"
    )
    print(f"  world built in {build_s:.1f} s (not part of the figures)")
    for role, seen in result["statements"].items():
        per = seen.get("per batch", 0)
        print(f"  {role:<6} server: {per} batch statements = {per / batches:.2f} per batch, "
              f"plus {seen.get('per run', 0)} per run")  # fmt: skip
    mib = 1024
    print(f"  time {result['verify_s']:.2f} s ({(rows - 1) / result['verify_s']:,.0f} rows/s)")
    print(f"  peak RSS {result['peak_rss_kib'] / mib:.0f} MiB "
          f"(before verify {result['rss_before_kib'] / mib:.0f} MiB)")  # fmt: skip
    report = result["report"]
    print(f"  found: {len(report['rows_differ'])} rows differ, {len(report['missing_local'])} "
          f"missing locally, {len(report['objects_missing'])} objects missing, "
          f"{len(report['objects_wrong_size'])} wrong size")  # fmt: skip


def run_child(job: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Run the counted verify in a fresh process; return what it printed."""
    job_path = scratch / "job.json"
    job_path.write_text(json.dumps(job))
    command = [sys.executable, "-m", "bench.link_verify", "--child", str(job_path)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800)
    marked = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode != 0 or not marked:
        raise SystemExit(f"verify child exited {done.returncode}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(marked[-1][len(RESULT_MARK) :])
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="master rows (default 100k)")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    parser.add_argument(
        "--server", choices=sorted(SERVER_KINDS), default="mariadb",
        help="the kind of both private servers (default mariadb)",
    )  # fmt: skip
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rows < max(DRIFT.values()):
        parser.error(f"--rows must be at least {max(DRIFT.values())}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from djbridge.link.verify import VERIFY_BATCH

    args = parse_args(argv)
    if args.child:
        return child(args.child)
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    scratch = Path(tempfile.mkdtemp(prefix="djb-bench-verify-", dir=shm))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, True)
        kind = SERVER_KINDS[args.server]
        source = stack.enter_context(kind("bench-verify-source", tls=True)).server
        local = stack.enter_context(kind("bench-verify-local", tls=False)).server
        (scratch / "src").mkdir()
        (scratch / "dst").mkdir()
        job = {
            "rows": args.rows,
            "source": source.address,
            "local": local.address,
            "local_user": [local.user, local.password],
            "dj_stores": {
                k: {"protocol": "file", "location": str(scratch / k)} for k in ("src", "dst")
            },  # fmt: skip
        }
        print(f"link_verify: building {args.rows} linked rows on {args.server} ...", flush=True)
        build_s = build(job, source, local)
        result = run_child(job, scratch)
    show(result, args.rows, VERIFY_BATCH, build_s, args.server)
    wrong = judge(result, args.rows)
    for line in wrong:
        print(f"  WRONG: {line}")
    if args.json:
        figures = {"rows": args.rows, "batch": VERIFY_BATCH, "server": args.server, **result}
        args.json.write_text(json.dumps(figures))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
