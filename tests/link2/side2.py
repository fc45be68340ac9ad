"""The DataJoint 2.x side of the link tests: a source lab's pipeline, and reading tables back.

djbridge's tests run under DataJoint 0.14; this module runs under DataJoint 2.x, as
``.venv-dj2/bin/python -m tests.link2.side2`` with the repository on ``PYTHONPATH``
(:func:`tests.link2.runner.side2` starts it). It reads one JSON request on stdin and
writes one JSON answer on stdout. Each request names its own server account and
stores (``connect``, ``stores``) and runs on a ``dj.Instance`` of them, so the
process never reads a ``datajoint.json``. Operations:

* ``build``: declare (or bind to) the source lab's pipeline (``Subject``, ``Recording`` and its
  part ``Recording.Channel``, every codec on the store ``raw``) in ``schema`` and
  insert the recordings ``ids``; ``kind`` ``"full"`` has every column type the link
  must carry (``uuid`` on MySQL only: 2.3.5 cannot keep one on PostgreSQL),
  ``"small"`` the cross-backend set (ints, varchar, json, bool, ``<blob@>``,
  ``<attach@>``, ``<object@>``); given ``download``, it answers what ``read`` would,
  and ``big`` makes every attachment and file object that many bytes larger;
* ``more``: insert more recordings into an existing pipeline;
* ``protocols``: declare a lookup table ``Protocol`` with a two-part key (a
  ``varchar`` and an ``int16``) and insert the ``keys``;
* ``read``: read tables with ``dj.VirtualModule``, the way a user reads a schema it
  has no code for: every row, values tagged by :mod:`tests.dj2.tagged` (an
  attachment is its name and bytes, an ``<object@>`` its extension and every file's
  bytes, a ``<filepath@>`` its path and bytes, an ``<npy@>`` its array), the raw JSON
  of every codec column, and the size of ``master * part`` (a join on shared names);
* ``flag``: flag rows in the outbound table the seed's way (``fetch1``, ``delete``,
  ``insert1`` with ``is_flagged = "TRUE"``).

    echo '{"op": "read", "connect": {...}, "stores": {...}, "schema": "lab", ...}' |
        PYTHONPATH=. .venv-dj2/bin/python -m tests.link2.side2
"""

from __future__ import annotations

import datetime
import decimal
import json
import logging
import os
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

# Only the answer goes to stdout; whatever DataJoint prints goes to stderr.
ANSWER = os.fdopen(os.dup(1), "w", encoding="utf-8")
os.dup2(2, 1)
warnings.filterwarnings("ignore")
import datajoint as dj  # noqa: E402
import numpy as np  # noqa: E402
from datajoint.hash_registry import get_store_backend  # noqa: E402

from tests.dj2 import tagged  # noqa: E402

logging.getLogger("datajoint").setLevel(logging.ERROR)

SUBJECT = """
# an animal of the source lab
subject_id: int32
---
species = "mouse": varchar(32)
"""
FULL = """
# one recording session
rec_id: int32
---
-> Subject
i8: int8                     # small and signed
i16 = 7: int16               # left to its default
i64: int64
f32: float32
f64: float64
dec: decimal(8,3)
label: varchar(64)           # unique across the lab
kind: enum('ephys', 'imaging', 'behaviour')
day: date
started: datetime
ok: bool
meta = null: json
{uuid}arr: <blob>
ext: <blob@raw>              # the raw trace
att = null: <attach@raw>
h = null: <hash@raw>
obj = null: <object@raw>     # a file or a folder
npy = null: <npy@raw>
fp = null: <filepath@raw>
note = null: varchar(100)    # often missing
unique index (label)
index (day)
"""
SMALL = """
# one recording session
rec_id: int32
---
-> Subject
count: int64
label: varchar(64)           # free text
meta = null: json
ok: bool
ext: <blob@raw>
att = null: <attach@raw>
obj = null: <object@raw>
"""
PROTOCOL = """
# a protocol the lab follows
name: varchar(24)            # short name
version: int16
---
ext: <blob@raw>
att = null: <attach@raw>
obj = null: <object@raw>     # a file or a folder
npy = null: <npy@raw>
"""
CHANNEL = """
# one electrode of a recording
-> master
channel: int16
---
trace: <blob@raw>
gain = 1.0: float64          # amplifier gain
spikes = null: <npy@raw>     # on channel 1 only
"""


def instance(req: dict[str, Any]) -> Any:
    """Open a ``dj.Instance`` on the request's account, with its stores and no safemode."""
    conn = req["connect"]
    extra = {"database__name": conn["database"]} if conn["backend"] == "postgresql" else {}
    inst = dj.Instance(
        host=conn["host"],
        user=conn["user"],
        password=conn["password"],
        port=conn["port"],
        backend=conn["backend"],
        use_tls=conn.get("use_tls", False),
        **extra,
    )
    inst.config.safemode = False
    for name, spec in req.get("stores", {}).items():
        inst.config.stores[name] = dict(spec)
    return inst


def declare(inst: Any, req: dict[str, Any]) -> tuple[Any, Any]:
    """Declare (or bind to) the source pipeline; return the Subject and Recording classes."""
    schema = inst.Schema(req["schema"])
    context: dict[str, Any] = {}
    subject = schema(type("Subject", (dj.Manual,), {"definition": SUBJECT}), context=context)
    context["Subject"] = subject
    if req.get("kind", "full") == "full":
        with_uuid = "uid = null: uuid\n" if inst.connection.adapter.backend == "mysql" else ""
        definition = FULL.format(uuid=with_uuid)
    else:
        definition = SMALL
    channel = type("Channel", (dj.Part,), {"definition": CHANNEL})
    body = {"definition": definition, "Channel": channel}
    return subject, schema(type("Recording", (dj.Manual,), body), context=context)


def append(path: Path, size: int, rng: Any) -> None:
    """Append ``size`` random bytes to a file, a few MiB at a time."""
    with path.open("ab") as stream:
        for start in range(0, size, 8 << 20):
            stream.write(rng.bytes(min(8 << 20, size - start)))


def recording(n: int, kind: str, files: Path, inst: Any, big: int = 0) -> dict[str, Any]:
    """Return recording ``n``: values of its own, NULL in every nullable column when n % 3 == 0.

    With ``big``, its attachment and (odd ``n``) its file object grow by that many bytes.
    """
    rng = np.random.default_rng(n)
    att = files / f"att{n}" / f"notes-{n}.bin"
    att.parent.mkdir(parents=True, exist_ok=True)
    att.write_bytes(f"notes of recording {n}\n".encode() + b"\x00\xff" + rng.bytes(40))
    if big:
        append(att, big, rng)
    if n % 2:
        obj = files / f"obj{n}" / "data.dat"
        obj.parent.mkdir(parents=True, exist_ok=True)
        obj.write_bytes(rng.bytes(100 + n))
        if big:
            append(obj, big, rng)
    else:
        obj = files / f"dir{n}"
        (obj / "sub").mkdir(parents=True, exist_ok=True)
        (obj / "one.txt").write_text(f"one {n}\n")
        (obj / "sub" / "two.bin").write_bytes(rng.bytes(50 + n))
    empty = n % 3 == 0
    row: dict[str, Any] = {
        "rec_id": n,
        "subject_id": 1 + n % 2,
        "label": f"rec {n} ünï 'q' \"dq\"",
        "meta": None if empty else {"n": n, "list": [1, 2.5, "x"], "nested": {"ok": n % 2 == 0}},
        "ok": n % 2 == 0,
        "ext": rng.normal(size=(2, 3)),
        "att": None if empty else str(att),
        "obj": None if empty else str(obj),
    }
    if kind == "small":
        return {**row, "count": 2**40 + n}
    if not empty:
        fp = f"user/rec{n}.bin"
        data = f"user file {n}\n".encode() * (n + 1)
        get_store_backend("raw", config=inst.config).put_buffer(data, fp)
    row.update(
        i8=-128 + n % 256,
        i64=-(2**62) - n,
        f32=1.1 * n,
        f64=1 / (n + 3),
        dec=decimal.Decimal("12.345") + n,
        kind=("ephys", "imaging", "behaviour")[n % 3],
        day=datetime.date(2024, 2, 29) + datetime.timedelta(days=n),
        started=datetime.datetime(2024, 2, 29, 23, 59, 58) + datetime.timedelta(hours=n),
        arr=np.asfortranarray(np.arange(6 * (n + 1), dtype=np.int16).reshape(-1, 2)),
        h=None if empty else f"hash payload {n}".encode(),
        npy=None if empty else np.linspace(0, n, 7).reshape(7, 1),
        fp=None if empty else fp,
        note=None if empty else f"note {n}",
    )
    if n % 4 == 1:
        row["i16"] = -n
    if inst.connection.adapter.backend == "mysql":
        row["uid"] = None if empty else uuid.UUID(int=n * 7919 + 1)
    return row


def channels(n: int) -> list[dict[str, Any]]:
    """Return recording ``n``'s two part rows."""
    return [
        {"rec_id": n, "channel": c, "trace": np.arange(n + c + 1, dtype=np.float32), "gain": 0.5,
         "spikes": np.full((2, n + 1), c, dtype=np.int32) if c else None}
        for c in range(2)
    ]  # fmt: skip


def insert(inst: Any, req: dict[str, Any]) -> int:
    """Insert the recordings ``ids`` (their subjects first) with their part rows."""
    # The filepath codec and get_store_backend read the global config's stores.
    dj.config.stores.update(inst.config.stores)
    subject, rec = declare(inst, req)
    subject.insert1({"subject_id": 1}, skip_duplicates=True)
    subject.insert1({"subject_id": 2, "species": "rat"}, skip_duplicates=True)
    files = Path(req["files"])
    ids = list(req["ids"])
    for first in range(0, len(ids), 200):
        chunk = ids[first : first + 200]
        kind, big = req.get("kind", "full"), int(req.get("big", 0))
        rows = [recording(n, kind, files, inst, big) for n in chunk]
        # DataJoint 2.x takes one set of fields per insert: a row left to a default goes alone.
        for fields in {tuple(row) for row in rows}:
            rec.insert([row for row in rows if tuple(row) == fields])
        rec.Channel.insert([row for n in chunk for row in channels(n)])
    return len(ids)


def build(req: dict[str, Any]) -> Any:
    """Declare the pipeline and insert the first recordings; read them if asked (``download``)."""
    count = insert(instance(req), req)
    return read(req) if req.get("download") else count


def protocols(req: dict[str, Any]) -> Any:
    """Declare the lookup table ``Protocol`` (a two-part key) and insert the ``keys``."""
    inst = instance(req)
    dj.config.stores.update(inst.config.stores)
    schema = inst.Schema(req["schema"])
    table = schema(type("Protocol", (dj.Lookup,), {"definition": PROTOCOL}))
    rows = []
    for n, (name, version) in enumerate(req["keys"], start=1):
        values = recording(n, "small", Path(req["files"]), inst)
        empty = values["att"] is None
        rows.append({"name": name, "version": version, "ext": values["ext"],
                     "att": values["att"], "obj": values["obj"],
                     "npy": None if empty else np.arange(n + 2.0)})  # fmt: skip
    table.insert(rows)
    return read({**req, "table": "Protocol", "parts": []}) if req.get("download") else len(rows)


# ---- reading -------------------------------------------------------------------------------
def folder_files(ref: Any) -> dict[str, bytes]:
    """Return every file of a folder object, by its path inside the folder."""
    out: dict[str, bytes] = {}
    for root, _, names in ref.walk():
        for name in names:
            relative = f"{root}/{name}" if root else name
            with ref.open(relative) as stream:
                out[relative] = stream.read()
    return dict(sorted(out.items()))


def encode(attr: Any, value: Any) -> Any:
    """Tag one fetched value; lazy references are read in full."""
    codec = getattr(attr.codec, "name", None)
    if value is None:
        return None
    if codec == "attach":
        path = Path(os.fspath(value))
        return tagged.file_value(path.name, path.read_bytes())
    if codec == "filepath":
        return tagged.file_value(str(value.path), value.read())
    if codec == "object":
        value.fs.invalidate_cache()
        files = folder_files(value) if value.is_dir else {"": value.read()}
        return tagged.encode({"ext": value.ext, "verified": value.verify(), "files": files})
    if codec == "npy":
        return tagged.encode(np.asarray(value.load()))
    return tagged.encode(value)


def raw_json(inst: Any, table: Any) -> dict[str, dict[str, Any]]:
    """Return the stored JSON of every codec column that keeps one, by tagged primary key."""
    heading = table.heading
    columns = [a.name for a in heading.attributes.values() if a.codec is not None and a.store]
    if not columns:
        return {}
    quote = inst.connection.adapter.quote_identifier
    names = [*heading.primary_key, *columns]
    sql = f"SELECT {', '.join(quote(n) for n in names)} FROM {table.full_table_name}"
    out = {}
    for row in inst.connection.query(sql).fetchall():
        key = json.dumps([tagged.encode(v) for v in row[: len(heading.primary_key)]])
        values = row[len(heading.primary_key) :]
        out[key] = {
            name: json.loads(v) if isinstance(v, str | bytes) else v
            for name, v in zip(columns, values, strict=True)
        }
    return out


def read_table(inst: Any, table: Any, download: Path) -> dict[str, Any]:
    """Read every row of one table, each into a download folder of its own."""
    heading = table.heading
    rows = []
    for n, key in enumerate(table.keys(order_by=table.primary_key)):
        folder = download / table.table_name.strip("#_~") / str(n)
        folder.mkdir(parents=True, exist_ok=True)
        inst.config["download_path"] = str(folder)
        dj.config["download_path"] = str(folder)
        try:
            row = (table & key).fetch1()
            rows.append({k: encode(heading.attributes[k], v) for k, v in row.items()})
        except Exception as err:  # noqa: BLE001 - an unreadable row is the finding to report
            tagged_key = {k: tagged.encode(v) for k, v in key.items()}
            rows.append({**tagged_key, "$error": f"{type(err).__name__}: {err}"[:400]})
    return {
        "primary_key": list(heading.primary_key),
        "rows": rows,
        "json": raw_json(inst, table),
    }


def read(req: dict[str, Any]) -> dict[str, Any]:
    """Read the master ``table`` and its parts from ``schema`` as plain 2.x does."""
    inst = instance(req)
    module = dj.VirtualModule("linked", req["schema"], connection=inst.connection)
    master = getattr(module, req.get("table", "Recording"))
    download = Path(req["download"])
    out = {"master": read_table(inst, master(), download), "parts": {}}
    for name in req.get("parts", ["Channel"]):
        part = getattr(master, name)
        out["parts"][name] = read_table(inst, part(), download)
        out["parts"][name]["join"] = len(master() * part())
    return out


def flag(req: dict[str, Any]) -> int:
    """Flag rows of the outbound table as the seed's README does; return how many."""
    inst = instance(req)
    helper = dj.VirtualModule("helper", req["schema"], connection=inst.connection)
    Helper = getattr(helper, req["table"])  # noqa: N806 - the seed's name for the class
    for key in req["keys"]:
        row = (Helper() & key).fetch1()
        (Helper() & row).delete()
        row["is_flagged"] = "TRUE"
        Helper().insert1(row)
    return len(req["keys"])


OPS = {
    "build": build,
    "protocols": protocols,
    "more": lambda req: insert(instance(req), req),
    "read": read,
    "flag": flag,
}


def main() -> None:
    req = json.loads(sys.stdin.read())
    try:
        answer = {"ok": True, "result": OPS[req["op"]](req)}
    except Exception as err:  # noqa: BLE001 - reported to the test, which decides
        import traceback

        answer = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        answer["traceback"] = traceback.format_exc()[-3000:]
    ANSWER.write(json.dumps(answer, default=str))
    ANSWER.flush()


if __name__ == "__main__":
    main()
