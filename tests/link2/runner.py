r"""Run code under DataJoint 2.x the way a 2.x lab runs it: a script in a configured folder.

DataJoint 2.x reads its configuration from the working directory: ``datajoint.json``
(server, backend, database, stores) and ``.secrets/`` (one file per secret, e.g.
``database.password`` or ``stores.<name>.secret_key``). :func:`write_config` makes
such a folder for one account and its stores; :func:`run_script` runs a script
there with ``.venv-dj2/bin/python`` and returns a :class:`Run`: the exit code, the
last JSON the script passed to ``emit(...)`` (a function every script gets), and
its output. :func:`start_script` starts one without waiting, so that a test can
kill it. :func:`side2` sends one request to :mod:`tests.link2.side2`.

    write_config(folder, account, {"raw_local": {"protocol": "file", "location": "/x"}})
    run = run_script(folder, "from link import link\\n...\\nemit(rows=3)",
                     env={"LINK_USER": "djlink", "LINK_PASS": "..."})
    assert run.code == 0 and run.result == {"rows": 3}, run
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from djbridge.config import DatabaseServer
from tests.dj2.client import ROOT, DriverError, dj2_python

MARK = "@@emit "
PRELUDE = f"""\
import json as _json


def emit(**values):
    print({MARK!r} + _json.dumps(values, default=str), flush=True)


def _name(state):
    return str(getattr(state, "value", state))


def summary(result):
    return dict(
        rows=result.rows_copied, parts=result.part_rows_copied, objects=result.objects_copied,
        bytes=result.bytes_copied, failed=[str(k) for k in result.failed],
        states={{_name(k): v for k, v in result.final_states.items() if v}},
    )


def counts(status):
    return {{_name(k): v for k, v in status.counts.items() if v}}


"""
"""Put before every script: ``emit(**values)`` reports values to the test as JSON;
``summary(run_result)`` and ``counts(link_status)`` make a pull's or a status's JSON."""
SECRET_KEYS = ("secret_key",)
"""Store settings that go to ``.secrets/stores.<name>.<key>``, not to ``datajoint.json``."""


@dataclass(repr=False)
class Run:
    """One finished script: exit code, the last ``emit`` (or None), stdout and stderr."""

    code: int
    result: Any
    stdout: str
    stderr: str

    def __repr__(self) -> str:
        return (
            f"exit {self.code}, result {json.dumps(self.result)[:3000]}\n--- stdout\n"
            f"{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-5000:]}"
        )


def write_config(
    folder: Path, account: DatabaseServer, stores: dict[str, dict[str, Any]], **extra: Any
) -> Path:
    """Write ``datajoint.json`` and ``.secrets/`` for ``account`` and ``stores``; return folder."""
    folder.mkdir(parents=True, exist_ok=True)
    secrets = folder / ".secrets"
    secrets.mkdir(exist_ok=True)
    config: dict[str, Any] = {
        "database.host": account.host,
        "database.port": account.port,
        "database.user": account.user,
        "database.backend": account.backend,
        "database.use_tls": False,
    }
    if account.backend == "postgresql":
        config["database.name"] = account.database
    public: dict[str, dict[str, Any]] = {}
    for name, spec in stores.items():
        public[name] = {k: v for k, v in spec.items() if k not in SECRET_KEYS}
        for key in SECRET_KEYS:
            if key in spec:
                (secrets / f"stores.{name}.{key}").write_text(str(spec[key]))
    config["stores"] = public
    config.update(extra)
    (folder / "datajoint.json").write_text(json.dumps(config, indent=2))
    (secrets / "database.password").write_text(account.password)
    return folder


def environment(env: dict[str, str] | None) -> dict[str, str]:
    """The process environment without DataJoint's own variables, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DJ_")}
    base.pop("LINK_USER", None)
    base.pop("LINK_PASS", None)
    return {**base, **(env or {})}


def script_file(folder: Path, text: str) -> Path:
    """Write ``text`` after the prelude to a new script in ``folder``; return its path."""
    number = len(list(folder.glob("script-*.py")))
    path = folder / f"script-{number}.py"
    path.write_text(PRELUDE + text)
    return path


def parse(stdout: str) -> Any:
    """Return the last value a script emitted, or None."""
    # A prompt that input() wrote leaves no newline: the value may follow it on its line.
    found = [line.partition(MARK)[2] for line in stdout.splitlines() if MARK in line]
    return json.loads(found[-1]) if found else None


def run_script(
    folder: Path,
    text: str,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    stdin: str | None = None,
) -> Run:
    """Run a script under DataJoint 2.x in ``folder``; ``stdin`` is what a user types."""
    path = script_file(folder, text)
    done = subprocess.run(
        [str(dj2_python()), str(path)],
        cwd=folder,
        env=environment(env),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(done.returncode, parse(done.stdout), done.stdout, done.stderr)


def start_script(
    folder: Path, text: str, *, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start a script under DataJoint 2.x in ``folder`` without waiting for it."""
    path = script_file(folder, text)
    return subprocess.Popen(
        [str(dj2_python()), str(path)],
        cwd=folder,
        env=environment(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def side2(request: dict[str, Any], folder: Path, timeout: float = 300) -> Any:
    """Run one :mod:`tests.link2.side2` request in ``folder``; return its result.

    Raises
    ------
    DriverError
        If the request failed (its message and the traceback's tail).
    """
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(dj2_python()), "-m", "tests.link2.side2"],
        cwd=folder,
        env=environment({"PYTHONPATH": str(ROOT)}),
        input=json.dumps(request, default=str),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    try:
        answer = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise DriverError(f"{request['op']}: no answer\n{done.stderr[-3000:]}") from None
    if not answer["ok"]:
        raise DriverError(f"{request['op']}: {answer['error']}\n{answer.get('traceback', '')}")
    return answer["result"]
