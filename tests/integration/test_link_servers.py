"""A link between servers of different kinds: MySQL 9.7 and MariaDB 10.11, both ways.

A MySQL 8+ table's default collation (``utf8mb4_0900_ai_ci``) does not exist on MariaDB
10.11, and it pads no spaces: ``'a'`` and ``'a '`` are two keys. The local table must
keep them two keys, or a pull would collide on them (or worse, merge them).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.linkworld import World, make_link, source_schema

pytestmark = pytest.mark.mixed_servers


@pytest.mark.parametrize("world", ["file"], indirect=True)
def test_text_keys_stay_apart_across_server_kinds(world: World, source_kind: str) -> None:
    import datajoint as dj

    schema = source_schema(world)

    @schema
    class Recording(dj.Manual):
        definition = """
        name : varchar(20)
        ---
        trace : blob@src
        """

    names = ["a", "a ", "Zoë", "zoe-2"]
    if source_kind == "mariadb":  # PAD SPACE: 'a' and 'a ' are one key on MariaDB already
        names.remove("a ")
    Recording.insert([{"name": n, "trace": [i, i]} for i, n in enumerate(names)])
    Local: Any = make_link(world)
    Local().source.pull()

    got = {r["name"]: list(r["trace"]) for r in Local().fetch(as_dict=True)}
    assert got == {n: [i, i] for i, n in enumerate(names)}
    ddl = str(world.query("local", f"SHOW CREATE TABLE `{world.local_schema}`.`recording`")[0][1])
    source_ddl = str(
        world.query("source", f"SHOW CREATE TABLE `{world.src_schema}`.`recording`")[0][1]
    )
    if "0900_ai_ci" in source_ddl and "0900" not in ddl:
        assert "uca1400_nopad_ai_ci" in ddl  # MariaDB's twin of MySQL's default
