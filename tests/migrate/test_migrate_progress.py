"""A ``run`` on a terminal shows a progress bar counting rows and bytes; ``--no-progress`` none.

The run's stderr is a pseudo-terminal with a window size (a zero-width terminal gets
an empty bar), so the bar is drawn as a user would see it.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios

from djbridge.progress import human_bytes
from tests.migrate.conftest import ONE_SOURCE
from tests.migrate.world import MigrationWorld, dj_migrate

pytestmark = ONE_SOURCE
SOURCE_ROWS = 39
"""Rows of every table of the world's two schemas."""


def run_on_terminal(world: MigrationWorld, *flags: str) -> tuple[int, str]:
    """Run ``dj-migrate run``, stderr on a 160-column pseudo-terminal; return code and stderr."""
    args = [str(dj_migrate()), "run", "--config-file", str(world.config()), *flags]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=slave, cwd=world.tmp,
        env={**os.environ, **world.env()},
    )  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return process.wait(timeout=300), b"".join(chunks).decode(errors="replace")


def test_a_run_on_a_terminal_counts_rows_and_bytes(world: MigrationWorld) -> None:
    code, shown = run_on_terminal(world)
    assert code == 0, shown
    assert f"{SOURCE_ROWS}/{SOURCE_ROWS}" in shown, shown
    assert human_bytes(world.source_objects_size()) in shown, shown


def test_no_progress_draws_no_bar(world: MigrationWorld) -> None:
    code, shown = run_on_terminal(world, "--no-progress")
    assert code == 0, shown
    assert "row/s" not in shown and f"/{SOURCE_ROWS}" not in shown, shown
