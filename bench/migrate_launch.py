"""Run one command and report its wall time and its own peak RSS, for ``bench/migrate.py``.

A child's ``ru_maxrss`` also counts the resident size of the process it was forked (or
vforked) from, up to its ``exec``: a contestant started straight from the benchmark, which
holds DataJoint 0.14, numpy and the workload, would inherit some hundred MiB that are not
its own. So the benchmark starts this small launcher (``python -S``, standard library only,
a few MiB), and the launcher starts the contestant and reads the contestant's
``ru_maxrss`` from ``os.wait4``: at most the launcher's few MiB are inherited.

It writes one JSON object to RESULT: ``{"seconds": ..., "peak_kib": ..., "status": ...}``;
the command's stdout and stderr pass through.

    python -S bench/migrate_launch.py RESULT.json -- .venv-dj2/bin/dj-migrate run
"""

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    result_path, separator, *command = argv
    if separator != "--" or not command:
        print("usage: migrate_launch.py RESULT -- COMMAND ...", file=sys.stderr)
        return 2
    started = time.perf_counter()
    pid = os.posix_spawnp(command[0], command, dict(os.environ))
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    with open(result_path, "w") as out:
        json.dump({"seconds": seconds, "peak_kib": usage.ru_maxrss, "status": code}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
