"""Server settings, parsed once at the edge into frozen dataclasses.

Both tools describe the same two kinds of servers: a database server (MariaDB,
MySQL or PostgreSQL) and a storage server (S3/MinIO, or a plain directory). This module
turns raw mappings, such as one TOML table, into :class:`DatabaseServer` and
:class:`StorageServer` values and rejects anything it does not understand with a
:class:`~djbridge.errors.ConfigError` that names the offending key. Nothing
deeper in djbridge reads raw dicts.

Rules kept here:

* every string value may be ``"${NAME}"``; it is read from the environment and an
  unset variable is an error, never an empty string;
* ``host`` may carry ``:port``; a separate ``port`` key is also accepted, but the
  two must agree;
* passwords and secret keys are hidden from ``repr`` so they never reach a log.

    from djbridge.config import parse_database_server
    server = parse_database_server("lab", {"host": "db:3306", "user": "me",
                                           "password": "${DB_PASS}"})
    server.port  # 3306
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from djbridge.errors import ConfigError

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
MAX_STRING = 4096


@dataclass(frozen=True)
class DatabaseServer:
    """Where and how to reach one database server.

    ``backend`` is ``"mysql"`` (MariaDB or MySQL, the default) or ``"postgresql"``;
    ``database`` is the PostgreSQL database that holds the DataJoint schemas (unused
    for MySQL). ``use_tls`` is ``True`` (require TLS), ``False`` (plain) or ``None``
    (TLS where the server offers it, plain otherwise).
    """

    name: str
    host: str
    user: str
    password: str = field(repr=False)
    port: int = 3306
    use_tls: bool | None = None
    backend: str = "mysql"
    database: str = ""

    @property
    def address(self) -> str:
        """Return ``host:port`` for messages."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class StorageServer:
    """An object storage server: ``kind`` is ``"s3"`` (also for MinIO) or ``"file"``."""

    name: str
    kind: str
    endpoint: str = ""
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    secure: bool = False
    region: str | None = None


def shorten(text: str, limit: int = 80) -> str:
    """Cut ``text`` for an error message, so a hostile value cannot flood the output."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def expand(value: Any, where: str) -> Any:
    """Resolve a ``"${NAME}"`` string from the environment; return other values as they are.

    Raises
    ------
    ConfigError
        If the variable is unset, or a string is unreasonably long.
    """
    if not isinstance(value, str):
        return value
    if len(value) > MAX_STRING:
        raise ConfigError(f"{where}: value is longer than {MAX_STRING} characters")
    match = _ENV_REF.match(value)
    if match is None:
        return value
    name = match.group(1)
    if name not in os.environ:
        raise ConfigError(f"{where}: environment variable {name} is not set")
    return os.environ[name]


class Section:
    """Typed, key-checked access to one raw mapping; every error names ``where.key``."""

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: expected a table, got {type(raw).__name__}")
        self.raw = raw
        self.where = where

    def check_keys(self, allowed: set[str]) -> None:
        """Reject keys outside ``allowed``."""
        unknown = sorted(set(self.raw) - allowed)
        if unknown:
            raise ConfigError(
                f"{self.where}: unknown key(s) {', '.join(shorten(str(k)) for k in unknown)}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )

    def _get(self, key: str, required: bool) -> Any:
        if key not in self.raw:
            if required:
                raise ConfigError(f"{self.where}: missing required key {key!r}")
            return None
        return expand(self.raw[key], f"{self.where}.{key}")

    def string(self, key: str, *, required: bool = True, default: str | None = None) -> str:
        """Return a string value, or ``default`` when the key is optional and absent."""
        value = self._get(key, required and default is None)
        if value is None:
            return default if default is not None else ""
        if not isinstance(value, str):
            raise ConfigError(f"{self.where}.{key}: expected a string, got {type(value).__name__}")
        return value

    def boolean(self, key: str, *, required: bool = False, default: bool | None = None) -> Any:
        """Return a boolean (``"true"``/``"false"`` strings from the environment count)."""
        value = self._get(key, required)
        if value is None:
            return default
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ConfigError(f"{self.where}.{key}: expected true or false, got {value!r}")
        return value

    def integer(self, key: str, *, low: int, high: int) -> int | None:
        """Return an integer in ``[low, high]``, or ``None`` when absent."""
        value = self._get(key, False)
        if value is None:
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self.where}.{key}: expected an integer, got {value!r}")
        if not low <= value <= high:
            raise ConfigError(f"{self.where}.{key}: {value} is outside {low}..{high}")
        return value


def split_host(
    host: str, port: int | None, where: str, default_port: int = 3306
) -> tuple[str, int]:
    """Split ``host[:port]`` and reconcile it with a separate ``port`` value."""
    name, sep, tail = host.rpartition(":")
    if sep and tail.isdigit() and name and not name.endswith(":"):
        host_port = int(tail) if len(tail) <= 5 else 0
        if not 1 <= host_port <= 65535:
            raise ConfigError(f"{where}.host: port {shorten(tail)} is outside 1..65535")
        if port is not None and port != host_port:
            raise ConfigError(f"{where}: host says port {host_port} but port says {port}")
        host, port = name, host_port
    if not host or any(c.isspace() for c in host):
        raise ConfigError(f"{where}.host: {shorten(host)!r} is not a host name")
    return host, port if port is not None else default_port


BACKENDS = {"mysql": 3306, "postgresql": 5432}  # backend name -> default port
_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}", re.ASCII)


def parse_database_server(name: str, raw: Any, where: str | None = None) -> DatabaseServer:
    """Build a :class:`DatabaseServer` from a mapping with host, user, password, port, use_tls.

    A ``backend = "postgresql"`` server needs ``database``, the PostgreSQL database
    that holds the DataJoint schemas (there is no default: a guessed database would
    hide every schema and every reference in the right one), and defaults to port 5432.
    """
    section = Section(raw, where or f"database_servers.{name}")
    section.check_keys({"host", "user", "password", "port", "use_tls", "backend", "database"})
    backend = section.string("backend", required=False, default="mysql")
    if backend not in BACKENDS:
        raise ConfigError(
            f"{section.where}.backend: {shorten(backend)!r} is not a backend; "
            f"use one of {', '.join(BACKENDS)}"
        )
    database = ""
    if backend == "postgresql":
        if "database" not in section.raw:
            raise ConfigError(
                f"{section.where}.database: a postgresql server needs the database that "
                "holds the DataJoint schemas (database.name in DataJoint's settings)"
            )
        database = section.string("database")
        if not _DATABASE_NAME.fullmatch(database):
            raise ConfigError(
                f"{section.where}.database: {shorten(database)!r} is not a database name "
                "(letters, digits, _, $ and -; at most 63)"
            )
    elif "database" in section.raw:
        raise ConfigError(f"{section.where}.database: only a postgresql server takes a database")
    port = section.integer("port", low=1, high=65535)
    host, port = split_host(section.string("host"), port, section.where, BACKENDS[backend])
    return DatabaseServer(
        name=name,
        host=host,
        port=port,
        user=section.string("user"),
        password=section.string("password"),
        use_tls=section.boolean("use_tls"),
        backend=backend,
        database=database,
    )


STORAGE_KINDS = ("minio", "s3", "file")


def parse_storage_server(kind: str, name: str, raw: Any) -> StorageServer:
    """Build a :class:`StorageServer` of ``kind`` (``minio``, ``s3`` or ``file``)."""
    where = f"storage_servers.{kind}.{name}"
    if kind not in STORAGE_KINDS:
        raise ConfigError(
            f"storage_servers.{kind}: unknown storage kind; use one of {', '.join(STORAGE_KINDS)}"
        )
    section = Section(raw, where)
    if kind == "file":
        section.check_keys(set())
        return StorageServer(name=name, kind="file")
    section.check_keys({"endpoint", "access_key", "secret_key", "secure", "region"})
    region = section.string("region", required=False)
    return StorageServer(
        name=name,
        kind="s3",
        endpoint=section.string("endpoint"),
        access_key=section.string("access_key"),
        secret_key=section.string("secret_key"),
        secure=bool(section.boolean("secure", required=True)),
        region=region or None,
    )
