"""Pull the link benchmark's workload with a link tool: ``from link import link``, then ``pull()``.

``bench/link_pull.py`` runs this one file for two contestants, each with its own
python: datajoint-link 0.11's throwaway venv, and this repository's venv (where
``link`` is djbridge's re-export of ``djbridge.link.link``). So it must import
nothing but the standard library, DataJoint and ``link``: **not djbridge, and not
the ``bench`` package**, which the 0.11 venv does not have. The job file (see
``bench/link_workload.py``) says where the servers and stores are, and which
``stores=`` mapping to pass.

It runs as a script, by path, so that the same file serves both venvs. It is
never called ``link.py``, which would shadow the package it imports. It prints
one ``BENCH-RESULT {...}`` line with three wall-clock times: the imports, the
decoration (connecting and declaring the local tables) and the pull; and the
pull's ``pull_window`` in ``time.monotonic()`` (one clock for every process on the
machine), so the orchestrator can count the round trips its proxies saw in it.

    /tmp/djbridge-bench-link011/bin/python bench/link_driver.py JOB.json   # 0.11
    .venv/bin/python bench/link_driver.py JOB.json                          # djbridge
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

RESULT_MARK = "BENCH-RESULT "


def main(argv: list[str]) -> int:
    job: dict[str, Any] = json.loads(Path(argv[0]).read_text())
    started = time.perf_counter()
    import datajoint as dj

    from link import link

    dj.config["database.host"] = job["local"]["host"]
    dj.config["database.user"] = job["local"]["user"]
    dj.config["database.password"] = job["local"]["password"]
    dj.config["stores"] = job["dj_stores"]
    dj.config["safemode"] = False
    imported = time.perf_counter()

    @link(
        job["source_host"],
        job["source_schema"],
        job["outbound_schema"],
        job["outbound_table"],
        job["local_schema"],
        stores=job["link_stores"],
    )
    class Recording:
        """The source table of the benchmark."""

    table: Any = Recording()  # the decorator returns a linked table; mypy sees the bare class
    decorated = time.perf_counter()
    window = [time.monotonic()]
    table.source.pull()
    window.append(time.monotonic())
    pulled = time.perf_counter()
    result = {
        "import_s": imported - started,
        "setup_s": decorated - imported,
        "pull_s": pulled - decorated,
        "pull_window": window,
    }
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
