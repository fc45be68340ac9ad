"""python -m bench.cleaner at a tiny N: the benchmark must keep working, so it cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_cleaner_benchmark_runs_at_a_tiny_n() -> None:
    command = [sys.executable, "-m", "bench.cleaner", "--n", "200", "--no-original"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "WRONG RESULT" not in done.stdout
    assert "file: djbridge/floor = " in done.stdout
    assert "s3: djbridge/floor = " in done.stdout
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith(("file ", "s3 "))]
    assert {(row[0], row[1]) for row in rows} == {
        ("file", "djbridge"),
        ("file", "floor"),
        ("s3", "djbridge"),
        ("s3", "djbridge-jobs1"),
        ("s3", "floor"),
    }
    assert all(row[4] == "100" for row in rows)  # every contestant left the 100 live objects
