"""Hostile names in link arguments get a clear error; nothing is created, nothing injected."""

from __future__ import annotations

import pytest

from djbridge.errors import ConfigError, LinkError
from djbridge.link import link
from tests.integration.linkworld import World, build_pipeline

pytestmark = pytest.mark.parametrize("world", ["file"], indirect=True)

HOSTILE = ["lab`; DROP DATABASE mysql; --", "lab'", 'lab"', "lab;", "lab name", "", "x" * 65]


def attempt(world: World, **given: object) -> None:
    """Call link(...) with the world's names, some of them replaced."""
    args: dict[str, object] = {
        "source_host": f"{world.source.host}:{world.source.port}",
        "source_schema": world.src_schema, "outbound_schema": world.out_schema,
        "outbound_table": "Outbound", "local_schema": world.local_schema,
        "stores": {"src": "dst"},
    }  # fmt: skip
    args.update(given)
    link(**args)(type("Recording", (), {}))  # type: ignore[arg-type]


def schemas(world: World, role: str) -> set[str]:
    rows = world.query(role, "SELECT schema_name FROM information_schema.schemata")
    return {r[0] for r in rows}


@pytest.mark.parametrize("argument", ["source_schema", "outbound_schema", "local_schema"])
@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_schema_names_are_refused(world: World, argument: str, value: str) -> None:
    build_pipeline(world, n=1)
    before = schemas(world, "source"), schemas(world, "local")
    with pytest.raises(ConfigError, match=argument):
        attempt(world, **{argument: value})
    assert (schemas(world, "source"), schemas(world, "local")) == before
    assert "mysql" in schemas(world, "source")


@pytest.mark.parametrize("value", ["Out`bound", "Outbound; DROP", "outbound", "Out bound"])
def test_hostile_outbound_table_is_refused(world: World, value: str) -> None:
    build_pipeline(world, n=1)
    with pytest.raises(ConfigError, match="outbound_table"):
        attempt(world, outbound_table=value)


@pytest.mark.parametrize("store", ["src`; DROP TABLE x", "d'st", "Dst"])
def test_hostile_store_names_are_refused(world: World, store: str) -> None:
    build_pipeline(world, n=1)
    with pytest.raises(ConfigError, match="stores"):
        attempt(world, stores={"src": store})


def test_a_quoted_but_valid_looking_host_is_just_unreachable(world: World) -> None:
    with pytest.raises((LinkError, ConfigError)):
        attempt(world, source_host="127.0.0.1:9; DROP DATABASE x")
