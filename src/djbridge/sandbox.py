"""Private, throw-away servers for tests, the demo and the benchmarks.

This module starts real services on this machine, with no docker engine:

* :class:`MariaDB`: a ``mariadbd`` process in a temporary data directory on a
  free port, with its own admin account and, optionally, TLS from a self-signed
  certificate made at start-up. Anonymous users are dropped first: they shadow
  ``'name'@'%'`` logins over 127.0.0.1.
* :class:`MySQL`: the same for Oracle MySQL 9.7, unpacked privately from Debian's
  packages by :mod:`djbridge.mysqltree` and run through its own loader (TLS is
  MySQL's own, made at ``--initialize``; ``tls=False`` switches it off).
* :class:`MotoS3`: an S3 endpoint from moto's ``ThreadedMotoServer``, run in a
  child process of its own so that two endpoints really are two servers (moto
  keeps its state per process) and so that stopping one is a real outage.

A missing binary is an error that says what to install, never a silent skip.

    from djbridge.sandbox import MariaDB, MotoS3, MySQL
    with MariaDB("source", tls=True) as db, MySQL("dest") as my, MotoS3() as s3:
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


class Service:
    """Context-manager plumbing shared by the services (here and in :mod:`djbridge.pgsandbox`)."""

    def start(self) -> Any:
        """Start the service and return it."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the service and remove what it wrote."""
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ServerProcess(Service):
    """A database server run as a child process in a private directory, on a free port."""

    def __init__(self, name: str, *, base: str | None = None) -> None:
        self.name = name
        self.base = base
        self.root: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def _account(self, user: str, password: str, **settings: Any) -> DatabaseServer:
        """Return the connection settings of ``user`` on this server, over TCP."""
        return DatabaseServer(
            name=self.name,
            host="127.0.0.1",
            port=self.port,
            user=user,
            password=password,
            **settings,
        )

    def _shut_down(self, signal: int = 15) -> None:
        """Signal the server (SIGTERM by default), kill it after 30 s, delete its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


class MySQLFamily(ServerProcess):
    """What a private MariaDB and a private MySQL share: a data directory, TLS, an admin.

    Subclasses say how to initialise the data directory and which flags start the
    daemon; this class owns the rest: the folder layout, the port, the self-signed
    certificate, the ``djb_admin`` account, and a clean stop.
    """

    kind = ""
    """``"mariadb"`` or ``"mysql"``: the test ids and messages use it."""

    def __init__(self, name: str, *, tls: bool = False, base: str | None = None) -> None:
        super().__init__(name, base=base)
        self.tls = tls

    @property
    def datadir(self) -> Path:
        """The server's data directory."""
        assert self.root is not None, "the server is not started"
        return self.root / "data"

    @property
    def socket_path(self) -> Path:
        """The server's Unix socket, for the bootstrap login as root."""
        assert self.root is not None, "the server is not started"
        return self.root / "mysqld.sock"

    @property
    def server(self) -> DatabaseServer:
        """The admin account's connection settings."""
        return self._account(ADMIN_USER, ADMIN_PASSWORD, use_tls=self.tls)

    def _as_mysql(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, "mysql", "mysql")

    def _user_args(self) -> list[str]:
        return ["--user=mysql"] if os.geteuid() == 0 else []

    def _make_certificate(self, directory: Path) -> tuple[Path, Path]:
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
        return cert, key

    def _initialise(self, env: dict[str, str]) -> None:
        raise NotImplementedError

    def _daemon(self, tmpdir: Path) -> list[str]:
        raise NotImplementedError

    def _environment(self, tmpdir: Path) -> dict[str, str]:
        return {**os.environ, "TMPDIR": str(tmpdir)}

    def start(self) -> MySQLFamily:
        """Initialise a data directory, start the server and create the admin account."""
        self.root = Path(tempfile.mkdtemp(prefix=f"djb-{self.name}-", dir=self.base))
        self.root.chmod(0o755)
        self._as_mysql(self.root)
        # Each server gets its own tmpdir: a starting mariadbd deletes the #sql* files it
        # finds in its tmpdir, which would break other servers' temporary tables in /tmp.
        tmpdir = self.root / "tmp"
        tmpdir.mkdir()
        self._as_mysql(tmpdir)
        env = self._environment(tmpdir)
        self._initialise(env)
        self.port = free_port()
        common = [
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.socket_path}",
            f"--pid-file={self.root / 'mysqld.pid'}",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=128M",
            "--innodb-flush-log-at-trx-commit=2",
            "--max-connections=300",
            "--skip-name-resolve",
            f"--tmpdir={tmpdir}",
        ]
        self.process = subprocess.Popen(
            [*self._daemon(tmpdir), *common],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "error.log", "wb"),  # noqa: SIM115
            env=env,
        )
        self._bootstrap()
        return self

    def _bootstrap(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            if self.process is not None and self.process.poll() is not None:
                log = self.datadir.parent / "error.log"
                raise SandboxError(f"{self.kind} server exited: {log.read_text()[-800:]}")
            try:
                conn = pymysql.connect(unix_socket=str(self.socket_path), user="root", password="")
                break
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    raise SandboxError(
                        f"{self.kind} server did not accept connections within 60 s"
                    ) from None
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
        self._shut_down()


class MariaDB(MySQLFamily):
    """One private ``mariadbd`` (Debian's MariaDB 10.11) with an admin account ``djb_admin``."""

    kind = "mariadb"

    def _initialise(self, env: dict[str, str]) -> None:
        _, installer = mariadb_binaries()
        self.datadir.mkdir()
        self._as_mysql(self.datadir)
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

    def _daemon(self, tmpdir: Path) -> list[str]:
        daemon, _ = mariadb_binaries()
        tls: list[str] = []
        if self.tls:
            assert self.root is not None
            cert, key = self._make_certificate(self.root)
            tls = [f"--ssl-cert={cert}", f"--ssl-key={key}"]
        return [daemon, "--no-defaults", *self._user_args(), *tls]


class MySQL(MySQLFamily):
    """One private Oracle MySQL 9.7 ``mysqld``, run from the tree of :mod:`djbridge.mysqltree`.

    The server runs through the tree's own dynamic loader, so ``ps`` shows it as
    ``ld-linux-x86-64``. MySQL 9 has no ``mysql_native_password``: the admin account
    uses ``caching_sha2_password``, which over plain TCP (``tls=False`` turns the
    server's TLS off) logs in through PyMySQL's RSA exchange (``cryptography``).
    """

    kind = "mysql"

    def __init__(
        self, name: str, *, tls: bool = False, base: str | None = None, tree: Path | None = None
    ) -> None:
        super().__init__(name, tls=tls, base=base)
        self.tree = tree

    def _tree(self) -> Path:
        from djbridge.mysqltree import MySQLTreeError, ensure_tree

        if self.tree is None:
            try:
                self.tree = ensure_tree()
            except MySQLTreeError as err:
                raise SandboxError(f"{err} (./scripts/setup fetches the MySQL tree)") from err
        return self.tree

    def _environment(self, tmpdir: Path) -> dict[str, str]:
        from djbridge.mysqltree import environment

        return {**environment(self._tree()), "TMPDIR": str(tmpdir)}

    def _base_args(self) -> list[str]:
        from djbridge.mysqltree import command

        tree = self._tree()
        assert self.root is not None
        private = self.root / "files"
        private.mkdir(mode=0o700, exist_ok=True)
        self._as_mysql(private)
        share = tree / "usr" / "share" / "mysql"
        return command(
            tree,
            "--no-defaults",
            *self._user_args(),
            f"--basedir={tree / 'usr'}",
            f"--lc-messages-dir={share}",
            f"--character-sets-dir={share / 'charsets'}",
            f"--plugin-dir={tree / 'usr' / 'lib' / 'mysql' / 'plugin'}",
            f"--secure-file-priv={private}",
        )

    def _initialise(self, env: dict[str, str]) -> None:
        assert self.root is not None
        done = subprocess.run(
            [
                *self._base_args(),
                f"--datadir={self.datadir}",
                "--initialize-insecure",
            ],
            capture_output=True,
            env=env,
            timeout=300,
        )
        if done.returncode != 0:
            text = done.stderr.decode()
            raise SandboxError(f"mysqld --initialize-insecure failed: {text[-800:]}")

    def _daemon(self, tmpdir: Path) -> list[str]:
        assert self.root is not None
        tls = [] if self.tls else ["--tls-version="]
        return [
            *self._base_args(),
            "--mysqlx=OFF",
            "--performance-schema=OFF",
            *tls,
        ]


SERVER_KINDS: dict[str, type[MySQLFamily]] = {"mariadb": MariaDB, "mysql": MySQL}
"""The private database servers by kind, as the tests parametrise them."""


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


class MotoS3(Service):
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
