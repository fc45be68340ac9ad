"""A test's DataJoint 2.x pipeline: schemas, a store, rows made by real DataJoint 2.3.

:class:`Lab2` owns what one test creates, on one of the session's database servers
(PostgreSQL 15 or MySQL 9.7) and its 2.x driver: two schema names (``schema`` and
``other``), a store named ``raw`` on a file directory or an S3 bucket, the driver
instances it connects, and the accounts it creates. :meth:`Lab2.teardown` drops
all of them. What differs between the two servers (quoting, reading a JSON path,
accounts and grants, dropping a schema) is one :class:`Side` each, :data:`SIDES`.

Rows come from :meth:`Lab2.rec`, which gives each row content of its own in
every external column (blob, attachment, hash, object, npy, and a filepath file
the test writes), so an orphan is made by deleting its row. :meth:`Lab2.lost`
asks DataJoint to read every row back: what a user would see after a clean.

    lab = Lab2(dj2, server, tmp_path)          # server: a PostgreSQL or MySQL admin account
    lab.declare()                              # Rec, with every codec on "raw"
    lab.insert([lab.rec(1), lab.rec(2)])
    lab.delete("rec_id = 2")                   # its objects become orphans
    assert lab.lost() == []
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from djbridge.cleaner import CleanOptions, RunReport, clean, load_config
from djbridge.cleaner.cli import main
from djbridge.config import DatabaseServer, StorageServer
from djbridge.mysql import Database, connect, quote
from djbridge.postgres import PgDatabase, connect_pg, pg_quote
from djbridge.stores import Store, open_store, s3_dj_spec
from tests.dj2.client import Driver

BACKENDS = pytest.mark.parametrize("dj2_backend", ["postgresql", "mysql"], indirect=True)
"""Run a test once on PostgreSQL and once on MySQL (ids ``[postgresql...]``, ``[mysql...]``)."""
TWO_DAYS = 2 * 86400.0
STORE = "raw"
LOCATION = "djroot"
REC = """
rec_id: int32
tag: varchar(40)
---
b=null: <blob@raw>
a=null: <attach@raw>
h=null: <hash@raw>
o=null: <object@raw>
n=null: <npy@raw>
f=null: <filepath@raw>
"""


def unique(prefix: str) -> str:
    """Return a random lowercase name, safe as a schema, role or bucket name."""
    return f"{prefix}{secrets.token_hex(4)}"


class Side:
    """What a 2.x test does differently on one kind of database server."""

    backend = ""

    def connect(self, server: DatabaseServer) -> Database | PgDatabase:
        """Open an admin connection."""
        raise NotImplementedError

    def table(self, schema: str, table: str) -> str:
        """Return the quoted ``schema.table``."""
        raise NotImplementedError

    def path(self, column: str) -> str:
        """Return the SQL that reads a codec column's ``path``."""
        raise NotImplementedError

    def create_account(self, name: str, password: str) -> list[str]:
        """Return the statements that create a login that can read nothing yet."""
        raise NotImplementedError

    def grant_select(self, schema: str, tables: list[str], name: str) -> list[str]:
        """Return the statements that let ``name`` read these tables of ``schema``."""
        raise NotImplementedError

    def revoke_select(self, schema: str, table: str, name: str) -> str:
        """Return the statement that takes SELECT on one table away from ``name``."""
        raise NotImplementedError

    def drop(self, schemas: list[str], accounts: list[str]) -> list[str]:
        """Return the statements that drop the schemas and the accounts."""
        raise NotImplementedError

    def toml(self, server: DatabaseServer) -> str:
        """Return the lines of a ``[database_servers.*]`` table beyond host and account."""
        raise NotImplementedError


class PgSide(Side):
    """PostgreSQL: a schema inside ``database``, roles, ``jsonb``."""

    backend = "postgresql"

    def connect(self, server: DatabaseServer) -> Database | PgDatabase:
        return connect_pg(server)

    def table(self, schema: str, table: str) -> str:
        return pg_quote(schema, table)

    def path(self, column: str) -> str:
        return f"{pg_quote(column)}->>'path'"

    def create_account(self, name: str, password: str) -> list[str]:
        # CREATE ROLE takes no bind parameters; the password is hex digits only.
        return [f"CREATE ROLE {pg_quote(name)} LOGIN PASSWORD '{password}'"]

    def grant_select(self, schema: str, tables: list[str], name: str) -> list[str]:
        listed = ", ".join(pg_quote(schema, table) for table in tables)
        usage = f"GRANT USAGE ON SCHEMA {pg_quote(schema)} TO {pg_quote(name)}"
        return [usage, f"GRANT SELECT ON {listed} TO {pg_quote(name)}"] if tables else [usage]

    def revoke_select(self, schema: str, table: str, name: str) -> str:
        return f"REVOKE SELECT ON {pg_quote(schema, table)} FROM {pg_quote(name)}"

    def drop(self, schemas: list[str], accounts: list[str]) -> list[str]:
        out = [f"DROP SCHEMA IF EXISTS {pg_quote(schema)} CASCADE" for schema in schemas]
        for name in accounts:
            out += [f"DROP OWNED BY {pg_quote(name)}", f"DROP ROLE IF EXISTS {pg_quote(name)}"]
        return out

    def toml(self, server: DatabaseServer) -> str:
        return f'backend = "postgresql"\ndatabase = "{server.database}"\n'


class MySQLSide(Side):
    """MySQL 8 or later: a schema is a database, users with ``caching_sha2_password``."""

    backend = "mysql"

    def connect(self, server: DatabaseServer) -> Database | PgDatabase:
        return connect(server)

    def table(self, schema: str, table: str) -> str:
        return quote(schema, table)

    def path(self, column: str) -> str:
        return f"{quote(column)}->>'$.path'"

    def create_account(self, name: str, password: str) -> list[str]:
        # The password is hex digits only; MySQL 9 has no mysql_native_password.
        return [
            f"CREATE USER '{name}'@'%' IDENTIFIED WITH caching_sha2_password BY '{password}'",
            # Without it the account would not see every database, and the cleaner refuses.
            f"GRANT SHOW DATABASES ON *.* TO '{name}'@'%'",
        ]

    def grant_select(self, schema: str, tables: list[str], name: str) -> list[str]:
        return [f"GRANT SELECT ON {quote(schema, table)} TO '{name}'@'%'" for table in tables]

    def revoke_select(self, schema: str, table: str, name: str) -> str:
        return f"REVOKE SELECT ON {quote(schema, table)} FROM '{name}'@'%'"

    def drop(self, schemas: list[str], accounts: list[str]) -> list[str]:
        out = [f"DROP DATABASE IF EXISTS {quote(schema)}" for schema in schemas]
        return out + [f"DROP USER IF EXISTS '{name}'@'%'" for name in accounts]

    def toml(self, server: DatabaseServer) -> str:
        return 'backend = "mysql"\n'


SIDES: dict[str, Side] = {"postgresql": PgSide(), "mysql": MySQLSide()}
"""The :class:`Side` of each database server backend."""


class Lab2:
    """One test's 2.x pipeline; see the module docstring."""

    def __init__(
        self,
        dj2: Driver,
        server: DatabaseServer,
        tmp_path: Path,
        *,
        s3: StorageServer | None = None,
        bucket_factory: Callable[[StorageServer], str] | None = None,
        store_extra: dict[str, Any] | None = None,
    ) -> None:
        self.dj2 = dj2
        self.server = server
        self.side = SIDES[server.backend]
        self.tmp = tmp_path
        self.schema = unique("lab_")
        self.other = unique("labb_")
        self.conns: list[str] = []
        self.accounts: list[str] = []
        self.s3 = s3
        self.files = tmp_path / "inputs"
        self.files.mkdir(exist_ok=True)
        if s3 is not None:
            assert bucket_factory is not None
            self.bucket = bucket_factory(s3)
            self.spec: dict[str, Any] = s3_dj_spec(s3, self.bucket, LOCATION)
        else:
            self.bucket = ""
            root = tmp_path / "store"
            root.mkdir(exist_ok=True)
            self.spec = {"protocol": "file", "location": str(root)}
        self.spec.update(store_extra or {})
        self.conn = self.connect()
        self.db = self.side.connect(server)

    @property
    def kind(self) -> str:
        """``"s3"`` or ``"file"``."""
        return "s3" if self.s3 is not None else "file"

    @property
    def root(self) -> Path:
        """The file store's directory (file stores only)."""
        return Path(self.spec["location"])

    def connect(self, user: str | None = None, password: str | None = None) -> str:
        """Open a driver instance (as the admin, or as ``user``) with the store; return its name."""
        name = unique("c")
        self.dj2.call(
            "connect",
            name=name,
            backend=self.server.backend,
            host=self.server.host,
            port=self.server.port,
            user=user or self.server.user,
            password=password if password is not None else self.server.password,
            database=self.server.database,
        )
        self.dj2.call("store", conn=name, store=STORE, spec=self.spec)
        self.conns.append(name)
        return name

    def store(self) -> Store:
        """Return djbridge's view of the same store root (bucket plus location, or directory)."""
        if self.s3 is not None:
            return open_store(self.s3, bucket=self.bucket, location=LOCATION)
        return open_store(StorageServer(name="file", kind="file"), location=str(self.root))

    def stored(self) -> set[str]:
        """Every object key under the store root."""
        return {obj.key for obj in self.store().iter_objects("")}

    def declare(self, table: str = "Rec", definition: str = REC, schema: str | None = None) -> None:
        """Declare a table (by default ``Rec``, with every codec on ``raw``)."""
        self.dj2.call(
            "declare",
            conn=self.conn,
            schema=schema or self.schema,
            table=table,
            definition=definition,
        )

    def rec(self, n: int, *, folder: bool = False, columns: str = "bahonf") -> dict[str, Any]:
        """Return a row with content of its own in each chosen column (letters of ``columns``)."""
        row: dict[str, Any] = {"rec_id": n, "tag": f"t/{n}"}
        attach = self.files / f"att{n}.txt"
        attach.write_text(f"attachment {n}\n")
        if "b" in columns:
            row["b"] = {"$blob": [n, n + 1, n + 2]}
        if "a" in columns:
            row["a"] = str(attach)
        if "h" in columns:
            row["h"] = {"$bytes": f"hash payload {n}"}
        if "o" in columns:
            if folder:
                directory = self.files / f"dir{n}"
                directory.mkdir(exist_ok=True)
                (directory / "one.txt").write_text(f"one {n}")
                (directory / "two.txt").write_text(f"two {n}")
                row["o"] = str(directory)
            else:
                row["o"] = str(attach)
        if "n" in columns:
            row["n"] = {"$npy": [[n, 0.5], [1.5, n]]}
        if "f" in columns:
            key = f"user/rec{n}.bin"
            self.store().put(key, f"user file {n}".encode())
            row["f"] = key
        return row

    def insert(
        self,
        rows: list[dict[str, Any]],
        table: str = "Rec",
        schema: str | None = None,
        conn: str | None = None,
    ) -> None:
        """Insert rows through DataJoint 2.x (objects are uploaded before the row is written)."""
        self.dj2.call(
            "insert", conn=conn or self.conn, schema=schema or self.schema, table=table, rows=rows
        )

    def delete(self, where: str, table: str = "Rec", schema: str | None = None) -> int:
        """Delete rows with ``delete_quick``: their objects stay in the store as orphans."""
        count: int = self.dj2.call(
            "delete", conn=self.conn, schema=schema or self.schema, table=table, where=where
        )
        return count

    def lost(self, tables: tuple[tuple[str, str], ...] = ()) -> list[dict[str, Any]]:
        """Read every row of the given ``(schema, table)`` pairs back; return the failures."""
        failed: list[dict[str, Any]] = []
        for schema, table in tables or ((self.schema, "Rec"),):
            answer = self.dj2.call("fetch", conn=self.conn, schema=schema, table=table)
            failed += answer["failed"]
        return failed

    def gc(self, **fields: Any) -> dict[str, Any]:
        """Run ``dj.gc`` on this lab's schema (``dry_run=False`` unless told otherwise)."""
        fields.setdefault("schemas", [self.schema])
        fields.setdefault("dry_run", False)
        fields.setdefault("conn", self.conn)
        stats: dict[str, Any] = self.dj2.call("gc", store=STORE, **fields)
        return stats

    def config(
        self,
        *,
        user: str | None = None,
        password: str | None = None,
        run_extra: str = "",
        name: str = "lab.toml",
    ) -> Path:
        """Write a dj-cleaner TOML file with one ``datajoint = "2"`` run on this lab."""
        server = self.server
        text = (
            f"[database_servers.lab2]\n{self.side.toml(server)}"
            f'host = "{server.host}:{server.port}"\n'
            f'user = "{user or server.user}"\n'
            f'password = "{password if password is not None else server.password}"\n'
            "use_tls = false\n\n"
        )
        run = (
            f'[[cleaning_runs]]\ndatajoint = "2"\ndatabase_server = "lab2"\n'
            f'schema = "{self.schema}"\nstore = "{STORE}"\n'
        )
        if self.s3 is not None:
            text += (
                f'[storage_servers.s3.moto]\nendpoint = "{self.s3.endpoint}"\n'
                f'access_key = "{self.s3.access_key}"\nsecret_key = "{self.s3.secret_key}"\n'
                "secure = false\n\n"
            )
            run += (
                f'storage_server = "s3.moto"\nbucket = "{self.bucket}"\nlocation = "{LOCATION}"\n'
            )
        else:
            text += "[storage_servers.file.nas]\n\n"
            run += f'storage_server = "file.nas"\nlocation = "{self.root}"\n'
        path = self.tmp / name
        path.write_text(text + run + run_extra)
        return path

    def clean(self, *flags: str, config: Path | None = None) -> tuple[int, list[dict[str, Any]]]:
        """Run ``dj-cleaner`` on this lab; return its exit status and JSON report."""
        config = config or self.config()
        report = config.with_suffix(".json")
        report.unlink(missing_ok=True)
        status = main(
            ["--config-file", str(config), "--no-progress", *flags, "--report", str(report)]
        )
        data = json.loads(report.read_text()) if report.exists() else []
        return status, data

    def clean_api(
        self,
        hook: Callable[[str, Any], None] | None = None,
        config: Path | None = None,
        **options: Any,
    ) -> RunReport:
        """Run the cleaner through its library API (so a test can act between phases)."""
        options.setdefault("progress", False)
        [report] = clean(load_config(config or self.config()), CleanOptions(**options), hook=hook)
        return report

    def begin(self, conn: str) -> None:
        """Open a transaction on a driver instance."""
        self.dj2.call("begin", conn=conn)

    def commit(self, conn: str) -> None:
        """Commit a driver instance's transaction."""
        self.dj2.call("commit", conn=conn)

    def backdate(self, keys: Iterable[str] | None = None, seconds: float = TWO_DAYS) -> None:
        """Make file-store objects look old (moto cannot backdate: S3 tests use --min-age 0)."""
        assert self.s3 is None, "only file stores can be backdated"
        when = time.time() - seconds
        for key in self.stored() if keys is None else keys:
            os.utime(self.root.joinpath(*key.split("/")), (when, when))

    def table(self, table: str = "rec", schema: str | None = None) -> str:
        """Return the quoted name of one of this lab's tables (``rec`` of ``schema``)."""
        return self.side.table(schema or self.schema, table)

    def path(self, column: str) -> str:
        """Return the SQL that reads a codec column's ``path`` on this lab's server."""
        return self.side.path(column)

    def account(self, tables: list[str]) -> tuple[str, str]:
        """Create a login that can read these tables of the lab's schema and nothing else.

        On MySQL it also sees every database (``SHOW DATABASES``), which the cleaner
        asks for; on PostgreSQL every schema is visible anyway.
        """
        name, password = unique("djbr_"), secrets.token_hex(8)
        self.accounts.append(name)
        for statement in self.side.create_account(name, password):
            self.db.execute(statement)
        for statement in self.side.grant_select(self.schema, tables, name):
            self.db.execute(statement)
        return name, password

    def revoke(self, name: str, table: str) -> None:
        """Take SELECT on one of the lab's tables away from an account."""
        self.db.execute(self.side.revoke_select(self.schema, table, name))

    def admin_db(self) -> Database | PgDatabase:
        """The admin connection this lab uses for setup and checks."""
        return self.db

    def teardown(self) -> None:
        """Close the driver instances, drop the schemas and accounts."""
        for conn in self.conns:
            self.dj2.call("disconnect", conn=conn)
        for statement in self.side.drop([self.schema, self.other], self.accounts):
            self.db.execute(statement)
        self.db.close()
