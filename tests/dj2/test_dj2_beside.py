"""djbridge installed beside DataJoint 2.x, as ``./scripts/setup`` makes ``.venv-dj2``.

What a lab on either DataJoint checks after ``pip install djbridge``:

* pip keeps the DataJoint that is there: 0.14 in ``.venv``, 2.x in ``.venv-dj2``;
* every djbridge module imports beside 2.x, and none imports DataJoint itself;
* ``dj-cleaner`` from ``.venv-dj2`` cleans a 0.14 schema on MariaDB or MySQL and a
  2.x schema, deleting the orphans and keeping every live object;
* the link imports there and takes 2.x's path: decorating a class, or ``dj-link``,
  against a source that is not there names the source server (``dj-link`` exits 1,
  without a traceback or the password).

Each command runs in a subprocess under the interpreter that has the DataJoint in
question, so nothing of the test's own DataJoint 0.14 leaks into it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from djbridge.config import DatabaseServer
from tests.dj2.client import ROOT, dj2_python
from tests.dj2.world import Lab2
from tests.integration.test_cleaner_rules import (
    all_keys,
    backdate,
    insert_recs,
    make_lab,
    orphan,
)

ENVIRONMENTS = {"0.14": Path(sys.executable), "2": None}
"""Each DataJoint series and its interpreter: this one (``.venv``), or ``.venv-dj2``'s."""


def python_for(series: str) -> Path:
    """Return the interpreter whose environment has DataJoint ``series``."""
    return ENVIRONMENTS[series] or dj2_python()


def run(
    command: list[str | Path], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion and capture its output as text."""
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def datajoint_version(python: Path, tmp_path: Path) -> str:
    """Return the DataJoint version installed beside ``python`` (without importing it)."""
    code = "import importlib.metadata as m; print(m.version('datajoint'))"
    done = run([python, "-c", code], tmp_path)
    assert done.returncode == 0, done.stderr
    return str(done.stdout.strip())


def dj2_script(name: str) -> Path:
    """Return a console script of ``.venv-dj2`` (``dj-cleaner``, ``dj-link``)."""
    script = dj2_python().with_name(name)
    assert script.exists(), f"{script} is missing: run ./scripts/setup to install djbridge there"
    return script


def clean_with_dj2(
    config: Path, *flags: str
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """Run ``.venv-dj2/bin/dj-cleaner`` on ``config``; return the process and its report."""
    report = config.with_suffix(".json")
    report.unlink(missing_ok=True)
    command: list[str | Path] = [dj2_script("dj-cleaner"), "--config-file", config, *flags]
    done = run([*command, "--no-progress", "--report", report], config.parent)
    data = json.loads(report.read_text()) if report.exists() else []
    return done, data


# ---- pip -----------------------------------------------------------------------------------
@pytest.mark.parametrize("series", sorted(ENVIRONMENTS))
def test_pip_install_keeps_the_installed_datajoint(series: str, tmp_path: Path) -> None:
    python = python_for(series)
    before = datajoint_version(python, tmp_path)
    assert before.startswith(f"{series}."), f"{python} has DataJoint {before}"
    pip: list[str | Path] = [python, "-m", "pip", "install", "--dry-run", "--quiet"]
    done = run([*pip, "--report", "-", ROOT], tmp_path)
    assert done.returncode == 0, f"pip cannot install djbridge: {done.stderr}"
    plan = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(done.stdout)["install"]
    }
    assert "djbridge" in plan
    assert "datajoint" not in plan, f"pip would replace DataJoint {before} by {plan['datajoint']}"
    assert datajoint_version(python, tmp_path) == before


# ---- imports -------------------------------------------------------------------------------
IMPORT_ALL = """
import json, pkgutil, sys, importlib
import djbridge, link
failed = {}
def record(name):
    failed[name] = "{}: {}".format(*sys.exc_info()[:2])
walked = pkgutil.walk_packages(djbridge.__path__, "djbridge.", onerror=record)
names = ["link"] + [m.name for m in walked]
for name in names:
    try:
        importlib.import_module(name)
    except Exception as err:
        failed[name] = f"{type(err).__name__}: {err}"
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "datajoint")
print(json.dumps({"modules": names, "failed": failed, "datajoint": loaded}))
"""


def test_every_module_imports_beside_datajoint2_and_none_imports_datajoint(
    tmp_path: Path,
) -> None:
    done = run([dj2_python(), "-c", IMPORT_ALL], tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["failed"] == {}
    assert {"djbridge.cleaner.cli", "djbridge.link.cli", "link"} <= set(result["modules"])
    assert result["datajoint"] == []


# ---- dj-cleaner from .venv-dj2 -------------------------------------------------------------
def test_dj_cleaner_of_the_dj2_environment_cleans_a_014_schema(
    source_server: DatabaseServer,
    schema_factory: Callable[..., str],
    dj_stores: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DJ_SUPPORT_FILEPATH_MANAGEMENT", "TRUE")  # the pipeline has filepath@
    lab = make_lab("file", source_server, schema_factory(), tmp_path, dj_stores)
    insert_recs(lab, range(6))
    orphans = orphan(lab, [0, 2, 4])
    live = lab.tracked()
    assert len(orphans) == len(live) == 6  # a blob and an attachment per recording
    backdate(lab, all_keys(lab))

    done, reports = clean_with_dj2(lab.config(tmp_path / "c.toml"))

    assert done.returncode == 0, done.stderr
    [report] = reports
    remaining = all_keys(lab)
    assert not set(orphans) & remaining
    assert set(live) <= remaining
    assert report["deleted"] == 6 and report["bytes_deleted"] == sum(orphans.values())
    rows = lab.tables["Rec"].fetch(as_dict=True, download_path=str(tmp_path / "dl"))
    assert sorted(r["rec"] for r in rows) == [1, 3, 5]
    assert all(Path(r["notes"]).is_file() and len(r["trace"]) for r in rows)


def test_dj_cleaner_of_the_dj2_environment_cleans_a_2x_schema(lab2: Lab2) -> None:
    lab2.declare()
    lab2.insert([lab2.rec(1), lab2.rec(2, folder=True)])
    live = lab2.stored()
    lab2.insert([lab2.rec(3), lab2.rec(4, folder=True)])
    orphans = lab2.stored() - live - {"user/rec3.bin", "user/rec4.bin"}
    assert lab2.delete("rec_id >= 3") == 2
    min_age = ["--min-age", "0"] if lab2.kind == "s3" else []
    if lab2.kind == "file":
        lab2.backdate()

    done, reports = clean_with_dj2(lab2.config(), *min_age)

    assert done.returncode == 0, done.stderr
    [report] = reports
    assert lab2.stored() == live | {"user/rec3.bin", "user/rec4.bin"}
    assert report["deleted"] == len(orphans) > 0
    assert lab2.lost() == []


# ---- the link under 2.x --------------------------------------------------------------------
DECORATE = """
import json
from link import link

try:
    @link("127.0.0.1:9", "lab", "lab_outbound", "Outbound", "lab_copy", stores={"raw": "raw"})
    class Recording:
        pass
except Exception as err:
    print(json.dumps({"type": type(err).__name__, "message": str(err)}))
else:
    print(json.dumps({"type": None, "message": ""}))
"""


def link_env() -> dict[str, str]:
    """An environment in which the link would otherwise get as far as the servers."""
    return {**os.environ, "LINK_USER": "djlink", "LINK_PASS": "secret-pw", "DJ_USER": "root"}


def assert_names_the_source(message: str) -> None:
    assert "cannot reach the source server 127.0.0.1:9" in message
    assert "secret-pw" not in message


def test_link_imports_beside_datajoint2_and_decorating_reaches_for_the_source(
    tmp_path: Path,
) -> None:
    version = datajoint_version(dj2_python(), tmp_path)
    assert version.startswith("2.")
    done = run([dj2_python(), "-c", textwrap.dedent(DECORATE)], tmp_path, link_env())
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["type"] == "LinkError", result
    assert_names_the_source(result["message"])


def test_dj_link_beside_datajoint2_names_an_unreachable_source(tmp_path: Path) -> None:
    (tmp_path / "dj-link.toml").write_text(
        textwrap.dedent(
            """
            [[links]]
            source_host = "127.0.0.1:9"
            source_schema = "lab"
            outbound_schema = "lab_outbound"
            outbound_table = "Outbound"
            local_schema = "lab_copy"
            table = "Recording"
            """
        )
    )
    report = tmp_path / "r.json"
    for command in ("status", "pull", "verify"):
        done = run([dj2_script("dj-link"), command, "--report", report], tmp_path, link_env())
        assert done.returncode == 1, done.stderr
        assert_names_the_source(done.stdout)
        assert "Traceback" not in done.stderr + done.stdout
        assert "secret-pw" not in done.stderr + report.read_text()
