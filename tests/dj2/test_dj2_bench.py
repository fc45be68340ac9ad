"""bench/dj2_gc.py at a tiny N: the side-by-side benchmark, PostgreSQL beside MySQL, must work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_dj2_benchmark_runs_at_a_tiny_n(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    command = [sys.executable, "-m", "bench.dj2_gc", "--sizes", "200", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert {(r["contestant"], r["server"], r["backend"]) for r in results} == {
        (contestant, server, backend)
        for contestant in ("dj.gc", "djbridge")
        for server in ("postgresql", "mysql")
        for backend in ("s3", "file")
    }
    assert all(r["deleted"] == 100 and r["live_lost"] == 0 for r in results)
    summary = done.stdout[done.stdout.index("summary") :]
    assert all("postgresql: dj.gc" in line and "| mysql: dj.gc" in line
               for line in summary.splitlines()[1:] if line.strip())  # fmt: skip
