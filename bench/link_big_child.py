"""One contestant of ``bench/link_big.py``, run in a process of its own.

It reports its own peak RSS, the kernel's ``VmHWM`` of this process's memory
(``ru_maxrss`` would not do: after ``fork`` and ``exec`` it still carries the
parent's resident size at the fork), so everything a contestant holds is counted
and nothing the parent holds is. Three roles:

* ``link``: pull the whole source table with ``from link import link``. The same
  file serves datajoint-link 0.11 (run by its own venv's python, which has no
  djbridge) and djbridge (run by this repository's venv);
* ``floor``: a bare copy of the same bytes with no link logic and no checks:
  the source DDL replayed locally, rows streamed one at a time and inserted raw,
  objects streamed store to store (djbridge's ``stream_copy``, no checksum);
* ``md5``: the checksum bound, no copy at all: each source object read and hashed
  with DataJoint's MD5 (attachment name first), one thread per object. A verifying
  copy cannot be faster than this, however it overlaps its reads and writes.

It prints one line ``BENCH-RESULT {"pull_s": ..., "peak_rss_kib": ...}``.

    python bench/link_big_child.py job.json        # the job file written by link_big
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

RESULT_MARK = "BENCH-RESULT "


def pull_with_link(job: dict[str, Any]) -> float:
    """Decorate and pull with whichever ``link`` package this interpreter has."""
    import os

    import datajoint as dj

    from link import link

    os.environ["LINK_USER"], os.environ["LINK_PASS"] = job["link_user"], job["link_pass"]
    dj.config["database.host"] = job["local"]["address"]
    dj.config["database.user"] = job["local"]["user"]
    dj.config["database.password"] = job["local"]["password"]
    dj.config["database.use_tls"] = True
    dj.config["stores"] = job["dj_stores"]
    dj.config["safemode"] = False
    decorator = link(job["source_address"], job["source_schema"], job["outbound_schema"],
                     "Outbound", job["local_schema"], stores=job["link_stores"])  # fmt: skip
    table = decorator(type(job["table"], (), {}))
    started = time.perf_counter()
    table().source.pull()
    return time.perf_counter() - started


def pull_floor(job: dict[str, Any]) -> float:
    """Copy the same DDL, rows and objects with no link logic."""
    import pymysql

    from djbridge.config import DatabaseServer
    from djbridge.mysql import connect, quote
    from djbridge.stores import store_from_dj_spec, stream_copy

    source = connect(DatabaseServer(**job["source"]))
    local = connect(DatabaseServer(**job["local_server"]))
    src_schema, dst_schema = job["source_schema"], job["local_schema"]
    started = time.perf_counter()
    local.execute(f"CREATE DATABASE IF NOT EXISTS {quote(dst_schema)}")
    local.execute(f"USE {quote(dst_schema)}")
    for table in job["floor_tables"]:  # tracking table first, then the master
        ddl = source.query(f"SHOW CREATE TABLE {quote(src_schema, table)}")[0][1]
        local.execute(ddl)
        names = [r[0] for r in source.query(f"SHOW COLUMNS FROM {quote(src_schema, table)}")]
        insert = (
            f"INSERT INTO {quote(dst_schema, table)} ({', '.join(quote(n) for n in names)}) "
            f"VALUES ({', '.join(['%s'] * len(names))})"
        )
        cursor = source.conn.cursor(pymysql.cursors.SSCursor)
        cursor.execute(f"SELECT * FROM {quote(src_schema, table)}")
        for row in cursor:  # one row in memory at a time
            local.execute(insert, row)
        cursor.close()
    if job["objects"]:
        src = store_from_dj_spec(job["src_store"], job["dj_stores"][job["src_store"]])
        dst = store_from_dj_spec(job["dst_store"], job["dj_stores"][job["dst_store"]])
        for src_key, dst_key, _ in job["objects"]:
            stream_copy(src, src_key, dst, dst_key)
    return time.perf_counter() - started


def hash_objects(job: dict[str, Any]) -> float:
    """Read and MD5 every source object, each on a thread of its own; write nothing."""
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    from djbridge.stores import store_from_dj_spec

    src = store_from_dj_spec(job["src_store"], job["dj_stores"][job["src_store"]])

    def one(entry: list[str]) -> bytes:
        key, attachment_name = entry[0], entry[2]
        digest = hashlib.md5(attachment_name.encode() + b"\0")
        stream = src.open_read(key)
        try:
            for chunk in stream.chunks:
                digest.update(chunk)
        finally:
            stream.close()
        return digest.digest()

    started = time.perf_counter()
    with ThreadPoolExecutor(max(1, len(job["objects"]))) as pool:
        list(pool.map(one, job["objects"]))
    return time.perf_counter() - started


ROLES = {"floor": pull_floor, "md5": hash_objects, "link": pull_with_link}


def main() -> int:
    with open(sys.argv[1]) as handle:
        job = json.load(handle)
    seconds = ROLES[job["role"]](job)
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(RESULT_MARK + json.dumps({"pull_s": seconds, "peak_rss_kib": peak}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
