"""dj-cleaner given hostile input: injection-shaped names, broken TOML, wrong types, huge values.

Every case runs the real command line against a real lab (a file store with old
orphans that a valid run would delete) and a victim database ``x`` that an injected
``DROP DATABASE`` would remove. Each case must exit 2 with a message naming the key
or flag, print no traceback, write no report and delete nothing; the victim survives.

The SQL layer is also checked on its own: a schema whose name really contains a
backtick, a quote and a semicolon is read and cleaned through ``Tracking`` (the
configuration refuses such names, because DataJoint cannot hold them, so only the
Python API can reach this path).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from djbridge.cleaner.cli import main
from djbridge.cleaner.tracking import Tracking
from djbridge.config import DatabaseServer
from djbridge.mysql import connect, quote
from tests.reliability.cleaner_helpers import (
    Lab,
    all_keys,
    backdate,
    build_lab,
    insert_recs,
    orphan,
)

MB = "a" * (1 << 20)


@pytest.fixture(params=["file"])
def lab(request: pytest.FixtureRequest) -> Lab:
    return build_lab(request)


@pytest.fixture
def victim(source_server: DatabaseServer) -> Iterator[str]:
    """A database an injected ``DROP DATABASE`` would remove; it must survive every case."""
    name = f"x{secrets.token_hex(4)}"
    db = connect(source_server)
    db.execute(f"CREATE DATABASE {quote(name)}")
    db.execute(f"CREATE TABLE {quote(name, 't')} (i int)")
    db.close()
    yield name
    db = connect(source_server)
    db.execute(f"DROP DATABASE IF EXISTS {quote(name)}")
    db.close()


@dataclass
class Arena:
    """A lab with old orphans, its valid configuration text, and the victim database."""

    lab: Lab
    victim: str
    text: str
    tmp: Path
    objects: set[str]

    def run(self, text: str | bytes, *flags: str) -> tuple[int, bool]:
        """Run the command line on ``text``; return (status, whether a report was written)."""
        config = self.tmp / "hostile.toml"
        config.write_bytes(text if isinstance(text, bytes) else text.encode())
        report = self.tmp / "report.json"
        report.unlink(missing_ok=True)
        status = main(["--config-file", str(config), "--no-progress", "--report", str(report),
                       *flags])  # fmt: skip
        return status, report.exists()

    def check_untouched(self) -> None:
        assert all_keys(self.lab) == self.objects
        db = connect(self.lab.server)
        try:
            assert db.schema_exists(self.victim) and db.table_exists(self.victim, "t")
            assert db.schema_exists(self.lab.schema)
        finally:
            db.close()


@pytest.fixture
def arena(lab: Lab, victim: str, tmp_path: Path) -> Arena:
    insert_recs(lab, range(3))
    assert len(orphan(lab, [0])) == 2
    backdate(lab, all_keys(lab))
    text = lab.config(tmp_path / "valid.toml").read_text()
    return Arena(lab, victim, text, tmp_path, all_keys(lab))


Case = tuple[str, Callable[[Arena], str | bytes], list[str], str]


def expect_refusals(arena: Arena, cases: list[Case], capsys: pytest.CaptureFixture[str]) -> None:
    """Run every case; each must exit 2 naming ``needle``, with no traceback or deletion."""
    problems = []
    for label, make, flags, needle in cases:
        status, reported = arena.run(make(arena), *flags)
        err = capsys.readouterr().err
        if status != 2 or needle not in err or "Traceback" in err or reported:
            problems.append(f"{label}: exit {status}, report {reported}, stderr {err[:300]!r}")
        arena.check_untouched()
    assert not problems, "\n".join(problems)


def edit(old: str, new: str) -> Callable[[Arena], str]:
    """Replace ``old`` (formatted with the arena's names) in the valid configuration."""

    def make(arena: Arena) -> str:
        before = old.format(schema=arena.lab.schema, victim=arena.victim)
        after = new.format(schema=arena.lab.schema, victim=arena.victim)
        assert before in arena.text, before
        return arena.text.replace(before, after)

    return make


def setline(key: str, value: str) -> Callable[[Arena], str]:
    """Replace the whole ``key = ...`` line (each key occurs once in the valid file)."""

    def make(arena: Arena) -> str:
        new = value.format(schema=arena.lab.schema, victim=arena.victim)
        text, count = re.subn(
            rf"^{re.escape(key)} = .*$", lambda _: f"{key} = {new}", arena.text, flags=re.M
        )
        assert count == 1, key
        return text

    return make


def append(extra: str) -> Callable[[Arena], str]:
    """Add lines at the end of the file, i.e. to the cleaning run."""
    return lambda arena: arena.text + extra


def append_server(extra: str) -> Callable[[Arena], str]:
    """Add a line to ``[database_servers.lab]``."""
    return lambda arena: arena.text.replace(
        "[database_servers.lab]\n", f"[database_servers.lab]\n{extra}\n"
    )


INJECTIONS = [
    "lab`; DROP DATABASE {victim}; --",
    "lab`; DROP DATABASE `{victim}`; -- ",
    "lab'; DROP DATABASE {victim}; -- ",
    'lab\\"; DROP DATABASE {victim}; -- ',
    "{schema}` WHERE 1=1; --",
    "{schema}\\n",
    "{schema}\\u0000",
    "../{schema}",
    "{schema} ",
]


def test_hostile_names_in_the_config_are_refused_and_inject_nothing(
    arena: Arena, capsys: pytest.CaptureFixture[str]
) -> None:
    cases: list[Case] = []
    for value in INJECTIONS:
        cases.append((f"schema {value}", setline("schema", f'"{value}"'), [],
                      "cleaning_runs[0].schema"))  # fmt: skip
        cases.append((f"store {value}", setline("store", f'"{value}"'), [],
                      "cleaning_runs[0].store"))  # fmt: skip
    cases += [
        ("database_server", setline("database_server", '"lab`; DROP DATABASE {victim}; --"'),
         [], "cleaning_runs[0].database_server"),
        ("storage_server", setline("storage_server", "\"file.disk'; DROP DATABASE {victim}; --\""),
         [], "cleaning_runs[0].storage_server"),
        ("host", setline("host", '"127.0.0.1; DROP DATABASE {victim}; --"'),
         [], "database_servers.lab"),
        ("user", setline("user", "\"root'@'%'; DROP DATABASE {victim}; --\""),
         [], "database_servers.lab"),
    ]  # fmt: skip
    expect_refusals(arena, cases, capsys)


def test_malformed_toml_is_refused(arena: Arena, capsys: pytest.CaptureFixture[str]) -> None:
    cases: list[Case] = [
        ("unclosed string", edit('store = "lab"', 'store = "lab'), [], "invalid TOML"),
        ("no value", edit('store = "lab"', "store ="), [], "invalid TOML"),
        ("duplicate key", append('store = "lab"\n'), [], "invalid TOML"),
        ("duplicate table", append("[database_servers.lab]\n"), [], "invalid TOML"),
        ("unclosed table", edit("[database_servers.lab]", "[database_servers.lab"), [],
         "invalid TOML"),
        ("invalid UTF-8", lambda a: a.text.encode() + b'\nnote = "\xff\xfe"\n', [],
         "cannot read configuration file"),
        ("NUL byte", lambda a: a.text.replace('store = "lab"', 'store = "lab\0"'), [],
         "invalid TOML"),
        ("empty file", lambda a: "", [], "database_servers"),
        ("JSON instead", lambda a: '{"cleaning_runs": []}', [], "invalid TOML"),
        ("nested arrays", append("deep = " + "[" * 100_000 + "]" * 100_000 + "\n"), [],
         "nested too deeply"),
        ("nested inline tables", append("deep = " + "{a = " * 5_000 + "1" + "}" * 5_000 + "\n"),
         [], "nested too deeply"),
        ("deeply dotted table", append("[" + ".".join(["t"] * 5_000) + "]\n"), [],
         "configuration: unknown key(s) t"),
    ]  # fmt: skip
    expect_refusals(arena, cases, capsys)


def test_wrong_value_types_are_refused(arena: Arena, capsys: pytest.CaptureFixture[str]) -> None:
    cases: list[Case] = [
        ("schema int", setline("schema", "5"), [], "cleaning_runs[0].schema"),
        ("schema list", setline("schema", '["{schema}"]'), [],
         "cleaning_runs[0].schema"),
        ("store table", setline("store", "{{ name = 'lab' }}"), [],
         "cleaning_runs[0].store"),
        ("location bool", setline("location", "true"), [],
         "cleaning_runs[0]"),
        ("subfolding strings", append('subfolding = ["2", "2"]\n'), [],
         "cleaning_runs[0].subfolding"),
        ("subfolding float", append("subfolding = [2.0, 2]\n"), [],
         "cleaning_runs[0].subfolding"),
        ("port string", append_server('port = "abc"'), [],
         "database_servers.lab.port"),
        ("use_tls string", setline("use_tls", '"maybe"'), [],
         "database_servers.lab"),
        ("password int", setline("password", "123"), [],
         "database_servers.lab"),
        ("cleaning_runs string", lambda a: a.text.split("[[cleaning_runs]]")[0]
         + 'cleaning_runs = "all"\n', [], "cleaning_runs"),
        ("cleaning_runs ints", lambda a: 'cleaning_runs = [1, 2]\n'
         + a.text.split("[[cleaning_runs]]")[0], [], "cleaning_runs"),
        ("database_servers array", lambda a: "database_servers = [1]\n"
         + a.text.split("[database_servers.lab]")[1].split("\n", 5)[5], [],
         "database_servers"),
        ("storage kind not a table", edit("[storage_servers.file.disk]",
                                          "[storage_servers]\nfile = 1"), [],
         "storage_servers.file"),
    ]  # fmt: skip
    expect_refusals(arena, cases, capsys)


def test_huge_values_are_refused(arena: Arena, capsys: pytest.CaptureFixture[str]) -> None:
    cases: list[Case] = [
        ("1 MB schema", setline("schema", f'"{MB}"'), [], "cleaning_runs[0].schema"),
        ("1 MB store", setline("store", f'"{MB}"'), [], "cleaning_runs[0].store"),
        ("1 MB location", setline("location", f'"{MB}"'), [],
         "cleaning_runs[0].location"),
        ("1 MB password", setline("password", f'"{MB}"'), [],
         "database_servers.lab.password"),
        ("1 MB host", setline("host", f'"{MB}"'), [],
         "database_servers.lab.host"),
        ("huge port", append_server("port = 99999999999999999999999999999"), [],
         "database_servers.lab.port"),
        ("huge port in host", lambda a: a.text.replace(
            f":{a.lab.server.port}\"", ':99999999999999999999999999999"'), [],
         "database_servers.lab.host"),
        ("huge subfolding", append("subfolding = [99999999999999999999999999]\n"), [],
         "cleaning_runs[0].subfolding"),
        ("100,000 folds", append(f"subfolding = [{', '.join(['1'] * 100_000)}]\n"), [],
         "cleaning_runs[0].subfolding"),
        ("1 MB unknown key", append(f"{MB} = 1\n"), [], "cleaning_runs[0]: unknown key"),
        ("huge --min-age", lambda a: a.text, ["--min-age", "9" * 400 + "d"], "--min-age"),
        ("5000-digit --min-age", lambda a: a.text, ["--min-age", "9" * 5000 + "d"],
         "--min-age"),
        ("5000-digit --max-delete", lambda a: a.text, ["--max-delete", "9" * 5000],
         "--max-delete"),
        ("negative huge --max-delete", lambda a: a.text, ["--max-delete", "-" + "9" * 40],
         "--max-delete"),
        ("--max-delete float", lambda a: a.text, ["--max-delete", "1e3"], "--max-delete"),
        ("--min-age 1 MB", lambda a: a.text, ["--min-age", MB], "--min-age"),
        ("--config-file is a directory", lambda a: a.text,
         ["--config-file", str(arena.tmp)], "cannot read configuration file"),
        ("--log-file is a directory", lambda a: a.text, ["--log-file", str(arena.tmp)],
         "--log-file"),
        ("--report in a missing directory", lambda a: a.text,
         ["--report", str(arena.tmp / "no" / "such;`x`" / "r.json")], "--report"),
    ]  # fmt: skip
    expect_refusals(arena, cases, capsys)


def test_a_huge_max_delete_is_only_a_cap_that_is_never_reached(
    arena: Arena, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not an error: ``--max-delete 10**30`` means "no practical cap"; the dry run proves it."""
    status, reported = arena.run(arena.text, "--dry-run", "--max-delete", "1" + "0" * 30)
    out = capsys.readouterr().out
    assert status == 0 and reported and "would delete 2" in out
    arena.check_untouched()


def test_sql_layer_quotes_a_schema_named_for_injection(
    source_server: DatabaseServer, victim: str
) -> None:
    """A real schema called ``dj`; DROP DATABASE x; -- '"`` is handled safely by ``Tracking``.

    It is checked, read, re-checked and its unused row deleted; nothing else is touched.
    """
    schema = f"dj`; DROP DATABASE {victim}; -- '\""
    table = "~external_lab"
    db = connect(source_server)
    try:
        db.execute(f"CREATE DATABASE {quote(schema)}")
        db.execute(
            f"CREATE TABLE {quote(schema, table)} (hash BINARY(16) PRIMARY KEY, "
            "size BIGINT UNSIGNED NOT NULL, attachment_name VARCHAR(255) NULL, "
            "filepath VARCHAR(255) NULL, contents_hash BINARY(16) NULL, "
            "timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"
        )
        db.execute(
            f"CREATE TABLE {quote(schema, 'rec`; DROP DATABASE ' + victim)} (id INT PRIMARY KEY, "
            f"trace BINARY(16) NULL, FOREIGN KEY (trace) REFERENCES {quote(schema, table)} (hash))"
        )
        used, unused = secrets.token_bytes(16), secrets.token_bytes(16)
        db.execute(
            f"INSERT INTO {quote(schema, table)} (hash, size, timestamp) "
            "VALUES (%s, 1, NOW() - INTERVAL 2 DAY), (%s, 1, NOW() - INTERVAL 2 DAY)",
            (used, unused),
        )
        db.execute(
            f"INSERT INTO {quote(schema, 'rec`; DROP DATABASE ' + victim)} VALUES (1, %s)",
            (used,),
        )
        tracking = Tracking(db, schema, "lab")
        tracking.check()
        assert set(tracking.hashes()) == {(used, True), (unused, True)}
        assert tracking.still_tracked([used, unused, secrets.token_bytes(16)]) == {used, unused}
        assert len(tracking.references()) == 1
        assert list(tracking.unused(3600)) == [unused]
        tracking.check_can_delete()
        assert tracking.delete_unused([used, unused], 3600) == (1, [])
        assert list(tracking.hashes()) == [(used, True)]
        assert db.schema_exists(victim) and db.table_exists(victim, "t")
    finally:
        db.execute(f"DROP DATABASE IF EXISTS {quote(schema)}")
        db.close()
