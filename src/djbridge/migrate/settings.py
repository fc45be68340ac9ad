"""``dj-migrate.toml``, parsed once at the edge into frozen dataclasses.

The file names the DataJoint 0.14 server (``[source]``), the DataJoint 2.x database
(``[destination]``), the stores on both sides (``[source_stores.<name>]`` with the keys
of 0.14's ``dj.config["stores"]``, ``[destination_stores.<name>]`` with 2.x's) and the
schemas to move (``[[schemas]]``). Every string may be ``"${ENV_VAR}"``. Every error
names the key it is about, and nothing is contacted while parsing.

    from djbridge.migrate.settings import load_settings
    settings = load_settings(Path("dj-migrate.toml"))
    settings.schemas[0].source, settings.destination.backend
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from djbridge.config import DatabaseServer, Section, expand, parse_database_server
from djbridge.errors import ConfigError
from djbridge.layout import is_schema_name, is_store_name
from djbridge.stores import DjStoreSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

DEFAULT_FILE = "dj-migrate.toml"
STORE_KEYS = {
    "protocol",
    "endpoint",
    "bucket",
    "location",
    "access_key",
    "secret_key",
    "secure",
    "subfolding",
}
DJ2_STORE_KEYS = STORE_KEYS | {"hash_prefix", "schema_prefix"}


@dataclass(frozen=True)
class Dj2Store:
    """A DataJoint 2.x store: where it is, and how 2.x lays out hash-addressed objects."""

    spec: DjStoreSpec
    hash_prefix: str = "_hash"
    schema_prefix: str = "_schema"
    subfolding: tuple[int, ...] = ()


@dataclass(frozen=True)
class SchemaMove:
    """One ``[[schemas]]`` entry: a 0.14 schema, its 2.x name, and its store mapping."""

    source: str
    destination: str
    stores: Mapping[str, str] = field(default_factory=dict)

    def store_for(self, source_store: str) -> str:
        """Return the 2.x store that receives ``source_store``'s objects."""
        return self.stores.get(source_store, source_store)


@dataclass(frozen=True)
class Settings:
    """The whole file."""

    source: DatabaseServer
    destination: DatabaseServer
    source_stores: Mapping[str, DjStoreSpec]
    destination_stores: Mapping[str, Dj2Store]
    schemas: tuple[SchemaMove, ...]

    def select(self, names: list[str]) -> Settings:
        """Keep only the schemas named (by source name); an unknown name is an error."""
        if not names:
            return self
        known = {s.source: s for s in self.schemas}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(
                f"--schema: {', '.join(unknown)} not in the file's [[schemas]] "
                f"({', '.join(sorted(known)) or 'none'})"
            )
        return Settings(
            self.source,
            self.destination,
            self.source_stores,
            self.destination_stores,
            tuple(known[n] for n in dict.fromkeys(names)),
        )


def _store_spec(name: str, raw: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    section = Section(raw, where)
    section.check_keys(allowed)
    if not is_store_name(name):
        raise ConfigError(f"{where}: {name!r} is not a DataJoint store name")
    spec = {k: expand(v, f"{where}.{k}") for k, v in section.raw.items()}
    if "subfolding" in spec:
        folds = spec["subfolding"]
        if not isinstance(folds, list) or not all(
            isinstance(f, int) and not isinstance(f, bool) and 1 <= f <= 8 for f in folds
        ):
            raise ConfigError(f"{where}.subfolding: expected a list of small integers, e.g. [2, 2]")
    if isinstance(spec.get("secure"), str):
        spec["secure"] = spec["secure"].lower() == "true"
    return spec


def _parse_dj_spec(name: str, spec: dict[str, Any], where: str) -> DjStoreSpec:
    try:
        return DjStoreSpec.parse(name, spec)
    except ConfigError as err:
        raise ConfigError(str(err).replace(f"dj.config['stores'][{name!r}]", where)) from None


def _source_store(name: str, raw: Any) -> DjStoreSpec:
    where = f"source_stores.{name}"
    return _parse_dj_spec(name, _store_spec(name, raw, where, STORE_KEYS), where)


def _destination_store(name: str, raw: Any) -> Dj2Store:
    where = f"destination_stores.{name}"
    spec = _store_spec(name, raw, where, DJ2_STORE_KEYS)
    prefixes = {}
    for key, default in (("hash_prefix", "_hash"), ("schema_prefix", "_schema")):
        value = str(spec.pop(key, default)).strip("/")
        if not value or "/" in value:
            raise ConfigError(f"{where}.{key}: {value!r} is not a single folder name")
        prefixes[key] = value
    if prefixes["hash_prefix"] == prefixes["schema_prefix"]:
        raise ConfigError(f"{where}: hash_prefix and schema_prefix must differ")
    folds = tuple(spec.pop("subfolding", ()) or ())
    return Dj2Store(_parse_dj_spec(name, spec, where), subfolding=folds, **prefixes)


def _schema(index: int, raw: Any) -> SchemaMove:
    where = f"schemas[{index}]"
    section = Section(raw, where)
    section.check_keys({"source", "destination", "stores"})
    source = section.string("source")
    destination = section.string("destination", required=False, default=source)
    for key, value in (("source", source), ("destination", destination)):
        if not is_schema_name(value):
            raise ConfigError(f"{where}.{key}: {value!r} is not a schema name")
    stores_raw = section.raw.get("stores", {})
    stores = Section(stores_raw, f"{where}.stores").raw
    mapping = {}
    for src, dst in stores.items():
        dst = expand(dst, f"{where}.stores.{src}")
        if not isinstance(dst, str) or not is_store_name(dst):
            raise ConfigError(f"{where}.stores.{src}: expected a store name, got {dst!r}")
        mapping[str(src)] = dst
    return SchemaMove(source, destination, mapping)


def parse_settings(raw: Mapping[str, Any]) -> Settings:
    """Check and parse the whole file; raise :class:`ConfigError` naming the first bad key."""
    top = Section(raw, "dj-migrate.toml")
    top.check_keys({"source", "destination", "source_stores", "destination_stores", "schemas"})
    for key in ("source", "destination", "schemas"):
        if key not in raw:
            raise ConfigError(
                f"dj-migrate.toml: missing [{key}]"
                if key != "schemas"
                else "dj-migrate.toml: no [[schemas]] to migrate"
            )
    source_raw = Section(raw["source"], "source")
    if "backend" in source_raw.raw and source_raw.raw["backend"] != "mysql":
        raise ConfigError("source.backend: the DataJoint 0.14 source is MariaDB or MySQL")
    source = parse_database_server("source", raw["source"], "source")
    destination = parse_database_server("destination", raw["destination"], "destination")
    if destination.backend == "mysql" and "backend" not in Section(raw["destination"], "d").raw:
        raise ConfigError('destination.backend: required, "postgresql" or "mysql"')
    source_stores = {
        n: _source_store(n, v)
        for n, v in Section(raw.get("source_stores", {}), "source_stores").raw.items()
    }
    destination_stores = {
        n: _destination_store(n, v)
        for n, v in Section(raw.get("destination_stores", {}), "destination_stores").raw.items()
    }
    if not isinstance(raw["schemas"], list) or not raw["schemas"]:
        raise ConfigError("schemas: expected one or more [[schemas]] tables")
    schemas = tuple(_schema(i, s) for i, s in enumerate(raw["schemas"]))
    seen: set[str] = set()
    for move in schemas:
        if move.destination in seen:
            raise ConfigError(f"schemas: two schemas migrate into {move.destination!r}")
        seen.add(move.destination)
        for dst in move.stores.values():
            if dst not in destination_stores:
                raise ConfigError(
                    f"schemas ({move.source}).stores: destination store {dst!r} is not "
                    "among [destination_stores]"
                )
    return Settings(source, destination, source_stores, destination_stores, schemas)


def load_settings(path: Path) -> Settings:
    """Read and parse ``path``.

    Raises
    ------
    ConfigError
        If the file is missing, is not TOML, or any key is wrong.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} not found") from None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    return parse_settings(raw)
