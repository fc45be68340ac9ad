"""Private, throw-away servers for tests, the demo and the benchmarks.

This module starts real services on this machine, with no docker engine:

* :class:`MariaDB`: a ``mariadbd`` process in a temporary data directory on a
  free port, with its own admin account and, optionally, TLS from a self-signed
  certificate made at start-up. Anonymous users are dropped first: they shadow
  ``'name'@'%'`` logins over 127.0.0.1.
* :class:`MotoS3`: an S3 endpoint from moto's ``ThreadedMotoServer``, run in a
  child process of its own so that two endpoints really are two servers (moto
  keeps its state per process) and so that stopping one is a real outage.

A missing binary is an error that says what to install, never a silent skip.

    from djbridge.sandbox import MariaDB, MotoS3
    with MariaDB("source", tls=True) as db, MotoS3() as s3:
        server = db.server          # a djbridge.config.DatabaseServer
        storage = s3.server         # a djbridge.config.StorageServer
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pymysql

from djbridge.config import DatabaseServer, StorageServer
from djbridge.errors import DjBridgeError

ADMIN_USER = "djb_admin"
ADMIN_PASSWORD = "djb-admin-pw"
SBIN_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")
INSTALL_HINT = (
    "MariaDB server binaries not found ({missing}). Install them with "
    "'apt-get install -y mariadb-server' (./scripts/setup does this)."
)


class SandboxError(DjBridgeError):
    """A private server could not be started."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str) -> str | None:
    """Find ``name`` on PATH or in the sbin directories Debian uses."""
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN_DIRS:
        candidate = Path(directory, name)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def mariadb_binaries() -> tuple[str, str]:
    """Return the paths of ``mariadbd`` and ``mariadb-install-db``, or raise with a hint."""
    daemon, installer = find_binary("mariadbd"), find_binary("mariadb-install-db")
    if daemon is None or installer is None:
        missing = ", ".join(
            n for n, p in (("mariadbd", daemon), ("mariadb-install-db", installer)) if p is None
        )
        raise SandboxError(INSTALL_HINT.format(missing=missing))
    return daemon, installer


class _Service:
    """Context-manager plumbing shared by the services."""

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class MariaDB(_Service):
    """One private ``mariadbd`` with an admin account ``djb_admin``."""

    def __init__(self, name: str, *, tls: bool = False, base: str | None = None) -> None:
        self.name = name
        self.tls = tls
        self.base = base
        self.datadir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def server(self) -> DatabaseServer:
        """The admin account's connection settings."""
        return DatabaseServer(
            name=self.name,
            host="127.0.0.1",
            port=self.port,
            user=ADMIN_USER,
            password=ADMIN_PASSWORD,
            use_tls=self.tls,
        )

    def _as_mysql(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, "mysql", "mysql")

    def _user_args(self) -> list[str]:
        return ["--user=mysql"] if os.geteuid() == 0 else []

    def _make_certificate(self, directory: Path) -> list[str]:
        key, cert = directory / "key.pem", directory / "cert.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "3",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
        for path in (key, cert):
            self._as_mysql(path)
        return [f"--ssl-cert={cert}", f"--ssl-key={key}"]

    def start(self) -> MariaDB:
        """Initialise a data directory, start the server and create the admin account."""
        daemon, installer = mariadb_binaries()
        root = Path(tempfile.mkdtemp(prefix=f"djb-{self.name}-", dir=self.base))
        root.chmod(0o755)
        self.datadir = root / "data"
        self.datadir.mkdir()
        self._as_mysql(self.datadir)
        # Each server gets its own tmpdir: a starting mariadbd deletes the #sql* files it
        # finds in its tmpdir, which would break other servers' temporary tables in /tmp.
        tmpdir = root / "tmp"
        tmpdir.mkdir()
        self._as_mysql(tmpdir)
        env = {**os.environ, "TMPDIR": str(tmpdir)}
        done = subprocess.run(
            [
                installer,
                "--no-defaults",
                *self._user_args(),
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            env=env,
        )
        if done.returncode != 0:
            raise SandboxError(f"mariadb-install-db failed: {done.stderr.decode()[-800:]}")
        extra = self._make_certificate(root) if self.tls else []
        self.port = free_port()
        sock = root / "data" / "mysqld.sock"
        self.process = subprocess.Popen(
            [
                daemon,
                "--no-defaults",
                *self._user_args(),
                f"--datadir={self.datadir}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={sock}",
                f"--pid-file={root / 'data' / 'mysqld.pid'}",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=128M",
                "--innodb-flush-log-at-trx-commit=2",
                "--max-connections=300",
                "--skip-name-resolve",
                f"--tmpdir={tmpdir}",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(root / "error.log", "wb"),  # noqa: SIM115
            env=env,
        )
        self._bootstrap(sock)
        return self

    def _bootstrap(self, sock: Path) -> None:
        deadline = time.monotonic() + 60
        while True:
            if self.process is not None and self.process.poll() is not None:
                log = Path(str(self.datadir)).parent / "error.log"
                raise SandboxError(f"mariadbd exited: {log.read_text()[-800:]}")
            try:
                conn = pymysql.connect(unix_socket=str(sock), user="root", password="")
                break
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    raise SandboxError("mariadbd did not accept connections within 60 s") from None
                time.sleep(0.1)
        with conn.cursor() as cur:
            cur.execute("SELECT user, host FROM mysql.user WHERE user = ''")
            for user, host in cur.fetchall():
                cur.execute("DROP USER %s@%s", (user, host))
            cur.execute(f"CREATE USER '{ADMIN_USER}'@'%' IDENTIFIED BY '{ADMIN_PASSWORD}'")
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'%' WITH GRANT OPTION")
            cur.execute("FLUSH PRIVILEGES")
        conn.close()

    def stop(self) -> None:
        """Stop the server and delete its data directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.datadir is not None:
            shutil.rmtree(self.datadir.parent, ignore_errors=True)
            self.datadir = None


def serve_moto(port: int) -> None:
    """Serve moto S3 on ``127.0.0.1:port`` until standard input closes (the child's body).

    Run as ``python -m djbridge.sandbox moto PORT``; it prints ``ready`` once listening.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print("ready", flush=True)
    sys.stdin.read()
    server.stop()


class MotoS3(_Service):
    """An S3 endpoint served by moto's ``ThreadedMotoServer`` in a child process."""

    ACCESS_KEY = "djbridge-access"
    SECRET_KEY = "djbridge-secret"

    def __init__(self, name: str = "s3") -> None:
        self.name = name
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """``host:port`` of the endpoint."""
        return f"127.0.0.1:{self.port}"

    @property
    def server(self) -> StorageServer:
        """Connection settings for this endpoint."""
        return StorageServer(
            name=self.name,
            kind="s3",
            endpoint=self.endpoint,
            access_key=self.ACCESS_KEY,
            secret_key=self.SECRET_KEY,
            secure=False,
        )

    def start(self) -> MotoS3:
        """Start the child process and wait until it answers HTTP."""
        try:
            import moto  # noqa: F401
        except ImportError as err:
            raise SandboxError("moto is not installed: pip install 'moto[server]'") from err
        self.port = self.port or free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "djbridge.sandbox", "moto", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if b"ready" not in line:
            raise SandboxError(f"moto server on port {self.port} did not start")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise SandboxError(f"moto server on port {self.port} is not listening")

    def stop(self) -> None:
        """Stop the endpoint; everything it held is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Start again on the same port (empty: moto keeps nothing)."""
        self.stop()
        self.start()

    def make_bucket(self, bucket: str) -> None:
        """Create ``bucket`` on this endpoint."""
        from djbridge.stores.s3 import make_client

        make_client(self.server).make_bucket(bucket)


if __name__ == "__main__":
    if sys.argv[1:2] != ["moto"] or len(sys.argv) != 3:
        sys.exit("usage: python -m djbridge.sandbox moto PORT")
    serve_moto(int(sys.argv[2]))
