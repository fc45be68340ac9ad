"""The DataJoint 2.x side of the 2.x tests and benchmark: real DataJoint 2.3 in its own venv.

djbridge runs on DataJoint 0.14; DataJoint 2.x lives in ``.venv-dj2``. The two
never share an interpreter: this file runs as ``.venv-dj2/bin/python
tests/dj2/driver.py`` and answers one JSON request per line on stdin with one
JSON line on stdout (:class:`tests.dj2.client.Driver` is the other end). It keeps
named DataJoint *instances* (``dj.Instance``, one connection and one config
each), so one instance can hold a transaction open while another inserts or
runs ``dj.gc``.

Requests are ``{"op": NAME, ...}``; the answer is ``{"ok": true, "result": ...}``
or ``{"ok": false, "error": "..."}``. Operations:

* ``connect`` (name, backend ``"postgresql"`` or ``"mysql"``, host, port, user,
  password, database; no TLS), ``disconnect`` (conn) and ``store`` (conn, store,
  spec): an instance and its ``stores`` entries;
* ``declare`` (conn, schema, table, definition), ``insert`` (conn, schema, table,
  rows), ``bulk`` (conn, schema, table, column, start, count, size), ``delete``
  (conn, schema, table, where), ``sql`` (conn, sql);
* ``begin`` / ``commit`` / ``rollback`` (conn): a transaction on that instance;
* ``codec`` (name, dtype) defines a custom codec; ``fetch`` (conn, schema,
  table) reads every row back and reports the rows whose objects are unreadable;
* ``gc`` (conn, schemas, store, dry_run, before_listing, before_delete,
  forget_codecs) runs ``dj.gc.GarbageCollector.collect``; the two lists of
  requests run between its phases, which is how the tests reproduce an insert
  landing mid-collection;
* ``dump`` (conn, schema, download_path) reads a whole schema as plain 2.x sees it,
  without declaring or decorating anything (so it writes no ``~lineage``): every
  table in dependency order with its heading, parents, indexes and rows, values
  tagged by ``tagged.encode`` (a row 2.x cannot read is its key and ``"$error"``),
  plus the schema's ``~lineage`` rows; ``join`` (conn,
  left, right, each ``[schema, table]``) counts a 2.x join and semijoin of two
  tables, which raise when their shared attributes lack lineage.

Row values are JSON with tags: ``{"$blob": [...]}`` and ``{"$npy": [...]}`` become
numpy arrays, ``{"$bytes": "text"}`` bytes; other values pass as they are.

    echo '{"op": "ping"}' | .venv-dj2/bin/python tests/dj2/driver.py
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

# The protocol gets its own copy of stdout; fd 1 itself goes to stderr, so nothing that
# DataJoint prints or logs (its handlers bind the stream at import) can corrupt it.
PROTOCOL = os.fdopen(os.dup(1), "w", encoding="utf-8")
os.dup2(2, 1)
warnings.filterwarnings("ignore")
import datajoint as dj  # noqa: E402 - after silencing the "no datajoint.json" warning
import datajoint.gc  # noqa: E402
import numpy as np  # noqa: E402
import tagged  # noqa: E402 - tests/dj2/tagged.py, this script's sibling

logging.getLogger("datajoint").setLevel(logging.ERROR)

INSTANCES: dict[str, Any] = {}
SCHEMAS: dict[tuple[str, str], Any] = {}
TABLES: dict[tuple[str, str, str], Any] = {}
CODECS: dict[str, Any] = {}


def value(raw: Any) -> Any:
    """Turn a tagged JSON value into what DataJoint inserts."""
    if isinstance(raw, dict) and len(raw) == 1:
        tag, inner = next(iter(raw.items()))
        if tag == "$blob":
            return np.asarray(inner)
        if tag == "$npy":
            return np.asarray(inner, dtype=float)
        if tag == "$bytes":
            return str(inner).encode()
    return raw


def schema_of(conn: str, name: str) -> Any:
    key = (conn, name)
    if key not in SCHEMAS:
        SCHEMAS[key] = INSTANCES[conn].Schema(name)
    return SCHEMAS[key]


def table_of(req: dict[str, Any]) -> Any:
    key = (req["conn"], req["schema"], req["table"])
    if key not in TABLES:  # declared by another instance: bind the same definition here
        for (_, schema, table), cls in list(TABLES.items()):
            if (schema, table) == key[1:]:
                declare({**req, "definition": cls.definition})
                break
    return TABLES[key]()


def connect(req: dict[str, Any]) -> str:
    backend = req.get("backend", "postgresql")
    # On MySQL a schema is a database: database.name means nothing there.
    extra = {"database__name": req["database"]} if backend == "postgresql" else {}
    inst = dj.Instance(
        host=req["host"],
        user=req["user"],
        password=req["password"],
        port=req["port"],
        backend=backend,
        use_tls=False,
        **extra,
    )
    inst.config.safemode = False
    INSTANCES[req["name"]] = inst
    return repr(inst)


def disconnect(req: dict[str, Any]) -> None:
    inst = INSTANCES.pop(req["conn"], None)
    for key in [k for k in SCHEMAS if k[0] == req["conn"]]:
        del SCHEMAS[key]
    for key in [k for k in TABLES if k[0] == req["conn"]]:
        del TABLES[key]
    if inst is not None:
        inst.connection.close()


def store(req: dict[str, Any]) -> None:
    INSTANCES[req["conn"]].config.stores[req["store"]] = dict(req["spec"])


def declare(req: dict[str, Any]) -> None:
    """Declare a Manual table; ``-> Name`` may name any table this instance declared before."""
    cls = type(req["table"], (dj.Manual,), {"definition": req["definition"]})
    context = {table: known for (conn, _, table), known in TABLES.items() if conn == req["conn"]}
    schema = schema_of(req["conn"], req["schema"])
    TABLES[(req["conn"], req["schema"], req["table"])] = schema(cls, context=context)


def insert(req: dict[str, Any]) -> int:
    rows = [{k: value(v) for k, v in row.items()} for row in req["rows"]]
    table_of(req).insert(rows)
    return len(rows)


def bulk(req: dict[str, Any]) -> int:
    """Insert ``count`` rows whose ``column`` holds distinct ``size``-byte values."""
    table = table_of(req)
    start, count, size = int(req["start"]), int(req["count"]), int(req.get("size", 64))
    pk = req.get("pk", "id")
    for first in range(start, start + count, 500):
        rows = []
        for n in range(first, min(first + 500, start + count)):
            payload = np.frombuffer(f"{n:012d}".encode().ljust(size, b"x"), dtype=np.uint8)
            rows.append({pk: n, req["column"]: payload})
        table.insert(rows)
    return count


def delete(req: dict[str, Any]) -> int:
    table = table_of(req)
    chosen = table & req["where"] if req.get("where") else table
    count = len(chosen)
    chosen.delete_quick()
    return count


def sql(req: dict[str, Any]) -> list[list[Any]]:
    cursor = INSTANCES[req["conn"]].connection.query(req["sql"], args=tuple(req.get("args", ())))
    try:
        return [list(row) for row in cursor.fetchall()]
    except Exception:  # noqa: BLE001 - a statement without a result
        return []


def transaction(req: dict[str, Any]) -> None:
    conn = INSTANCES[req["conn"]].connection
    {"begin": conn.start_transaction, "commit": conn.commit_transaction}.get(
        req["op"], conn.cancel_transaction
    )()


def codec(req: dict[str, Any]) -> None:
    """Define (register) a custom codec that stores through ``dtype`` (e.g. ``<blob@>``)."""
    inner = req["dtype"]
    if req["name"] in dj.codecs._codec_registry:
        return

    class Custom(dj.Codec):
        name = req["name"]

        def get_dtype(self, is_store: bool) -> str:
            return inner

        def encode(self, value: Any, *, key: Any = None, store_name: Any = None) -> Any:
            return np.asarray(value)

        def decode(self, stored: Any, *, key: Any = None) -> Any:
            return stored

    CODECS[req["name"]] = Custom


def check_object(item: Any) -> None:
    """Read a lazy value (``<object@>``, ``<filepath@>``, ``<npy@>``) in full; raise if gone."""
    if hasattr(item, "load") and hasattr(item, "shape"):  # an NpyRef
        item.load()
        return
    if not (hasattr(item, "verify") and hasattr(item, "is_dir")):
        return  # blobs, attachments and arrays were already read by fetch1
    item.fs.invalidate_cache()  # s3fs caches listings across calls (and tests)
    item.verify()  # for a folder, only when its manifest exists
    if not item.is_dir:
        item.read()
        return
    # ObjectRef.full_path leaves out an S3 store's location, so ask the backend itself.
    if not item._backend.exists(f"{item.path}.manifest.json"):
        raise FileNotFoundError(f"manifest of folder object {item.path} is missing")
    names = item.listdir()
    if not names:
        raise FileNotFoundError(f"folder object {item.path} is empty")
    for name in names:
        with item.open(name) as stream:
            stream.read()


def fetch(req: dict[str, Any]) -> dict[str, Any]:
    """Read every row back the way a user would; report the rows that fail and why."""
    table = table_of(req)
    keys = table.keys()
    failed = []
    for key in keys:
        try:
            row = (table & key).fetch1()
            for item in row.values():
                check_object(item)
        except Exception as err:  # noqa: BLE001 - every failure is a lost object to report
            failed.append({"key": {k: str(v) for k, v in key.items()}, "error": str(err)[:200]})
    return {"rows": len(keys), "failed": failed}


def gc(req: dict[str, Any]) -> dict[str, Any]:
    """Run DataJoint's own collector, with optional requests between its phases."""
    inst = INSTANCES[req["conn"]]
    schemas = [inst.Schema(name, create_schema=False) for name in req["schemas"]]
    forgotten = {name: dj.codecs._codec_registry.pop(name) for name in req.get("forget_codecs", ())}
    original_delete = datajoint.gc.delete_path
    pending = {"listing": list(req.get("before_listing", ())), "delete": req.get("before_delete")}

    class Collector(datajoint.gc.GarbageCollector):
        def list_hash_paths(self, schema_name: str) -> dict[str, int]:
            for inner in pending.pop("listing", None) or ():
                handle(inner)
            return dict(super().list_hash_paths(schema_name))

    def delete_path(*args: Any, **kwargs: Any) -> Any:
        for inner in pending.pop("delete", None) or ():
            handle(inner)
        return original_delete(*args, **kwargs)

    datajoint.gc.delete_path = delete_path
    started = time.perf_counter()
    try:
        stats = Collector(*schemas, store=req["store"]).collect(dry_run=req.get("dry_run", True))
    finally:
        datajoint.gc.delete_path = original_delete
        dj.codecs._codec_registry.update(forgotten)
    stats = {k: v for k, v in stats.items() if not k.startswith("orphaned_")}
    stats["seconds"] = round(time.perf_counter() - started, 3)
    return dict(stats)


TIERS = (("__", "computed"), ("_", "imported"), ("#", "lookup"))


def tier_of(table_name: str) -> str:
    """Return the tier a 2.x table name says: a part's name holds ``__`` after its master."""
    if "__" in table_name.lstrip("_#"):
        return "part"
    return next((tier for prefix, tier in TIERS if table_name.startswith(prefix)), "manual")


def encode_value(attr: Any, value: Any) -> Any:
    """Tag one fetched value; an attachment is a downloaded path, a filepath an ObjectRef."""
    codec = getattr(attr.codec, "name", None)
    if value is None:
        return None
    if codec == "attach":
        path = os.fspath(value)
        with open(path, "rb") as stream:
            return tagged.file_value(os.path.basename(path), stream.read())
    if codec in ("filepath", "object"):
        return tagged.file_value(str(value.path), value.read())
    return tagged.encode(value)


def describe_attr(attr: Any) -> dict[str, Any]:
    """Return what a comparison needs to know about one heading attribute."""
    return {
        "name": attr.name,
        "type": str(attr.type),
        "original_type": attr.original_type,
        "codec": getattr(attr.codec, "name", None),
        "store": attr.store,
        "in_key": bool(attr.in_key),
        "nullable": bool(attr.nullable),
        "default": None if attr.default is None else str(attr.default),
        "comment": attr.comment,
        "autoincrement": bool(attr.autoincrement),
        "lineage": attr.lineage,
    }


PG_INDEXES = """
SELECT ix.indisunique, array_agg(a.attname::text ORDER BY k.ord)
FROM pg_index ix
JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
CROSS JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
WHERE n.nspname = %s AND t.relname = %s AND NOT ix.indisprimary
GROUP BY ix.indexrelid, ix.indisunique
"""


def indexes(inst: Any, table: Any) -> list[dict[str, Any]]:
    """Return a table's secondary indexes (2.3.5's ``heading.indexes`` is empty on PostgreSQL)."""
    if inst.connection.adapter.backend != "postgresql":
        found = (table.heading.indexes or {}).items()
        return [{"columns": list(cols), "unique": bool(info["unique"])} for cols, info in found]
    args = (table.database, table.table_name)
    rows = inst.connection.query(PG_INDEXES, args=args).fetchall()
    return [{"columns": list(columns), "unique": bool(unique)} for unique, columns in rows]


def dump_table(inst: Any, table: Any, download: str) -> dict[str, Any]:
    """Read one FreeTable: heading, parents, indexes and every row, a fresh folder per row."""
    heading = table.heading
    rows = []
    for n, key in enumerate(sorted(table.keys(), key=lambda k: json.dumps(tagged.encode(k)))):
        folder = os.path.join(download, table.table_name.strip("#_~") or "t", str(n))
        inst.config["download_path"] = folder
        dj.config["download_path"] = folder
        try:
            row = (table & key).fetch1()
            rows.append({k: encode_value(heading.attributes[k], v) for k, v in row.items()})
        except Exception as err:  # noqa: BLE001 - an unreadable row is a finding to report
            tagged_key = {k: tagged.encode(v) for k, v in key.items()}
            rows.append({**tagged_key, "$error": f"{type(err).__name__}: {err}"[:300]})
    parents = table.parents(foreign_key_info=True)
    status = heading.table_status or {}
    return {
        "table": table.table_name,
        "tier": tier_of(table.table_name),
        "comment": status.get("comment") or status.get("Comment"),
        "primary_key": list(heading.primary_key),
        "attributes": [describe_attr(a) for a in heading.attributes.values()],
        "parents": [[name, dict(info["attr_map"])] for name, info in parents],
        "indexes": indexes(inst, table),
        "rows": rows,
    }


def dump(req: dict[str, Any]) -> dict[str, Any]:
    """Read a whole schema as plain 2.x does, declaring and decorating nothing."""
    inst = INSTANCES[req["conn"]]
    schema = inst.Schema(req["schema"], create_schema=False, create_tables=False)
    adapter = inst.connection.adapter
    tables = [dump_table(inst, table, req["download_path"]) for table in schema]
    lineage: list[list[str]] = []
    if schema.lineage_table_exists:
        name = adapter.make_full_table_name(req["schema"], "~lineage")
        query = f"SELECT table_name, attribute_name, lineage FROM {name}"
        lineage = sorted([list(map(str, row)) for row in inst.connection.query(query)])
    return {"tables": tables, "lineage": lineage}


def join(req: dict[str, Any]) -> dict[str, int]:
    """Count ``left * right`` and ``left & right`` of two existing tables (FreeTables)."""
    inst = INSTANCES[req["conn"]]
    adapter = inst.connection.adapter
    left, right = (
        inst.FreeTable(adapter.make_full_table_name(*req[side])) for side in ("left", "right")
    )
    return {"join": len(left * right), "semijoin": len(left & right), "left": len(left)}


OPS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "ping": lambda req: dj.__version__,
    "connect": connect,
    "disconnect": disconnect,
    "store": store,
    "declare": declare,
    "insert": insert,
    "bulk": bulk,
    "delete": delete,
    "sql": sql,
    "begin": transaction,
    "commit": transaction,
    "rollback": transaction,
    "codec": codec,
    "fetch": fetch,
    "gc": gc,
    "dump": dump,
    "join": join,
}


def handle(req: dict[str, Any]) -> Any:
    """Run one request and return its result (raises on failure)."""
    return OPS[req["op"]](req)


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        if req.get("op") == "quit":
            break
        try:
            answer = {"ok": True, "result": handle(req)}
        except Exception as err:  # noqa: BLE001 - reported to the test, which decides
            answer = {"ok": False, "error": f"{type(err).__name__}: {err}"}
            answer["traceback"] = traceback.format_exc()[-2000:]
        PROTOCOL.write(json.dumps(answer, default=str) + "\n")
        PROTOCOL.flush()


if __name__ == "__main__":
    main()
