"""The dj-cleaner configuration: a seed-compatible TOML file parsed into frozen dataclasses.

A configuration names database servers, storage servers and an ordered list of
cleaning runs. Each run ties one schema's ``~external_<store>`` table to the
store folder that holds its objects. The file format is the one datajoint-cleaner
0.1 reads, so an existing file keeps working; djbridge only adds optional keys
(``port``, ``use_tls``, ``region``, ``subfolding``, ``${NAME}`` values, the ``s3``
and ``file`` storage kinds).

The whole file is validated here, before anything connects or deletes. Every
error is a :class:`~djbridge.errors.ConfigError` whose message names the TOML key
(``cleaning_runs[2].storage_server``), never a traceback.

    from djbridge.cleaner.settings import load_config, parse_duration
    config = load_config("datajoint-cleaner.toml")
    for run in config.runs:
        print(run.label, run.subfolding)
    parse_duration("12h")   # 43200.0
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from djbridge.config import (
    DatabaseServer,
    Section,
    StorageServer,
    parse_database_server,
    parse_storage_server,
)
from djbridge.errors import ConfigError
from djbridge.layout import DEFAULT_SUBFOLDING, is_schema_name, is_store_name, tracking_table

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

DEFAULT_CONFIG = "datajoint-cleaner.toml"
TOP_LEVEL_KEYS = {"database_servers", "storage_servers", "cleaning_runs"}
RUN_KEYS = {
    "database_server",
    "schema",
    "store",
    "storage_server",
    "bucket",
    "location",
    "subfolding",
}
DJ2_KEYS = {"datajoint", "hash_prefix", "schema_prefix", "partition_pattern"}
DATAJOINT_VERSIONS = ("0.14", "2")
_DURATION = re.compile(r"\s*([0-9]{1,12})\s*([smhd]?)\s*")  # 10^12 days is plenty
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class RunIdentity:
    """What names a run wherever it is reported.

    Its report and its quarantine manifest inherit these fields, so they are written once.
    """

    database_server: str
    schema: str
    store: str
    storage_server: str
    bucket: str
    location: str


@dataclass(frozen=True)
class CleaningRun:
    """One ``[[cleaning_runs]]`` entry, with its servers resolved.

    ``storage_ref`` keeps the ``"<kind>.<name>"`` text from the file for reports;
    ``location`` is a key prefix for S3 stores and a directory for file stores.
    """

    index: int
    database: DatabaseServer
    schema: str
    store: str
    storage: StorageServer
    storage_ref: str
    bucket: str
    location: str
    subfolding: tuple[int, ...] = DEFAULT_SUBFOLDING
    datajoint: str = "0.14"
    hash_prefix: str = "_hash"
    schema_prefix: str = "_schema"
    partition_pattern: str = ""

    def identity(self) -> dict[str, Any]:
        """Return the fields that name this run in reports and manifests (:class:`RunIdentity`)."""
        return dict(
            database_server=self.database.name, schema=self.schema, store=self.store,
            storage_server=self.storage_ref, bucket=self.bucket, location=self.location,
        )  # fmt: skip

    @property
    def table(self) -> str:
        """The name of the run's external tracking table."""
        return tracking_table(self.store)

    @property
    def label(self) -> str:
        """``server/schema/store``, the way summaries and logs name a run."""
        return f"{self.database.name}/{self.schema}/{self.store}"


@dataclass(frozen=True)
class CleanerConfig:
    """A whole configuration file: its runs, in file order."""

    runs: tuple[CleaningRun, ...]

    def secrets(self) -> set[str]:
        """Return every password and S3 secret key in the file (access keys are identifiers)."""
        found = {run.database.password for run in self.runs}
        found.update(run.storage.secret_key for run in self.runs)
        return {value for value in found if value}


@dataclass(frozen=True)
class CleanOptions:
    """How the runs behave; the command-line flags map onto these one to one.

    ``min_age`` is in seconds. ``max_delete`` of ``None`` means no cap.
    ``progress`` is ``True``/``False``, or ``None`` to draw bars only on a terminal.
    ``jobs`` is the number of key ranges listed and deleted in parallel, or ``None``
    for the backend's default (8 on S3, 1 on a file store). ``quarantine`` moves
    the objects into the store's quarantine area instead of deleting them.
    """

    dry_run: bool = False
    min_age: float = 86400.0
    include_unused: bool = False
    max_delete: int | None = None
    progress: bool | None = None
    jobs: int | None = None
    quarantine: bool = False


def parse_duration(text: str) -> float:
    """Parse ``0``, ``90s``, ``15m``, ``12h`` or ``7d`` into seconds.

    Parameters
    ----------
    text
        A whole number followed by one unit letter; plain ``0`` needs no unit.

    Returns
    -------
    float
        The duration in seconds.

    Raises
    ------
    ConfigError
        If the text is not one of those forms (a bare non-zero number is refused,
        because its unit would be a guess).
    """
    match = _DURATION.fullmatch(text)
    if match is None or (not match.group(2) and int(match.group(1)) != 0):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ConfigError(
            f"invalid duration {shown!r}: use a whole number with a unit, "
            "e.g. 0, 90s, 15m, 12h or 7d"
        )
    return float(int(match.group(1)) * _UNIT_SECONDS.get(match.group(2) or "s", 1))


def load_config(path: str | Path) -> CleanerConfig:
    """Read and validate a configuration file.

    Parameters
    ----------
    path
        The TOML file.

    Returns
    -------
    CleanerConfig
        Every run, with its servers resolved.

    Raises
    ------
    ConfigError
        If the file is missing or unreadable, is not valid TOML, or any key is
        missing, unknown or of the wrong type. The message names the key.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read configuration file {str(path)!r}: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from err
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    return parse_config(raw)


def parse_config(raw: Mapping[str, Any]) -> CleanerConfig:
    """Validate an already parsed TOML document; see :func:`load_config`."""
    top = Section(raw, "configuration")
    top.check_keys(TOP_LEVEL_KEYS)
    databases = _database_servers(raw.get("database_servers"))
    storages = _storage_servers(raw.get("storage_servers"))
    entries = raw.get("cleaning_runs")
    if entries is None:
        raise ConfigError("configuration: missing required array of tables 'cleaning_runs'")
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ConfigError("cleaning_runs: expected an array of tables ([[cleaning_runs]])")
    if not entries:
        raise ConfigError("cleaning_runs: no cleaning runs are defined")
    runs = tuple(_run(i, entry, databases, storages) for i, entry in enumerate(entries))
    return CleanerConfig(runs)


def _database_servers(raw: Any) -> dict[str, DatabaseServer]:
    if raw is None:
        raise ConfigError("configuration: missing required table 'database_servers'")
    section = Section(raw, "database_servers")
    return {name: parse_database_server(name, value) for name, value in section.raw.items()}


def _storage_servers(raw: Any) -> dict[str, StorageServer]:
    if raw is None:
        raise ConfigError("configuration: missing required table 'storage_servers'")
    section = Section(raw, "storage_servers")
    servers = {}
    for kind, table in section.raw.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"storage_servers.{kind}: expected a table of servers")
        for name, value in table.items():
            servers[f"{kind}.{name}"] = parse_storage_server(kind, name, value)
    return servers


def _subfolding(section: Section, default: tuple[int, ...]) -> tuple[int, ...]:
    where = f"{section.where}.subfolding"
    value = section.raw.get("subfolding", list(default))
    if not isinstance(value, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in value
    ):
        raise ConfigError(f"{where}: expected a list of integers such as [2, 2]")
    if any(n < 1 for n in value) or sum(value) > 32:
        raise ConfigError(f"{where}: each fold must be at least 1 and all together at most 32")
    return tuple(value)


def _lookup(section: Section, key: str, servers: Mapping[str, Any], form: str) -> Any:
    name = section.string(key)
    if name not in servers:
        known = ", ".join(sorted(servers)) or "none"
        raise ConfigError(
            f"{section.where}.{key}: no server {name!r} is defined; write {form} (defined: {known})"
        )
    return servers[name]


def _run(
    index: int,
    raw: Mapping[str, Any],
    databases: dict[str, DatabaseServer],
    storages: dict[str, StorageServer],
) -> CleaningRun:
    section = Section(raw, f"cleaning_runs[{index}]")
    where = section.where
    section.check_keys(RUN_KEYS | DJ2_KEYS)
    database = _lookup(section, "database_server", databases, "a name from database_servers")
    datajoint = _datajoint(section, database)
    storage_ref = section.string("storage_server")
    storage = _lookup(section, "storage_server", storages, "'<kind>.<name>', e.g. 'minio.lab'")
    schema = section.string("schema")
    if not is_schema_name(schema):
        raise ConfigError(
            f"{where}.schema: {schema!r} is not a schema name DataJoint can hold "
            "(letters, digits, _, $ and -; at most 64)"
        )
    store = section.string("store")
    if not is_store_name(store):
        raise ConfigError(f"{where}.store: {store!r} is not a DataJoint store name")
    location = section.string("location")
    bucket = section.string("bucket", required=storage.kind != "file", default="")
    if storage.kind == "file":
        if bucket:
            raise ConfigError(f"{where}.bucket: a file storage server takes no bucket")
        if not location:
            raise ConfigError(f"{where}.location: a file store needs a directory")
    elif not bucket:
        raise ConfigError(f"{where}.bucket: an S3 storage server needs a bucket")
    return CleaningRun(
        index=index,
        database=database,
        schema=schema,
        store=store,
        storage=storage,
        storage_ref=storage_ref,
        bucket=bucket,
        location=location,
        subfolding=_subfolding(section, () if datajoint == "2" else DEFAULT_SUBFOLDING),
        datajoint=datajoint,
        hash_prefix=section.string("hash_prefix", required=False, default="_hash"),
        schema_prefix=section.string("schema_prefix", required=False, default="_schema"),
        partition_pattern=section.string("partition_pattern", required=False, default=""),
    )


def _datajoint(section: Section, database: DatabaseServer) -> str:
    """Return the run's DataJoint generation after checking it suits the server and keys."""
    where = section.where
    version = section.string("datajoint", required=False, default="0.14")
    if version not in DATAJOINT_VERSIONS:
        raise ConfigError(f'{where}.datajoint: use "0.14" (the default) or "2"')
    if version == "0.14":
        if database.backend != "mysql":
            raise ConfigError(
                f"{where}.datajoint: DataJoint 0.14 schemas live on MariaDB/MySQL; "
                f'database_servers.{database.name} is {database.backend}: set datajoint = "2"'
            )
        extra = sorted(DJ2_KEYS & set(section.raw) - {"datajoint"})
        if extra:
            raise ConfigError(f'{where}.{extra[0]}: only a datajoint = "2" run takes this key')
    return version
