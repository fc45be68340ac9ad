"""The link benchmark's workload and the one job description every contestant reads.

This module owns two things that ``bench/link_pull.py`` (the orchestrator) and
``bench/link_floor.py`` (the bare-floor contestant) must agree on:

* **the source pipeline**: a Manual master ``Recording`` with one ``blob@`` (about
  2 KB of packed float64 samples) and one ``attach@`` (a 4 KB file) per row, and a
  part ``Recording.Channel`` with three rows per master. :func:`declare_recording`
  declares it against any store, so the floor can pre-declare the same tables on
  the local side with the destination store;
* **the job**: a JSON-able dict that tells one contestant process where the
  source and local servers are, which schemas and outbound table to use, the
  ``dj.config["stores"]`` entries, and the ``stores=`` mapping to pass to ``@link``.
  Every contestant runs in its own process, so DataJoint's global config is never
  shared.

Where those objects live is DataJoint's rule, not the benchmark's: the floor
takes every object key from :func:`djbridge.layout.object_key`.

    from bench.link_workload import build_workload, make_job
    build_workload(conn, "bench_src_file", "src_file", rows=50, scratch=tmp)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TABLE = "Recording"
PARTS_PER_ROW = 3
BLOB_SAMPLES = 250  # 250 float64 = 2,000 bytes before DataJoint's header
ATTACH_BYTES = 4096
CHANNEL = """
-> master
channel : tinyint unsigned
---
gain : float
"""
"""The part table of the benchmarks' recordings: one row per channel and its gain."""


def declare_recording(schema: Any, store: str) -> Any:
    """Declare ``Recording`` and its part ``Channel`` in ``schema`` with external ``store``."""
    import datajoint as dj

    class Recording(dj.Manual):
        definition = f"""
        # one recording: its raw samples and its lab notes, kept in store {store}
        recording_id : int
        ---
        label : varchar(32)
        trace : blob@{store}      # about 2 KB of packed samples
        notes : attach@{store}    # a 4 KB file
        """

        class Channel(dj.Part):
            definition = CHANNEL

    return schema(Recording)


def build_workload(connection: Any, schema_name: str, store: str, rows: int, scratch: Path) -> None:
    """Declare the source tables and insert ``rows`` masters with their parts and objects.

    ``dj.config["stores"][store]`` must already describe the source store.
    """
    import datajoint as dj
    import numpy as np

    recording = declare_recording(dj.Schema(schema_name, connection=connection), store)
    rng = np.random.default_rng(len(schema_name) + rows)
    notes_dir = scratch / f"notes-{schema_name}"
    notes_dir.mkdir(parents=True, exist_ok=True)
    masters: list[tuple[Any, ...]] = []
    parts: list[tuple[Any, ...]] = []
    for rid in range(rows):
        note = notes_dir / f"notes-{rid:05d}.bin"
        note.write_bytes(rng.bytes(ATTACH_BYTES))
        trace = rng.normal(size=BLOB_SAMPLES)
        masters.append((rid, f"rec-{rid}", trace, str(note)))
        parts.extend((rid, ch, float(rng.uniform(0.5, 2.0))) for ch in range(PARTS_PER_ROW))
    recording.insert(masters)
    recording.Channel.insert(parts)


def make_job(**fields: Any) -> dict[str, Any]:
    """Return a job dict after checking it has every field a contestant reads."""
    required = {
        "source_host",
        "source_schema",
        "outbound_schema",
        "outbound_table",
        "local_schema",
        "local",
        "dj_stores",
        "link_stores",
        "src_store",
        "dst_store",
    }
    missing = required - set(fields)
    if missing:
        raise ValueError(f"job is missing {', '.join(sorted(missing))}")
    return dict(fields)


def read_job(path: str) -> dict[str, Any]:
    """Load a job written by the orchestrator."""
    job: dict[str, Any] = json.loads(Path(path).read_text())
    return job
