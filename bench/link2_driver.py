"""The djbridge contestant of ``bench/link2.py``: the seed's decorator and one pull, under 2.x.

It runs as a DataJoint 2.x lab runs the link: ``.venv-dj2/bin/python -m bench.link2_driver
JOB.json`` in a folder whose ``datajoint.json`` and ``.secrets/`` name the local account and
both stores, with ``LINK_USER`` and ``LINK_PASS`` set. It imports nothing of the benchmark
and nothing of djbridge but ``from link import link``, and times three things apart: the
imports, the decoration (connecting, reading the source's headings, declaring the
outbound and local tables) and the pull of every row. It prints one line::

    BENCH-RESULT {"import_s": ..., "decorate_s": ..., "pull_s": ..., "pull_window": [...],
                  "rows": ..., "parts": ..., "objects": ..., "bytes": ..., "failed": ...,
                  "peak_kib": ...}

``pull_window`` is in ``time.monotonic()`` (one clock for every process on the machine), so
the benchmark can count the round trips its latency proxy saw inside it; ``peak_kib`` is
this process's ``VmHWM`` at the end (reset by ``exec``, so nothing of the parent's counts).
With ``"profile": PATH`` in the job, the pull runs under ``cProfile`` and its stats go there.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

RESULT_MARK = "BENCH-RESULT "


def peak_kib() -> int:
    """Return this process's peak resident set size (``VmHWM``) in KiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def pull(table: Any, profile: str | None) -> Any:
    """Pull every row, under ``cProfile`` when ``profile`` names a stats file."""
    if not profile:
        return table.source.pull(display_progress=False)
    import cProfile

    profiler = cProfile.Profile()
    try:
        return profiler.runcall(table.source.pull, display_progress=False)
    finally:
        profiler.dump_stats(profile)


def main(argv: list[str]) -> int:
    job: dict[str, Any] = json.loads(Path(argv[0]).read_text())
    started = time.perf_counter()
    import datajoint  # noqa: F401 - imported here so that its time is not the decorator's

    from link import link

    imported = time.perf_counter()
    options: dict[str, Any] = {"stores": job["stores"], "backend": job["backend"],
                               "batch_size": job["batch_size"]}  # fmt: skip
    if job.get("database"):
        options["database"] = job["database"]
    decorator = link(job["source_host"], job["source_schema"], job["outbound_schema"],
                     job["outbound_table"], job["local_schema"], **options)  # fmt: skip
    table = decorator(type(job["table"], (), {"__doc__": "A table of the source lab."}))()
    decorated = time.perf_counter()
    window = [time.monotonic()]
    result = pull(table, job.get("profile"))
    window.append(time.monotonic())
    pulled = time.perf_counter()
    report = {
        "import_s": imported - started,
        "decorate_s": decorated - imported,
        "pull_s": pulled - decorated,
        "pull_window": window,
        "rows": result.rows_copied,
        "parts": result.part_rows_copied,
        "objects": result.objects_copied,
        "bytes": result.bytes_copied,
        "failed": len(result.failed),
        "peak_kib": peak_kib(),
    }
    print(RESULT_MARK + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
