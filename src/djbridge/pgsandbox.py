"""A private, throw-away PostgreSQL 15 server for tests, the demo and the benchmarks.

:class:`PostgreSQL` runs Debian's ``initdb`` and ``postgres`` from
``/usr/lib/postgresql/<version>/bin`` in a temporary data directory, on a free
TCP port of 127.0.0.1, with its Unix socket in that directory (``-k``), so it
never collides with a system cluster. PostgreSQL refuses to run as root: when
this process is root, both programs run as the ``postgres`` system user (which
Debian's ``postgresql`` package creates) and the data directory belongs to it.

The cluster trusts local connections and has one superuser, ``postgres``, with
the password :data:`ADMIN_PASSWORD` (set for clients that always send one).
:meth:`PostgreSQL.stop` shuts it down fast and deletes everything it wrote.

    from djbridge.pgsandbox import PostgreSQL
    with PostgreSQL("dj2") as pg:
        server = pg.server          # a djbridge.config.DatabaseServer, backend "postgresql"
        pg.port, pg.socket_dir
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from djbridge.config import DatabaseServer
from djbridge.errors import DjBridgeError
from djbridge.sandbox import ServerProcess, free_port

ADMIN_USER = "postgres"
ADMIN_PASSWORD = "djb-pg-admin"
DATABASE = "postgres"
VERSIONS = ("15", "16", "17")
RUN_AS = "postgres"
INSTALL_HINT = (
    "PostgreSQL server binaries not found (initdb, postgres under /usr/lib/postgresql/"
    "<version>/bin). Install them with 'apt-get install -y postgresql' "
    "(./scripts/setup does this)."
)


class PgSandboxError(DjBridgeError):
    """The private PostgreSQL server could not be started."""


def pg_binaries() -> Path:
    """Return the directory that holds ``initdb`` and ``postgres``, or raise with a hint."""
    override = os.environ.get("DJB_PG_BINDIR")
    candidates = [Path(override)] if override else []
    candidates += [Path(f"/usr/lib/postgresql/{v}/bin") for v in VERSIONS]
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    raise PgSandboxError(INSTALL_HINT)


class PostgreSQL(ServerProcess):
    """One private PostgreSQL cluster; use as a context manager or call start/stop."""

    def __init__(self, name: str = "pg", *, base: str | None = None) -> None:
        super().__init__(name, base=base)

    @property
    def socket_dir(self) -> Path:
        """The directory of the server's Unix socket (also its data directory's parent)."""
        if self.root is None:
            raise PgSandboxError("the PostgreSQL sandbox is not running")
        return self.root

    @property
    def server(self) -> DatabaseServer:
        """The superuser's connection settings over TCP."""
        return self._account(
            ADMIN_USER, ADMIN_PASSWORD, use_tls=False, backend="postgresql", database=DATABASE
        )

    def _demote(self) -> dict[str, object]:
        """Return Popen arguments that run a child as the ``postgres`` user when we are root."""
        if os.geteuid() != 0:
            return {}
        try:
            entry = pwd.getpwnam(RUN_AS)
        except KeyError:
            raise PgSandboxError(
                f"running as root, but there is no {RUN_AS!r} system user to run PostgreSQL as; "
                "install Debian's postgresql package"
            ) from None
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, RUN_AS, RUN_AS)

    def _run(self, args: Sequence[str]) -> None:
        done = subprocess.run(list(args), capture_output=True, cwd=str(self.root), **self._demote())  # type: ignore[call-overload]
        if done.returncode != 0:
            raise PgSandboxError(f"{Path(args[0]).name} failed: {done.stderr.decode()[-800:]}")

    def start(self) -> PostgreSQL:
        """Initialise a cluster, start it and wait until it accepts connections."""
        bindir = pg_binaries()
        self.root = Path(tempfile.mkdtemp(prefix=f"djb-{self.name}-", dir=self.base))
        self.root.chmod(0o755)
        self._own(self.root)
        datadir = self.root / "data"
        pwfile = self.root / "pw"
        pwfile.write_text(ADMIN_PASSWORD + "\n")
        self._own(pwfile)
        self._run(
            [
                str(bindir / "initdb"),
                "-D",
                str(datadir),
                "-U",
                ADMIN_USER,
                "--auth=trust",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        self.port = free_port()
        log = open(self.root / "server.log", "wb")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(  # type: ignore[call-overload]
            [
                str(bindir / "postgres"),
                "-D",
                str(datadir),
                "-p",
                str(self.port),
                "-k",
                str(self.root),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=str(self.root),
            **self._demote(),
        )
        log.close()
        self._wait(bindir)
        return self

    def _wait(self, bindir: Path) -> None:
        deadline = time.monotonic() + 60
        ready = [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"]
        while True:
            if self.process is not None and self.process.poll() is not None:
                text = (self.socket_dir / "server.log").read_text(errors="replace")
                raise PgSandboxError(f"postgres exited: {text[-800:]}")
            if subprocess.run(ready, capture_output=True).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise PgSandboxError("postgres did not accept connections within 60 s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Shut the server down (fast mode) and delete its directory."""
        self._shut_down(signal.SIGINT)  # PostgreSQL's "fast" shutdown
