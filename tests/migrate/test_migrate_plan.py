"""``dj-migrate plan`` and configuration errors: what is said, and that nothing is written.

``plan`` exits 0 when everything can migrate and 1 with blockers (a parent in a
schema the file does not list is one, named); it writes nothing to the destination
database, to either store, or to the source. A configuration error exits 2 on every
command, names the key or schema at fault, writes nothing, and shows no traceback and
no credential.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.migrate.conftest import ONE_SOURCE
from tests.migrate.world import ENV, MigrationWorld, Result

pytestmark = ONE_SOURCE

PLAN_FIELDS = {"table", "tier", "definition", "rows", "objects", "bytes", "conversions", "blockers"}


def snapshot(world: MigrationWorld) -> tuple[set[str], dict[str, int], dict[str, str]]:
    """What a command that writes nothing must leave as it found it."""
    return world.dest_schemas(), world.dest_objects(), world.source_fingerprint()


def assert_clean_output(world: MigrationWorld, result: Result, *extra_secrets: str) -> None:
    """No traceback, and no credential, in the output or the report."""
    text = result.stdout + result.stderr + json.dumps(result.report)
    assert "Traceback" not in text, result
    for secret in [*world.secrets(), *extra_secrets]:
        assert secret not in text, f"a credential leaked: {result}"


def test_plan_describes_every_table_in_dependency_order_and_writes_nothing(
    world: MigrationWorld,
) -> None:
    before = snapshot(world)
    plan = world.cli("plan")
    assert plan.code == 0, plan
    assert snapshot(world) == before
    assert_clean_output(world, plan)
    assert plan.report is not None
    assert plan.report["command"] == "plan" and plan.report["ok"] is True
    schemas = {s["source"]: s for s in plan.report["schemas"]}
    assert schemas.keys() == set(world.schemas.values())
    main = schemas[world.schemas["main"]]
    assert main["destination"] == world.dest_names["main"]
    order = [entry["table"] for entry in main["tables"]]
    for parent, child in [
        ("#species", "subject"), ("subject", "session"), ("session", "recording"),
        ("session", "_analysis"), ("_analysis", "__summary"), ("__summary", "__summary__item"),
    ]:  # fmt: skip
        assert order.index(parent) < order.index(child), order
    entries: dict[str, dict[str, Any]] = {e["table"]: e for e in main["tables"]}
    for entry in entries.values():
        assert set(entry) >= PLAN_FIELDS, entry
        assert entry["blockers"] == [], entry
        for conversion in entry["conversions"]:
            assert {"column", "from", "to", "why"} <= set(conversion) and conversion["why"]
    tiers = {t: entries[t]["tier"] for t in ("#species", "subject", "_analysis", "__summary")}
    assert tiers == {
        "#species": "lookup", "subject": "manual", "_analysis": "imported", "__summary": "computed",
    }  # fmt: skip
    assert entries["__summary__item"]["tier"] == "part"
    rows = {t: entries[t]["rows"] for t in ("subject", "session", "recording", "__summary__item")}
    assert rows == {"subject": 3, "session": 4, "recording": 4, "__summary__item": 8}
    # 3 distinct blobs (two rows share one), 4 attachments, 3 filepath files
    assert entries["recording"]["objects"] == {"raw": 10}
    sizes = world.source_objects_size()
    assert entries["recording"]["bytes"] == {"raw": sizes}
    converted = {c["column"]: c for c in entries["session"]["conversions"]}
    assert "duration" in converted, entries["session"]  # no interval type in 2.x
    numbers = {c["column"] for c in entries["numbers"]["conversions"]}
    assert {"u8", "u16", "u32", "u64"} <= numbers, entries["numbers"]
    # PostgreSQL (this world's destination): no counter, char(n) pads, uuid unreadable
    counter = {c["column"]: c for c in entries["counter"]["conversions"]}
    assert "auto_increment" in json.dumps(counter.get("row_id")), entries["counter"]
    code = {c["column"]: c for c in entries["subject"]["conversions"]}.get("code")
    assert code is not None and code["to"] == "varchar(3)", entries["subject"]
    assert "uid" in converted, entries["session"]


def test_plan_names_a_parent_in_a_schema_the_file_does_not_list(world: MigrationWorld) -> None:
    before = snapshot(world)
    config = world.config(world.config_text(roles=("latin",)), name="latin-only.toml")
    plan = world.cli("plan", config=config)
    assert plan.code == 1, plan
    assert snapshot(world) == before
    entry = plan.tables()[(world.schemas["latin"], "rating")]
    assert entry["blockers"], plan
    assert any(world.schemas["main"] in b["why"] for b in entry["blockers"]), plan
    run = world.cli("run", config=config)
    assert run.code == 1, run
    assert run.tables()[(world.schemas["latin"], "rating")]["error"], run
    assert world.dest_objects() == {}


def without_line(text: str, start: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith(start))


@pytest.mark.parametrize("command", ["plan", "run", "verify"])
def test_missing_database_for_postgresql_is_a_config_error_naming_the_key(
    world: MigrationWorld, command: str
) -> None:
    before = snapshot(world)
    config = world.config(without_line(world.config_text(), "database ="), name="nodb.toml")
    result = world.cli(command, config=config)
    assert result.code == 2, result
    assert "database" in result.stdout + result.stderr, result
    assert snapshot(world) == before
    assert_clean_output(world, result)


def test_unknown_schema_is_a_config_error_naming_it(world: MigrationWorld) -> None:
    before = snapshot(world)
    result = world.cli("run", "--schema", "no_such_schema")
    assert result.code == 2, result
    assert "no_such_schema" in result.stdout + result.stderr, result
    assert snapshot(world) == before
    assert_clean_output(world, result)


def test_unreachable_source_and_wrong_password_are_config_errors_writing_nothing(
    world: MigrationWorld,
) -> None:
    before = snapshot(world)
    text = world.config_text().replace(
        f'host = "{world.source.host}:{world.source.port}"', 'host = "127.0.0.1:1"'
    )
    result = world.cli("run", config=world.config(text, name="unreachable.toml"))
    assert result.code == 2, result
    assert "127.0.0.1:1" in result.stdout + result.stderr, result
    assert_clean_output(world, result)
    wrong = "Wr0ng-pa55word-Secret"
    result = world.cli("run", env={ENV["source"]: wrong})  # the PostgreSQL sandbox trusts all
    assert result.code == 2, result
    assert_clean_output(world, result, wrong)
    assert snapshot(world) == before


def test_an_unset_environment_variable_is_a_config_error(world: MigrationWorld) -> None:
    text = world.config_text().replace(ENV["source"], "DJM_NOT_SET_ANYWHERE")
    result = world.cli("plan", config=world.config(text, name="unset.toml"))
    assert result.code == 2, result
    assert "DJM_NOT_SET_ANYWHERE" in result.stdout + result.stderr, result
    assert_clean_output(world, result)


def test_schema_option_limits_a_run_to_the_named_schema(world: MigrationWorld) -> None:
    run = world.cli("run", "--schema", world.schemas["main"])
    assert run.code == 0, run
    assert run.report is not None
    assert [s["source"] for s in run.report["schemas"]] == [world.schemas["main"]]
    schemas = world.dest_schemas()
    assert world.dest_names["main"] in schemas and world.dest_names["latin"] not in schemas


def test_debug_logging_shows_no_credential(world: MigrationWorld) -> None:
    for command in ("plan", "run", "verify"):
        result = world.cli(command, "--log-level", "DEBUG")
        assert result.code in (0, 1), result
        assert_clean_output(world, result)


def test_unreachable_destination_is_a_config_error_naming_it(world: MigrationWorld) -> None:
    before = snapshot(world)
    text = world.config_text().replace(
        f'host = "{world.dest.host}:{world.dest.port}"', 'host = "127.0.0.1:2"'
    )
    result = world.cli("run", config=world.config(text, name="nodest.toml"))
    assert result.code == 2, result
    assert "127.0.0.1:2" in result.stdout + result.stderr, result
    assert snapshot(world) == before
    assert_clean_output(world, result)
