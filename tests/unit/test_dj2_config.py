"""The TOML keys of DataJoint 2.x runs on PostgreSQL and MySQL: defaults and clear refusals."""

from __future__ import annotations

import pytest
import tomllib

from djbridge.cleaner.settings import parse_config
from djbridge.errors import ConfigError

PG = """
[database_servers.lab2]
backend = "postgresql"
host = "db.lab.org"
database = "datajoint"
user = "cleaner"
password = "pw"

[database_servers.old]
host = "db.lab.org"
user = "cleaner"
password = "pw"

[storage_servers.minio.lab]
endpoint = "s3.lab.org:9000"
access_key = "a"
secret_key = "b"
secure = true

[[cleaning_runs]]
datajoint = "2"
database_server = "lab2"
schema = "lab_ephys"
store = "raw"
storage_server = "minio.lab"
bucket = "dj"
location = "djroot"
"""


def config(extra: str = "", text: str = PG) -> object:
    return parse_config(tomllib.loads(text + extra))


def test_a_2x_run_takes_the_defaults_of_datajoint_2() -> None:
    [run] = config().runs  # type: ignore[attr-defined]
    assert run.datajoint == "2" and run.database.backend == "postgresql"
    assert run.database.port == 5432 and run.database.database == "datajoint"
    assert (run.hash_prefix, run.schema_prefix, run.subfolding) == ("_hash", "_schema", ())
    assert run.partition_pattern == ""


def test_prefixes_subfolding_and_pattern_are_read() -> None:
    extra = 'hash_prefix = "h"\nschema_prefix = "s"\nsubfolding = [2, 2]\npartition_pattern = "x"\n'
    [run] = config(extra).runs  # type: ignore[attr-defined]
    assert (run.hash_prefix, run.schema_prefix, run.subfolding) == ("h", "s", (2, 2))
    assert run.partition_pattern == "x"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('datajoint = "2"', 'datajoint = "3"'), "datajoint"),
        (('datajoint = "2"', 'datajoint = "0.14"'), "set datajoint"),
        (('backend = "postgresql"', 'backend = "oracle"'), "backend"),
        (('database = "datajoint"', 'database = "a;b"'), "database"),
    ],
)
def test_wrong_combinations_name_the_key(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(text=PG.replace(*change))


def test_2x_keys_on_a_014_run_are_refused() -> None:
    text = PG.replace('datajoint = "2"\ndatabase_server = "lab2"', 'database_server = "old"')
    config(text=text)
    with pytest.raises(ConfigError, match=r"hash_prefix: only a datajoint = \"2\" run"):
        config('hash_prefix = "_hash"\n', text=text)


def test_a_mysql_server_takes_no_database() -> None:
    with pytest.raises(ConfigError, match="only a postgresql server takes a database"):
        config(
            text=PG.replace(
                'host = "db.lab.org"\nuser', 'host = "db.lab.org"\ndatabase = "x"\nuser'
            )
        )


def test_a_2x_run_on_a_mysql_server_is_accepted() -> None:
    text = PG.replace(
        'datajoint = "2"\ndatabase_server = "lab2"', 'datajoint = "2"\ndatabase_server = "old"'
    )
    [run] = config(text=text).runs  # type: ignore[attr-defined]
    assert run.datajoint == "2" and run.database.backend == "mysql"
    assert run.database.port == 3306 and run.database.database == ""


def test_a_postgresql_server_without_database_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"database_servers\.lab2\.database: a postgresql server"):
        config(text=PG.replace('database = "datajoint"\n', ""))
