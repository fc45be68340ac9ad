"""Smoke test of bench/link_verify.py: it finds the planted drift in a few statements per batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROWS = 2500


@pytest.mark.slow
@pytest.mark.parametrize("server", ["mariadb", "mysql"])  # the bench starts its own two servers
def test_link_verify_bench_counts_a_fixed_number_of_statements_per_batch(
    tmp_path: Path, server: str
) -> None:
    out = tmp_path / "verify.json"
    command = [sys.executable, "-m", "bench.link_verify", f"--rows={ROWS}", f"--json={out}",
               f"--server={server}"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "per batch" in done.stdout and "peak RSS" in done.stdout
    result = json.loads(out.read_text())
    assert result["server"] == server
    batches = -(-(ROWS - 1) // result["batch"])
    # One master and one part digest per batch on each server, the ~external query locally,
    # and for the one batch holding the planted drift, its master and part digests per key.
    assert result["statements"]["source"]["per batch"] == 2 * batches + 2
    assert result["statements"]["local"]["per batch"] == 3 * batches + 2
    assert result["statements"]["source"]["per run"] <= 3
    assert result["report"]["checked"] == ROWS - 1
