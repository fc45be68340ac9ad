"""The djbridge side of the DataJoint 2.x driver: start it, send requests, read answers.

:class:`Driver` runs ``tests/dj2/driver.py`` under ``.venv-dj2/bin/python`` (made by
``./scripts/setup``) and speaks its JSON-lines protocol. :func:`dj2_python` finds
that interpreter, or says how to make it. Tests and the benchmark share this
module, so neither keeps its own copy of the protocol.

    with Driver() as dj2:
        dj2.call("connect", name="w", host="127.0.0.1", port=5432, user="postgres",
                 password="...", database="postgres")
        dj2.call("declare", conn="w", schema="lab", table="Rec", definition="...")
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("driver.py")


class DriverError(RuntimeError):
    """The DataJoint 2.x driver refused or failed a request."""


def dj2_python() -> Path:
    """Return the interpreter of the DataJoint 2.x venv (``DJB_DJ2_PYTHON`` overrides it)."""
    override = os.environ.get("DJB_DJ2_PYTHON")
    python = Path(override) if override else ROOT / ".venv-dj2" / "bin" / "python"
    if not python.exists():
        raise DriverError(f"{python} does not exist: run ./scripts/setup to create .venv-dj2")
    return python


class Driver:
    """One DataJoint 2.x process; every call is one request and one answer."""

    def __init__(self) -> None:
        # DataJoint downloads fetched attachments into the working directory.
        self.workdir = tempfile.mkdtemp(prefix="djb-dj2-driver-")
        self.process = subprocess.Popen(
            [str(dj2_python()), str(DRIVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=self.workdir,
        )
        self.version = self.call("ping")

    def call(self, op: str, **fields: Any) -> Any:
        """Send one request and return its result.

        Raises
        ------
        DriverError
            If the driver answered with an error (its message and traceback tail)
            or died.
        """
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise DriverError(f"the DataJoint 2.x driver died during {op!r}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise DriverError(f"{op}: {answer['error']}\n{answer.get('traceback', '')}")
        return answer["result"]

    def close(self) -> None:
        """Ask the driver to quit, then make sure it has."""
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write('{"op": "quit"}\n')
                self.process.stdin.flush()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Driver:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
