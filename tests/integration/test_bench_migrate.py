"""Smoke test of ``python -m bench.migrate``: a tiny run works end to end, so it cannot rot.

Twenty rows on file stores, MariaDB to PostgreSQL, all three contestants (the script on
ten rows, extrapolated), with ``--latency-ms 0`` so that the round-trip counting runs too.
It starts its own servers and takes about 15 s here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # the checkout, where ``bench`` is a package
ROWS = 20

pytestmark = pytest.mark.integration


def test_migrate_benchmark_prints_the_table_and_right_results(tmp_path: Path) -> None:
    out = tmp_path / "migrate.json"
    command = [sys.executable, "-m", "bench.migrate", f"--rows={ROWS}", "--stores=file"]
    command += ["--script-rows=10", "--latency-ms=0", f"--json={out}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "WRONG RESULT" not in done.stdout
    assert "[file stores]" in done.stdout
    assert "djbridge / floor:" in done.stdout
    assert "script / djbridge:" in done.stdout
    assert "DataJoint 0.14 reads a sample back: ok" in done.stdout
    results = json.loads(out.read_text())
    by_name = {o["name"]: o for o in results["file"]}
    assert set(by_name) == {"djbridge", "floor", "script"}
    for name, outcome in by_name.items():
        assert outcome["status"] == "ok", (name, outcome)
        assert outcome["rows"] == ROWS
        assert outcome["seconds"] > 0
        assert 10 < outcome["peak_mib"] < 2048
    assert "extrapolated from 10 rows" in by_name["script"]["note"]
    assert by_name["floor"]["turns"]["db"] >= 3  # its SELECTs went through the proxy
    assert by_name["djbridge"]["turns"]["db"] > 0
