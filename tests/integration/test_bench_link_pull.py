"""Smoke test of ``python -m bench.link_pull``: a tiny run works end to end, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # the checkout, where ``bench`` is a package
ROWS = 20


@pytest.mark.slow
def test_link_pull_runs_floor_and_djbridge_on_both_store_kinds(tmp_path: Path) -> None:
    out = tmp_path / "link_pull.json"
    command = [sys.executable, "-m", "bench.link_pull", f"--rows={ROWS}", "--skip-original"]
    command.append(f"--json={out}")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ratios (pull time)" in done.stdout
    results = json.loads(out.read_text())
    assert results["rows"] == ROWS
    assert set(results["kinds"]) == {"file", "s3"}
    for kind, found in results["kinds"].items():
        floor = found["contestants"]["floor"]
        assert floor["status"] == "ok", (kind, floor)
        assert floor["timings"]["pull_s"] > 0
        assert floor["checks"]["rows"] == ROWS
        assert floor["checks"]["parts"] == 3 * ROWS
        assert floor["checks"]["dst_objects"] == 2 * ROWS
        assert floor["checks"]["src_objects"] == 0
        assert floor["checks"]["columns"] == {
            "trace": f"blob@dst_{kind}",
            "notes": f"attach@dst_{kind}",
        }
        djbridge = found["contestants"]["djbridge"]
        assert djbridge["status"] in ("ok", "not available (link not importable)"), djbridge
        assert "original" not in found["contestants"]


@pytest.mark.slow
def test_link_pull_latency_mode_counts_the_round_trips_through_the_proxies(
    tmp_path: Path,
) -> None:
    out = tmp_path / "link_pull_latency.json"
    command = [sys.executable, "-m", "bench.link_pull", "--rows=10", "--stores=s3"]
    command += ["--skip-original", "--latency-ms=5", f"--json={out}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "+10 ms per round trip" in done.stdout
    results = json.loads(out.read_text())
    assert results["latency_ms_one_way"] == 5
    floor = results["kinds"]["s3"]["contestants"]["floor"]
    assert floor["status"] == "ok", floor
    assert floor["round_trips"]["db"] == 3  # its three SELECTs, nothing else in the pull
    assert floor["round_trips"]["s3"] >= 20  # at least one GET per object
    assert floor["round_trips_per_1000_rows"]["db"] == 300
