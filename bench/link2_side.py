"""The DataJoint 2.x side of ``bench/link2.py``: build the source lab, declare tables, read back.

The benchmark runs under ``.venv`` (DataJoint 0.14); whatever needs DataJoint 2.x runs in
a process of its own, ``.venv-dj2/bin/python -m bench.link2_side REQUEST.json``, with this
checkout on ``PYTHONPATH``. A request names its own server account (``connect``) and
stores and runs on a ``dj.Instance`` of them, so no ``datajoint.json`` is read. Operations:

* ``build``: declare ``Recording`` (a ``<blob@raw>`` of 1,024 float64, an ``<attach@raw>``
  and an ``<object@raw>`` of 8 KiB files) and its part ``Recording.Channel`` (3 rows per
  recording, plain numbers) in ``schema``, and insert ``rows`` recordings in bulk;
* ``declare``: declare the same tables in a local schema with the destination store,
  empty: the bare floor inserts into them;
* ``big``: declare ``BigAttach`` (``<attach@raw>``) and ``BigObject`` (``<object@raw>``) and
  insert ``rows`` rows of ``size`` bytes each (sparse files: a distinct first line, then
  zeros), one row per insert;
* ``check``: read a sample of a local schema's recordings back with plain 2.x
  (``dj.VirtualModule``) and compare every value with what ``build`` inserted.

Every value is a function of the row number (:func:`recording`), so ``check`` needs
nothing but the numbers. The answer is one ``BENCH-RESULT {...}`` line on stdout.

    echo '{"op": "build", "connect": {...}, "stores": {"raw": {...}}, "schema": "src",
           "rows": 1000, "files": "/dev/shm/x"}' > req.json
    PYTHONPATH=. .venv-dj2/bin/python -m bench.link2_side req.json
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any

RESULT_MARK = "BENCH-RESULT "
PARTS_PER_ROW = 3
SAMPLES = 1024  # float64: 8 KiB before DataJoint's header
FILE_BYTES = 8192
INSERT_CHUNK = 250
MASTER = """
# one recording: its samples, its notes and its raw file, kept in store {store}
rec_id: int32
---
label: varchar(32)
samples: <blob@{store}>      # 1,024 float64
notes: <attach@{store}>      # an 8 KiB file
raw: <object@{store}>        # an 8 KiB file
"""
CHANNEL = """
# one channel of a recording
-> master
channel: int16
---
gain: float64
offset: int32
"""
BIG = """
big_id: int32
---
payload: <{codec}@{store}>
"""
BIG_TABLES = {"attach": "BigAttach", "object": "BigObject"}
"""The big tables by codec: the class name the link is given, one table per codec."""


def instance(req: dict[str, Any]) -> Any:
    """Open a ``dj.Instance`` on the request's account, with its stores and no safemode."""
    import datajoint as dj

    conn = req["connect"]
    extra = {"database__name": conn["database"]} if conn["backend"] == "postgresql" else {}
    inst = dj.Instance(host=conn["host"], user=conn["user"], password=conn["password"],
                       port=conn["port"], backend=conn["backend"], use_tls=False,
                       **extra)  # fmt: skip
    inst.config.safemode = False
    for name, spec in req.get("stores", {}).items():
        inst.config.stores[name] = dict(spec)
    dj.config.stores.update(inst.config.stores)  # some codecs read the global stores
    return inst


def declare(inst: Any, schema_name: str, store: str) -> Any:
    """Declare (or bind to) ``Recording`` and its part in ``schema_name``; return the class."""
    import datajoint as dj

    channel = type("Channel", (dj.Part,), {"definition": CHANNEL})
    body = {"definition": MASTER.format(store=store), "Channel": channel}
    return inst.Schema(schema_name)(type("Recording", (dj.Manual,), body), context={})


def file_bytes(kind: str, row: int) -> bytes:
    """Return the 8 KiB contents of row ``row``'s ``notes`` or ``raw`` file."""
    return random.Random(f"{kind}-{row}").randbytes(FILE_BYTES)


def samples(row: int) -> Any:
    """Return row ``row``'s ``samples``: 1,024 float64, distinct per row."""
    import numpy as np

    return np.arange(SAMPLES, dtype=np.float64) + row * SAMPLES


def recording(row: int, files: Path) -> dict[str, Any]:
    """Return recording ``row``, writing its two files into ``files``."""
    notes = files / f"notes-{row:06d}.bin"
    raw = files / f"raw-{row:06d}.dat"
    notes.write_bytes(file_bytes("notes", row))
    raw.write_bytes(file_bytes("raw", row))
    return {"rec_id": row, "label": f"rec-{row}", "samples": samples(row),
            "notes": str(notes), "raw": str(raw)}  # fmt: skip


def channels(row: int) -> list[dict[str, Any]]:
    """Return recording ``row``'s part rows."""
    return [{"rec_id": row, "channel": c, "gain": 0.5 + c + row % 7 / 8, "offset": row * 10 + c}
            for c in range(PARTS_PER_ROW)]  # fmt: skip


def build(req: dict[str, Any]) -> dict[str, Any]:
    """Declare the source pipeline and insert ``rows`` recordings and their parts."""
    started = time.perf_counter()
    inst = instance(req)
    table = declare(inst, req["schema"], req["store"])
    files = Path(req["files"])
    files.mkdir(parents=True, exist_ok=True)
    rows = int(req["rows"])
    for first in range(0, rows, INSERT_CHUNK):
        chunk = range(first, min(rows, first + INSERT_CHUNK))
        table.insert([recording(row, files) for row in chunk])
        table.Channel.insert([part for row in chunk for part in channels(row)])
    return {"seconds": time.perf_counter() - started, "rows": len(table()),
            "parts": len(table.Channel())}  # fmt: skip


def declare_local(req: dict[str, Any]) -> dict[str, Any]:
    """Declare the empty tables the floor inserts into."""
    started = time.perf_counter()
    declare(instance(req), req["schema"], req["store"])
    return {"seconds": time.perf_counter() - started}


def big_file(path: Path, row: int, size: int) -> Path:
    """Write a sparse file of ``size`` bytes: a line naming the row, then zeros."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(f"big row {row} of {path.name}\n".encode())
        out.truncate(size)
    return path


def big(req: dict[str, Any]) -> dict[str, Any]:
    """Declare the big tables and insert ``rows`` rows of ``size`` bytes into each."""
    import datajoint as dj

    started = time.perf_counter()
    inst = instance(req)
    schema = inst.Schema(req["schema"])
    files = Path(req["files"])
    for codec, name in BIG_TABLES.items():
        definition = BIG.format(codec=codec, store=req["store"])
        table = schema(type(name, (dj.Manual,), {"definition": definition}), context={})
        for row in range(int(req["rows"])):
            path = big_file(files / f"{codec}-{row}" / f"big-{row}.bin", row, int(req["size"]))
            table.insert1({"big_id": row, "payload": str(path)})
            path.unlink()
    return {"seconds": time.perf_counter() - started}


def check(req: dict[str, Any]) -> dict[str, Any]:
    """Read recordings ``ids`` of a local schema with plain 2.x; return what differs."""
    import datajoint as dj
    import numpy as np

    inst = instance(req)
    module = dj.VirtualModule("linked", req["schema"], connection=inst.connection)
    problems = []
    download = Path(req["download"])
    for row in req["ids"]:
        folder = download / str(row)
        folder.mkdir(parents=True, exist_ok=True)
        inst.config["download_path"] = str(folder)
        dj.config["download_path"] = str(folder)
        try:
            got = (module.Recording & {"rec_id": row}).fetch1()
            ok = (
                got["label"] == f"rec-{row}"
                and np.array_equal(got["samples"], samples(row))
                and Path(got["notes"]).name == f"notes-{row:06d}.bin"
                and Path(got["notes"]).read_bytes() == file_bytes("notes", row)
                and got["raw"].read() == file_bytes("raw", row)
            )
            parts = (module.Recording.Channel & {"rec_id": row}).to_dicts(order_by="channel")
            want = channels(row)
            ok = ok and [(p["channel"], p["gain"], p["offset"]) for p in parts] == [
                (p["channel"], p["gain"], p["offset"]) for p in want
            ]
        except Exception as err:  # noqa: BLE001 - an unreadable row is the finding to report
            problems.append(f"row {row}: {type(err).__name__}: {err}"[:300])
            continue
        if not ok:
            problems.append(f"row {row} differs from what the source holds")
    return {"problems": problems, "rows": len(module.Recording()),
            "joined": len(module.Recording() * module.Recording.Channel())}  # fmt: skip


OPS = {"build": build, "declare": declare_local, "big": big, "check": check}


def main(argv: list[str]) -> int:
    warnings.filterwarnings("ignore")
    logging.getLogger("datajoint").setLevel(logging.ERROR)
    req = json.loads(Path(argv[0]).read_text())
    print(RESULT_MARK + json.dumps(OPS[req["op"]](req), default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
