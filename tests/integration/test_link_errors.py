"""Bad input gets a specific error that names the thing, before anything is written."""

from __future__ import annotations

import os
from typing import Any

import pytest

from djbridge.errors import ConfigError, LinkError, MissingCredentials
from tests.integration.linkworld import World, build_pipeline, make_link


def nothing_written(world: World) -> None:
    assert not world.query(
        "source", "SELECT 1 FROM information_schema.schemata WHERE schema_name=%s",
        (world.out_schema,),
    )  # fmt: skip
    assert not world.query(
        "local", "SELECT 1 FROM information_schema.schemata WHERE schema_name=%s",
        (world.local_schema,),
    )  # fmt: skip


@pytest.mark.parametrize("variable", ["LINK_USER", "LINK_PASS"])
def test_missing_link_credentials(
    world: World, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_pipeline(world, n=1)
    monkeypatch.delenv(variable)
    with pytest.raises(MissingCredentials, match=variable):
        make_link(world)
    nothing_written(world)


def test_unreachable_source(world: World) -> None:
    from link import link

    build_pipeline(world, n=1)
    with pytest.raises(LinkError, match="127.0.0.1:9"):
        link("127.0.0.1:9", world.src_schema, world.out_schema, "Outbound", world.local_schema,
             stores={"src": "dst"})(type("Recording", (), {}))  # fmt: skip
    nothing_written(world)


def test_wrong_source_password(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    build_pipeline(world, n=1)
    monkeypatch.setenv("LINK_PASS", "not-the-password")
    with pytest.raises(LinkError, match="source server") as info:
        make_link(world)
    assert "not-the-password" not in str(info.value)
    nothing_written(world)


def test_missing_source_table(world: World) -> None:
    from link import link

    build_pipeline(world, n=1)
    with pytest.raises(LinkError, match=rf"{world.src_schema}\.no_such_table"):
        link(f"{world.source.host}:{world.source.port}", world.src_schema, world.out_schema,
             "Outbound", world.local_schema)(type("NoSuchTable", (), {}))  # fmt: skip
    nothing_written(world)


def test_missing_source_schema(world: World) -> None:
    from link import link

    with pytest.raises(LinkError, match="source schema 'nope_schema'"):
        link(f"{world.source.host}:{world.source.port}", "nope_schema", world.out_schema,
             "Outbound", world.local_schema)(type("Recording", (), {}))  # fmt: skip


def test_unconfigured_destination_store_is_named(world: World) -> None:
    build_pipeline(world, n=1)
    with pytest.raises(ConfigError, match="'nowhere'"):
        make_link(world, stores={"src": "nowhere"})
    nothing_written(world)


def test_missing_local_account(world: World) -> None:
    import datajoint as dj

    build_pipeline(world, n=1)
    saved: Any = dj.config["database.user"]
    dj.config["database.user"] = None
    try:
        with pytest.raises(ConfigError, match=r"database\.user"):
            make_link(world)
    finally:
        dj.config["database.user"] = saved
    nothing_written(world)
    assert os.environ["LINK_USER"]
