"""The dj-cleaner configuration file: the seed's format, the extensions, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from djbridge.cleaner import CleanOptions, clean, load_config, parse_duration
from djbridge.cleaner.cli import main
from djbridge.errors import ConfigError

SEED = """
[database_servers.my_db_server]
host = "192.156.3.65"
user = "me"
password = "mypassword"

[storage_servers.minio.my_minio_server]
endpoint = "192.543.5.61"
access_key = "my_access_key"
secret_key = "my_secret_key"
secure = true

[[cleaning_runs]]
database_server = "my_db_server"
schema = "my_schema"
store = "my_store"
storage_server = "minio.my_minio_server"
bucket = "my_bucket"
location = "my_location"
"""

EXTENDED = """
[database_servers.lab]
host = "db.lab:3307"
user = "cleaner"
password = "${CLEANER_DB_PASSWORD}"
use_tls = false

[storage_servers.s3.aws]
endpoint = "s3.amazonaws.com"
access_key = "AK"
secret_key = "${CLEANER_SECRET}"
secure = true
region = "eu-central-1"

[storage_servers.file.nas]

[[cleaning_runs]]
database_server = "lab"
schema = "exp"
store = "raw"
storage_server = "s3.aws"
bucket = "lab-data"
location = ""
subfolding = [3]

[[cleaning_runs]]
database_server = "lab"
schema = "exp"
store = "notes"
storage_server = "file.nas"
location = "/mnt/nas/dj"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "datajoint-cleaner.toml"
    path.write_text(text)
    return path


def test_the_seed_file_works_unchanged(tmp_path: Path) -> None:
    [run] = load_config(write(tmp_path, SEED)).runs
    assert (run.database.host, run.database.port, run.database.use_tls) == (
        "192.156.3.65",
        3306,
        None,
    )
    assert run.storage.kind == "s3" and run.storage.secure is True
    assert (run.schema, run.store, run.bucket, run.location) == (
        "my_schema",
        "my_store",
        "my_bucket",
        "my_location",
    )
    assert run.storage_ref == "minio.my_minio_server" and run.subfolding == (2, 2)
    assert "mypassword" not in repr(run) and "my_secret_key" not in repr(run)


def test_extensions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEANER_DB_PASSWORD", "from-env")
    monkeypatch.setenv("CLEANER_SECRET", "also-from-env")
    s3_run, file_run = load_config(write(tmp_path, EXTENDED)).runs
    assert (s3_run.database.host, s3_run.database.port) == ("db.lab", 3307)
    assert s3_run.database.password == "from-env" and s3_run.database.use_tls is False
    assert s3_run.storage.region == "eu-central-1" and s3_run.subfolding == (3,)
    assert s3_run.storage.secret_key == "also-from-env"
    assert file_run.storage.kind == "file" and file_run.bucket == ""
    assert file_run.location == "/mnt/nas/dj"


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda t: t.replace('host = "192.156.3.65"\n', ""), "database_servers.my_db_server"),
        (lambda t: t.replace('schema = "my_schema"\n', ""), "cleaning_runs[0]: missing"),
        (lambda t: t.replace('"my_db_server"\nschema', '"other"\nschema'), "database_server"),
        (lambda t: t.replace('"minio.my_minio_server"', '"my_minio_server"'), "storage_server"),
        (lambda t: t.replace("secure = true", 'secure = "yes"'), "secure"),
        (lambda t: t.replace('bucket = "my_bucket"\n', ""), "bucket"),
        (lambda t: t + "subfolding = [2, 0]\n", "subfolding"),
        (lambda t: t + 'subfolding = "2,2"\n', "subfolding"),
        (lambda t: t + "colour = 1\n", "colour"),
        (lambda t: t.replace("[[cleaning_runs]]", "[[cleaning_run]]"), "cleaning_run"),
        (lambda t: t.replace('store = "my_store"', 'store = "my store"'), "store"),
        (
            lambda t: t.replace('password = "mypassword"', 'password = "${NOT_SET_ANYWHERE}"'),
            "NOT_SET_ANYWHERE",
        ),
        (
            lambda t: t.replace("[database_servers.my_db_server]", "[database_servers"),
            "invalid TOML",
        ),
        (lambda t: t.split("[[cleaning_runs]]")[0], "cleaning_runs"),
        (lambda t: t.replace("[storage_servers.minio.", "[storage_servers.gcs."), "gcs"),
    ],
)
def test_errors_name_the_key(edit: object, needle: str, tmp_path: Path) -> None:
    path = write(tmp_path, edit(SEED))  # type: ignore[operator]
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_config(path)


def test_file_store_takes_no_bucket(tmp_path: Path) -> None:
    text = SEED.replace("[storage_servers.minio.my_minio_server]", "[storage_servers.minio.m]")
    text += "\n[storage_servers.file.nas]\n"
    text = text.replace('storage_server = "minio.my_minio_server"', 'storage_server = "file.nas"')
    text = text.replace("endpoint", "endpoint")
    with pytest.raises(ConfigError, match=r"cleaning_runs\[0\].bucket"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("90s", 90), ("15m", 900), ("12h", 43200), ("7d", 604800), ("1d", 86400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "1w", "-1d", "1.5h", "d", "1 day"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "argv",
    [
        ["--min-age", "7"],
        ["--max-delete", "-1"],
        ["--max-delete", "many"],
        ["--log-level", "LOUD"],
        ["--no-such-flag"],
        ["--report", "/no/such/dir/report.json"],
    ],
)
def test_usage_errors_exit_2(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, SEED)
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_missing_config_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "datajoint-cleaner.toml" in err and "does not exist" in err


def test_unreachable_database_is_a_configuration_error(tmp_path: Path) -> None:
    from djbridge.sandbox import free_port

    text = SEED.replace('host = "192.156.3.65"', f'host = "127.0.0.1:{free_port()}"')
    config = load_config(write(tmp_path, text))
    with pytest.raises(ConfigError, match="database_servers.my_db_server") as caught:
        clean(config, CleanOptions())
    assert "mypassword" not in str(caught.value)


def test_shared_server_settings_reject_bad_ports_and_flooding_keys() -> None:
    from djbridge.config import Section, split_host
    from djbridge.errors import ConfigError

    with pytest.raises(ConfigError, match="outside 1..65535"):
        split_host("db:99999999999999999999", None, "x")
    with pytest.raises(ConfigError, match="outside 1..65535"):
        split_host("db:0", None, "x")
    assert split_host("db:3307", None, "x") == ("db", 3307)
    with pytest.raises(ConfigError) as info:
        Section({"k" * 1_000_000: 1}, "t").check_keys({"host"})
    assert len(str(info.value)) < 300
