"""Smoke test of ``python -m bench.link2``: a tiny run works end to end, so it cannot rot.

Twenty rows on file stores, PostgreSQL to PostgreSQL, one attempt of each contestant,
with ``--latency-ms 0`` so that the round-trip counting through the proxy runs too. It
starts its own servers and DataJoint 2.x processes (``.venv-dj2``) and takes about 20 s.
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


def test_link2_benchmark_prints_the_ratio_and_lands_every_row(tmp_path: Path) -> None:
    out = tmp_path / "link2.json"
    command = [sys.executable, "-m", "bench.link2", f"--rows={ROWS}", "--repeats=1"]
    command += ["--stores=file", "--latency-ms=0", f"--json={out}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "WRONG RESULT" not in done.stdout and "FAILED" not in done.stdout
    assert "djbridge / floor: " in done.stdout
    assert "== link2 figures" in done.stdout
    results = json.loads(out.read_text())
    by_name = {o["name"]: o for o in results["file stores"]}
    assert set(by_name) == {"djbridge", "floor"}
    for name, outcome in by_name.items():
        assert outcome["status"] == "ok", (name, outcome)
        assert outcome["pull_s"] > 0
        assert outcome["landed"]["rows"] == {"recording": ROWS, "recording__channel": 3 * ROWS}
        assert outcome["landed"]["dst_objects"] == 3 * ROWS  # a blob, an attachment, an object
        assert outcome["landed"]["src_objects"] == 0
        assert outcome["landed"]["read_back"] == "3 rows, 0 differ"  # plain 2.x reads them
        assert 10 < outcome["peak_mib"] < 1024
    assert by_name["djbridge"]["copied"]["rows"] == ROWS
    assert by_name["djbridge"]["copied"]["objects"] == 3 * ROWS
    assert by_name["floor"]["trips"]["db"] == 2  # its two SELECTs went through the proxy
    assert by_name["djbridge"]["trips"]["db"] > 2
