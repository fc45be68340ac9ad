"""The bare floor of ``bench/link2.py``: the same rows and objects copied with no link logic.

``bench/link2.py`` runs this module under ``.venv-dj2`` (``python -m bench.link2_floor
JOB.json``), into a local schema whose tables DataJoint 2.x declared beforehand, untimed
(``bench/link2_side.py``'s ``declare``). Timed, after connecting:

1. one SELECT per source table (master, then part), every row at once, with psycopg or
   PyMySQL;
2. each external value's JSON rewritten the way DataJoint 2.x would have written it
   locally: ``store`` renamed; a hash-addressed value (``<blob@>``, ``<attach@>``) moved to
   ``{hash_prefix}/{local schema}/{hash}`` and its ``schema`` renamed; an ``<object@>``
   moved from ``{schema_prefix}/{source schema}/`` to ``{schema_prefix}/{local schema}/``
   and its ``url`` dropped (keys from :mod:`djbridge.layout`);
3. every object copied to its new key: ``shutil.copyfile`` between directories, or one
   server-side ``CopyObject`` request per object on S3 (botocore), with ``--threads``
   copies at once;
4. the rows inserted with ``executemany`` in one local transaction, master then part.

No state, no outbound table, no size or checksum checks, no batches, no resume: that is
the link's work, and the cost the benchmark measures. It prints one line
``BENCH-RESULT {"setup_s": ..., "pull_s": ..., "pull_window": [...], "peak_kib": ...}``, with
the seconds of each phase (``read_s``: reading and rewriting, ``copy_s``, ``insert_s``).

    PYTHONPATH=. .venv-dj2/bin/python -m bench.link2_floor JOB.json --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from djbridge.layout import DJ2_HASH_PREFIX, DJ2_SCHEMA_PREFIX, dj2_hash_key

RESULT_MARK = "BENCH-RESULT "
HASHED = {"blob", "attach", "hash"}


def connect(server: dict[str, Any]) -> Any:
    """Open an autocommit DB-API connection to a PostgreSQL database or a MySQL server."""
    if server["backend"] == "postgresql":
        import psycopg

        return psycopg.connect(host=server["host"], port=server["port"], user=server["user"],
                               password=server["password"], dbname=server["database"],
                               autocommit=True)  # fmt: skip
    import pymysql

    return pymysql.connect(host=server["host"], port=server["port"], user=server["user"],
                           password=server["password"], autocommit=True)  # fmt: skip


def quote(backend: str, schema: str, table: str) -> str:
    """Return ``schema.table`` quoted for the backend."""
    mark = '"' if backend == "postgresql" else "`"
    return f"{mark}{schema}{mark}.{mark}{table}{mark}"


def read_table(db: Any, backend: str, schema: str, table: str) -> tuple[list[str], list[Any]]:
    """Return the column names and every row of one source table."""
    with db.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {quote(backend, schema, table)}")
        columns = [d[0] for d in cursor.description]
        return columns, list(cursor.fetchall())


class Rewriter:
    """Rewrites one external value's JSON for the local schema and records its copy."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.src_schema, self.local_schema = job["source_schema"], job["local_schema"]
        self.dst_store = job["dst_store"]
        self.hash_prefix = job["dst_spec"].get("hash_prefix") or DJ2_HASH_PREFIX
        self.schema_prefix = job["dst_spec"].get("schema_prefix") or DJ2_SCHEMA_PREFIX
        self.old_area = f"{job['src_spec'].get('schema_prefix') or DJ2_SCHEMA_PREFIX}/" \
                        f"{self.src_schema}/"  # fmt: skip
        self.copies: dict[str, str] = {}  # destination key -> source key

    def __call__(self, codec: str, value: Any) -> dict[str, Any]:
        """Return the local JSON of one ``codec`` value (a dict, or JSON text)."""
        doc = dict(value) if isinstance(value, dict) else json.loads(value)
        out = dict(doc, store=self.dst_store)
        if codec in HASHED:
            out["path"] = dj2_hash_key(self.local_schema, doc["hash"], (), self.hash_prefix)
            out["schema"] = self.local_schema
        else:  # <object@>: the same name under the local schema's area
            rest = doc["path"][len(self.old_area) :]
            out["path"] = f"{self.schema_prefix}/{self.local_schema}/{rest}"
            out.pop("url", None)
        self.copies[out["path"]] = doc["path"]
        return out


def file_copier(job: dict[str, Any]) -> Callable[[tuple[str, str]], None]:
    """Return a function that copies one ``(dst_key, src_key)`` between the two directories."""
    src, dst = Path(job["src_spec"]["location"]), Path(job["dst_spec"]["location"])
    made: set[Path] = set()

    def copy(pair: tuple[str, str]) -> None:
        target = dst / pair[0]
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        shutil.copyfile(src / pair[1], target)

    return copy


def s3_copier(job: dict[str, Any], threads: int) -> Callable[[tuple[str, str]], None]:
    """Return a function that copies one ``(dst_key, src_key)`` with one ``CopyObject``.

    botocore's ``copy_object`` is that one request; minio's would first send a HEAD for
    the source's size, which a floor does not need.
    """
    import botocore.session  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    src, dst = job["src_spec"], job["dst_spec"]
    scheme = "https" if dst.get("secure") else "http"
    client = botocore.session.get_session().create_client(
        "s3", endpoint_url=f"{scheme}://{dst['endpoint']}", region_name="us-east-1",
        aws_access_key_id=dst["access_key"], aws_secret_access_key=dst["secret_key"],
        config=Config(max_pool_connections=max(threads, 10), s3={"addressing_style": "path"}),
    )  # fmt: skip

    def full(spec: dict[str, Any], key: str) -> str:
        root = str(spec.get("location") or "").strip("/")
        return f"{root}/{key}" if root else key

    def copy(pair: tuple[str, str]) -> None:
        origin = {"Bucket": src["bucket"], "Key": full(src, pair[1])}
        client.copy_object(Bucket=dst["bucket"], Key=full(dst, pair[0]), CopySource=origin)

    return copy


def json_param(backend: str, doc: dict[str, Any]) -> Any:
    """Return a JSON document as a parameter for the local server."""
    if backend == "postgresql":
        from psycopg.types.json import Json

        return Json(doc)
    return json.dumps(doc)


def insert(db: Any, backend: str, table: str, columns: Sequence[str], rows: list[Any]) -> None:
    """Insert ``rows`` with one ``executemany`` (a pipeline or a multi-row INSERT)."""
    mark = '"' if backend == "postgresql" else "`"
    names = ", ".join(f"{mark}{c}{mark}" for c in columns)
    sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(columns))})"
    with db.cursor() as cursor:
        cursor.executemany(sql, rows)


def pull(job: dict[str, Any], source: Any, local: Any, threads: int) -> dict[str, Any]:
    """Read, rewrite, copy and insert; return what was copied and each phase's seconds."""
    clock = [time.perf_counter()]
    src_backend, dst_backend = job["source"]["backend"], job["local"]["backend"]
    rewrite = Rewriter(job)
    out: list[tuple[str, list[str], list[Any]]] = []
    for table, codecs in job["tables"]:
        columns, rows = read_table(source, src_backend, job["source_schema"], table)
        where = [(i, codecs[c]) for i, c in enumerate(columns) if c in codecs]
        fresh = []
        for row in rows:
            values = list(row)
            for i, codec in where:
                if values[i] is not None:
                    values[i] = json_param(dst_backend, rewrite(codec, values[i]))
            fresh.append(values)
        out.append((quote(dst_backend, job["local_schema"], table), columns, fresh))
    clock.append(time.perf_counter())
    s3 = job["dst_spec"]["protocol"] == "s3"
    copy = s3_copier(job, threads) if s3 else file_copier(job)
    pairs = list(rewrite.copies.items())
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(copy, pairs))
    else:
        for pair in pairs:
            copy(pair)
    clock.append(time.perf_counter())
    if dst_backend == "postgresql":
        with local.transaction():
            for table, columns, rows in out:
                insert(local, dst_backend, table, columns, rows)
    else:
        local.begin()
        for table, columns, rows in out:
            insert(local, dst_backend, table, columns, rows)
        local.commit()
    clock.append(time.perf_counter())
    phases = {f"{name}_s": b - a for name, a, b in zip(("read", "copy", "insert"), clock,
                                                        clock[1:], strict=False)}  # fmt: skip
    return {"rows": len(out[0][2]), "parts": sum(len(r) for _, _, r in out[1:]),
            "objects": len(pairs), **phases}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bare-floor contestant of bench/link2.py.")
    parser.add_argument("job", type=Path, help="job file written by bench/link2.py")
    parser.add_argument("--threads", type=int, default=1, help="concurrent object copies")
    args = parser.parse_args(argv)
    job = json.loads(args.job.read_text())
    started = time.perf_counter()
    source, local = connect(job["source"]), connect(job["local"])
    ready = time.perf_counter()
    window = [time.monotonic()]
    counts = pull(job, source, local, args.threads)
    window.append(time.monotonic())
    done = time.perf_counter()
    source.close()
    local.close()
    with open(f"/proc/{os.getpid()}/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    result = {"setup_s": ready - started, "pull_s": done - ready, "pull_window": window,
              "peak_kib": peak, **counts}  # fmt: skip
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
