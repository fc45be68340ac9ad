"""The migration a lab would write today: fetch with DataJoint 0.14, save to disk, insert with 2.x.

``bench/migrate.py`` runs this module twice per attempt, as two processes, because the two
DataJoint generations cannot share an interpreter:

* ``dump``, under ``.venv`` (DataJoint 0.14): ``fetch(as_dict=True, download_path=...)``
  of the master (attachments are downloaded into the folder, blobs unpacked into numpy
  arrays) and of the part, each table's rows pickled into one file;
* ``load``, under ``.venv-dj2`` (DataJoint 2.3.5): the pickles read back and inserted
  with ``insert`` into the 2.x tables (declared by ``dj-migrate`` beforehand, untimed),
  found through ``dj.VirtualModule``; the attachments go in by their downloaded paths.

It imports nothing but the standard library, numpy and DataJoint, as a lab's script
would. ``--limit N`` moves only the first N masters (and their parts); the benchmark then
scales the time to all rows, and says so.

    .venv/bin/python -m bench.migrate_script dump JOB.json DIR --limit 1000
    .venv-dj2/bin/python -m bench.migrate_script load JOB.json DIR
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path
from typing import Any


def dump(job: dict[str, Any], folder: Path, limit: int | None) -> int:
    """Fetch the source tables with DataJoint 0.14 and pickle them into ``folder``."""
    import datajoint as dj

    source = job["source"]
    dj.config["database.host"] = f"{source['host']}:{source['port']}"
    dj.config["database.user"] = source["user"]
    dj.config["database.password"] = source["password"]
    dj.config["database.use_tls"] = bool(source["use_tls"])
    dj.config["stores"] = {job["source_store"]: job["source_spec"]}
    lab = dj.VirtualModule("lab", job["source_schema"])
    chosen = lab.Recording & (f"recording_id < {int(limit)}" if limit else {})
    attachments = folder / "attachments"
    attachments.mkdir(parents=True, exist_ok=True)
    masters = chosen.fetch(as_dict=True, download_path=str(attachments))
    parts = (lab.Recording.Channel & chosen.proj()).fetch(as_dict=True)
    with (folder / "recording.pkl").open("wb") as out:
        pickle.dump(masters, out)
    with (folder / "recording__channel.pkl").open("wb") as out:
        pickle.dump(parts, out)
    return len(masters)


def load(job: dict[str, Any], folder: Path) -> int:
    """Insert the pickled rows into the 2.x tables with DataJoint 2.x."""
    import datajoint as dj

    dest = job["dest"]
    dj.config.database.host = dest["host"]
    dj.config.database.port = int(dest["port"])
    dj.config.database.user = dest["user"]
    dj.config.database.password = dest["password"]
    dj.config.database.backend = dest["backend"]
    dj.config.database.use_tls = bool(dest["use_tls"])
    if dest["backend"] == "postgresql":
        dj.config.database.name = dest["database"] or "postgres"
    dj.config.safemode = False
    dj.config.stores[job["dest_store"]] = {
        **job["dest_spec"],
        "hash_prefix": "_hash",
        "schema_prefix": "_schema",
    }
    lab = dj.VirtualModule("lab", job["dest_schema"])
    with (folder / "recording.pkl").open("rb") as handle:
        masters = pickle.load(handle)
    with (folder / "recording__channel.pkl").open("rb") as handle:
        parts = pickle.load(handle)
    lab.Recording.insert(masters)
    lab.Recording.Channel.insert(parts)
    return len(masters)


def main(argv: list[str]) -> int:
    step, job_path, folder = argv[0], Path(argv[1]), Path(argv[2])
    limit = int(argv[argv.index("--limit") + 1]) if "--limit" in argv else None
    job = json.loads(job_path.read_text())
    count = dump(job, folder, limit) if step == "dump" else load(job, folder)
    print(json.dumps({"step": step, "rows": count}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
