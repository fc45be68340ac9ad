"""dj-link as cron runs it: no terminal, no standard input, a bare environment."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from djbridge.link.cli import main
from tests.integration.linkworld import LINK_PASS, LINK_USER, World, build_pipeline

DJ_LINK = Path(sys.executable).parent / "dj-link"
VERIFY_FIELDS = {"checked", "rows_differ", "missing_local", "objects_missing",
                 "objects_wrong_size", "repaired"}  # fmt: skip


def link_entry(world: World, name: str = "recordings", **changes: str) -> str:
    values = {
        "name": name,
        "source_host": f"{world.source.host}:{world.source.port}",
        "source_schema": world.src_schema,
        "outbound_schema": world.out_schema,
        "outbound_table": "Outbound",
        "local_schema": world.local_schema,
        "table": "Recording",
        **changes,
    }
    lines = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "[[links]]\n" + "\n".join(lines) + '\nstores = { src = "dst" }\n'


def cron_home(world: World) -> Path:
    """A HOME holding only DataJoint's global configuration file, as on a cron host."""
    home = world.tmp / "home"
    home.mkdir(exist_ok=True)
    config = {
        "database.host": f"{world.local.host}:{world.local.port}",
        "database.user": world.local.user,
        "database.password": world.local.password,
        "database.use_tls": bool(world.local.use_tls),
        "stores": world.stores,
    }
    (home / ".datajoint_config.json").write_text(json.dumps(config))
    return home


def cron(world: World, *args: str, **env: str) -> tuple[int, str, dict[str, Any]]:
    """Run dj-link the way cron does; return its status, its output and its report."""
    workdir = world.tmp / "cron"
    workdir.mkdir(exist_ok=True)
    report = workdir / "report.json"
    report.unlink(missing_ok=True)
    environment = {"HOME": str(cron_home(world)), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
                   "LINK_USER": LINK_USER, "LINK_PASS": LINK_PASS, **env}  # fmt: skip
    done = subprocess.run(
        [str(DJ_LINK), *args, "--report", str(report)], cwd=workdir, env=environment,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    found = json.loads(report.read_text()) if report.exists() else {}
    return done.returncode, done.stdout + done.stderr, found


@pytest.mark.parametrize("world", ["file"], indirect=True)
def test_cron_runs_pull_and_verify_and_converge(world: World) -> None:
    build_pipeline(world, n=4)
    (world.tmp / "cron").mkdir()
    (world.tmp / "cron" / "dj-link.toml").write_text(link_entry(world))

    status, out, report = cron(world, "pull")
    assert status == 0, out
    assert report == {"links": [{"name": "recordings", "command": "pull", "ok": True,
                                 "error": None, "pulled": 4}]}  # fmt: skip
    assert "Traceback" not in out
    assert world.query("local", f"SELECT COUNT(*) FROM `{world.local_schema}`.`recording`") == [
        (4,)
    ]
    status, out, report = cron(world, "pull")
    assert status == 0, out
    assert report["links"][0]["pulled"] == 0

    status, out, report = cron(world, "status")
    assert status == 0, out
    assert report["links"][0]["counts"] == {"Shared": 4} and report["links"][0]["stuck"] == []

    # A row removed behind the link's back is not new: only --all pulls it again.
    for table in ("recording__channel", "recording__reviewer", "recording"):
        world.query("local", f"DELETE FROM `{world.local_schema}`.`{table}` WHERE rec_id=3")
    status, out, report = cron(world, "pull", "--where", "rec_id >= 2")
    assert (status, report["links"][0]["pulled"]) == (0, 0), out
    status, out, report = cron(world, "pull", "--all", "--where", "rec_id >= 2")
    assert (status, report["links"][0]["pulled"]) == (0, 1), out

    gone = sorted(world.objects("dst"))[0]
    world.store("dst").delete_many([gone])
    status, out, report = cron(world, "verify")
    entry = report["links"][0]
    assert status == 1, out
    assert set(entry) >= VERIFY_FIELDS and entry["ok"] is False and entry["checked"] == 4
    assert [o["key"] for o in entry["objects_missing"]] == [gone]
    assert "repair" in entry["error"]

    status, out, report = cron(world, "verify", "--repair")
    assert status == 0, out
    assert [o["key"] for o in report["links"][0]["repaired"]] == [gone]
    assert gone in world.objects("dst")
    status, out, report = cron(world, "verify", "--repair")
    assert status == 0, out
    assert report["links"][0]["repaired"] == [] and report["links"][0]["ok"] is True
    assert LINK_PASS not in out and LINK_PASS not in json.dumps(report)


@pytest.mark.parametrize("world", ["file"], indirect=True)
def test_a_failing_link_does_not_stop_the_others_and_hides_the_password(world: World) -> None:
    build_pipeline(world, n=3)
    broken = link_entry(world, name="broken", source_schema="no_such_schema")
    (world.tmp / "cron").mkdir()
    (world.tmp / "cron" / "dj-link.toml").write_text(broken + link_entry(world))

    status, out, report = cron(world, "pull")

    assert status == 1, out
    first, second = report["links"]
    assert first["name"] == "broken" and first["ok"] is False and "no_such_schema" in first["error"]
    assert second == {"name": "recordings", "command": "pull", "ok": True, "error": None,
                      "pulled": 3}  # fmt: skip
    assert "Traceback" not in out

    status, out, report = cron(world, "status", "--link", "recordings", LINK_PASS="wrong-pw-77")
    assert status == 1, out
    assert "Access denied" in report["links"][0]["error"]
    assert "wrong-pw-77" not in out and "wrong-pw-77" not in json.dumps(report)


@pytest.mark.parametrize("world", ["file"], indirect=True)
def test_missing_link_user_exits_2_and_touches_nothing(world: World) -> None:
    build_pipeline(world, n=1)
    (world.tmp / "cron").mkdir()
    (world.tmp / "cron" / "dj-link.toml").write_text(link_entry(world))
    status, out, report = cron(world, "pull", LINK_USER="")
    assert status == 2, out
    assert "LINK_USER" in out and "Traceback" not in out
    assert report == {}  # no report written
    assert world.query("local", "SHOW DATABASES LIKE %s", (world.local_schema,)) == []
    assert world.query("source", "SHOW DATABASES LIKE %s", (world.out_schema,)) == []


GOOD = """
[[links]]
name = "ephys"
source_host = "db.other-lab.org"
source_schema = "lab_ephys"
outbound_schema = "lab_outbound"
outbound_table = "Outbound"
local_schema = "my_ephys"
table = "Recording"
stores = { raw = "raw_local" }
"""


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (GOOD.replace('local_schema = "my_ephys"\n', ""), "local_schema"),
        (GOOD.replace("source_host", "sourcehost"), "sourcehost"),
        (GOOD.replace('"lab_ephys"', '"lab;drop"'), "source_schema"),
        (GOOD.replace('"Recording"', '"recording"'), "table"),
        (GOOD.replace('{ raw = "raw_local" }', "{ raw = 3 }"), "stores.raw"),
        (GOOD + GOOD, "ephys"),
        (GOOD.replace("[[links]]", "[links"), "TOML"),
        ("title = 'no links'\n", "title"),
    ],
)
def test_bad_config_names_the_key_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, named: str
) -> None:
    config, report = tmp_path / "dj-link.toml", tmp_path / "report.json"
    config.write_text(text)
    assert main(["verify", "--config-file", str(config), "--report", str(report)]) == 2
    err = capsys.readouterr().err
    assert named in err and "configuration error" in err
    assert not report.exists()


def test_unknown_link_and_unasked_delete_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, report = tmp_path / "dj-link.toml", tmp_path / "report.json"
    config.write_text(GOOD)
    args = ["--config-file", str(config), "--report", str(report)]
    assert main(["status", "--link", "ephsy", *args]) == 2
    assert "'ephsy'" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["delete-flagged", *args]) == 2
    assert "--yes" in capsys.readouterr().err
    assert main(["pull", "--bogus", *args]) == 2
    assert not report.exists()


@pytest.mark.parametrize("world", ["file"], indirect=True)
def test_delete_flagged_asks_on_a_terminal_and_deletes_with_yes(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    build_pipeline(world, n=3)
    config, report = world.tmp / "dj-link.toml", world.tmp / "report.json"
    config.write_text(link_entry(world))
    args = ["--config-file", str(config), "--report", str(report), "--no-progress"]
    assert main(["pull", *args]) == 0
    world.query(
        "source", f"UPDATE `{world.out_schema}`.`outbound` SET is_flagged='TRUE' WHERE rec_id=1"
    )
    terminal = io.StringIO("no\n")
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stdin", terminal)
    assert main(["delete-flagged", *args]) == 0
    assert "Delete 1 flagged rows" in capsys.readouterr().out
    assert json.loads(report.read_text())["links"][0]["deleted"] == 0
    local = f"SELECT rec_id FROM `{world.local_schema}`.`recording` ORDER BY rec_id"
    assert world.query("local", local) == [(0,), (1,), (2,)]

    assert main(["delete-flagged", "--yes", *args]) == 0
    assert json.loads(report.read_text())["links"][0]["deleted"] == 1
    assert world.query("local", local) == [(0,), (2,)]
    assert world.outbound()[(1, 1)] == ("NONE", "TRUE", "TRUE")


def test_a_broken_datajoint_config_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "dj-link.toml").write_text(GOOD)
    (tmp_path / "dj_local_conf.json").write_text("{not json")
    environment = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "LINK_USER": "u",
                   "LINK_PASS": "p"}  # fmt: skip
    done = subprocess.run([str(DJ_LINK), "status"], cwd=tmp_path, env=environment,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "DataJoint's configuration file" in done.stderr and "Traceback" not in done.stderr
