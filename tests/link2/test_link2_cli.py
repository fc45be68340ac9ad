"""``dj-link`` under DataJoint 2.x, as cron runs it, reading 2.x's own configuration.

The working directory holds ``dj-link.toml`` beside the lab's ``datajoint.json``
and ``.secrets/``; the environment is bare but for ``LINK_USER``/``LINK_PASS``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.dj2.client import dj2_python
from tests.link2.twolabs import TwoLabs


def entry(labs: TwoLabs, name: str = "recordings", **changes: str) -> str:
    """Return one ``[[links]]`` entry for this link (PostgreSQL source: backend, database)."""
    source = labs.source.admin
    values = {
        "name": name,
        "source_host": f"{source.host}:{source.port}",
        "source_schema": labs.src_schema,
        "outbound_schema": labs.out_schema,
        "outbound_table": "Outbound",
        "local_schema": labs.local_schema,
        "table": "Recording",
        "backend": source.backend,
        "database": labs.source.database,
        **changes,
    }
    lines = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "[[links]]\n" + "\n".join(lines) + '\nstores = { raw = "raw_local" }\n\n'


def cron(labs: TwoLabs, *args: str, **env: str) -> tuple[int, str, dict[str, Any]]:
    """Run ``.venv-dj2``'s dj-link in the link's folder; return status, output and report."""
    report = labs.workdir / "report.json"
    report.unlink(missing_ok=True)
    home = labs.tmp / "home"
    home.mkdir(exist_ok=True)
    environment = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
                   **labs.env(), **env}  # fmt: skip
    done = subprocess.run(
        [str(Path(dj2_python()).parent / "dj-link"), *args, "--report", str(report)],
        cwd=labs.workdir, env=environment, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    found = json.loads(report.read_text()) if report.exists() else {}
    return done.returncode, done.stdout + done.stderr, found


def test_cron_pulls_and_counts_under_2x(labs: TwoLabs) -> None:
    labs.ready(range(3))
    broken = entry(labs, "broken", source_schema="no_such_schema")
    (labs.workdir / "dj-link.toml").write_text(broken + entry(labs))

    status, out, report = cron(labs, "pull")

    assert status == 1, out  # one link failed; the other still ran
    assert report["links"][0]["ok"] is False, report
    assert "no_such_schema" in report["links"][0]["error"], report
    assert report["links"][1] == {"name": "recordings", "command": "pull", "ok": True,
                                  "error": None, "pulled": 3}, out  # fmt: skip
    assert labs.local_ids() == [0, 1, 2]
    assert "Traceback" not in out
    status, out, report = cron(labs, "status", "--link", "recordings")
    assert status == 0, out
    assert report["links"][0]["counts"] == {"Shared": 3} and report["links"][0]["stuck"] == []
    assert "Traceback" not in out and labs.link_pass not in out
    status, out, report = cron(labs, "verify", "--repair", "--link", "recordings")
    assert status == 0, out
    assert report["links"][0]["ok"] is True and report["links"][0]["checked"] == 3, report

    status, out, report = cron(labs, "pull", LINK_USER="")
    assert status == 2 and report == {}, out
    assert "LINK_USER" in out and "Traceback" not in out
