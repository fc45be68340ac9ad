r"""Two DataJoint 2.x labs and a link between them: what one link2 test creates and drops.

:class:`TwoLabs` holds a **source lab** (a server, its own database on PostgreSQL,
an owner account that builds the pipeline with DataJoint 2.x, and the store
``raw``), a **local lab** (a server, its database, its own account, and the store
``raw_local``), and the **link account**, made by the statements the README's link section gives a
source admin (:func:`readme_grants`), so that every test runs with the README's
grants and no more:

* PostgreSQL source: ``USAGE`` on the source schema, ``SELECT, REFERENCES`` on its
  tables, and the helper schema created ``AUTHORIZATION`` the link account;
* MySQL source: ``SELECT, REFERENCES`` on the source schema and ``ALL`` on the
  helper schema.

``grant_link(tables=...)`` grants SELECT and REFERENCES on those tables only instead.

The link runs as a user runs it (:meth:`TwoLabs.run`): a script with the seed's
``@link(...)`` in a folder whose ``datajoint.json`` and ``.secrets/`` configure
the local account and both stores, with ``LINK_USER``/``LINK_PASS`` set. The
source pipeline is made, and both sides are read back, by real DataJoint 2.x in
processes of their own (:mod:`tests.link2.side2`).

    labs = TwoLabs(source_admin, local_admin, tmp_path)
    labs.create()
    labs.ready(range(4))                  # the source pipeline, 4 recordings; the grants
    run = labs.run("r = Recording().source.pull()\\nemit(rows=r.rows_copied)")
    assert run.result == {"rows": 4}, run
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from djbridge.config import DatabaseServer, StorageServer
from djbridge.mysql import Database, connect, quote
from djbridge.postgres import PgDatabase, connect_pg, pg_quote
from djbridge.stores import Store, s3_dj_spec, store_from_dj_spec
from tests.conftest import unique
from tests.dj2.client import ROOT, Driver
from tests.link2.runner import Run, run_script, side2, start_script, write_config

SOURCE_STORE, LOCAL_STORE = "raw", "raw_local"
README = ROOT / "README.md"
TABLES = ("recording", "recording__channel")
"""The linked source tables (master and part); ``subject`` stays behind."""
TRY_PULL = """
def local_ids():
    return sorted(k["rec_id"] for k in Recording().keys())


try:
    result = Recording().source.pull()
except Exception as err:
    error = {"error": type(err).__name__, "message": str(err)}
else:
    error = {"error": None, **summary(result)}
status = Recording().source.status()
emit(**error, ids=local_ids(), status=counts(status), stuck=status.stuck)
"""
"""A script body: pull everything; emit the error (or the summary), the local keys, status."""


def open_db(server: DatabaseServer) -> Database | PgDatabase:
    """Open an admin connection to either kind of server."""
    return connect_pg(server) if server.backend == "postgresql" else connect(server)


def table_name(server: DatabaseServer, schema: str, table: str) -> str:
    """Return ``schema.table`` quoted for the server's kind."""
    return pg_quote(schema, table) if server.backend == "postgresql" else quote(schema, table)


def readme_grants(backend: str) -> list[str]:
    """Return the SQL the README's link section gives a source admin for ``backend``.

    MySQL: its first ``sql`` block; PostgreSQL: the block under "Grants on a
    PostgreSQL source". Each statement as written, without its semicolon.
    """
    text = README.read_text()
    section = text[text.index("\n## link\n") :]
    if backend == "postgresql":
        section = section[section.index("Grants on a PostgreSQL source") :]
    block = section.split("```sql", 1)[1].split("```", 1)[0]
    return [" ".join(s.split()) for s in block.split(";") if s.strip()]


class Lab:
    """One lab's server: its admin, its own account and its database (PostgreSQL)."""

    def __init__(self, admin: DatabaseServer, role: str) -> None:
        self.admin = admin
        self.role = role
        self.database = unique(f"{role}lab_") if admin.backend == "postgresql" else ""
        self.account = dataclasses.replace(
            admin, user=unique(f"{role}own_"), password=secrets.token_hex(8), use_tls=False
        )
        if self.database:
            self.account = dataclasses.replace(self.account, database=self.database)
        self.users: list[str] = [self.account.user]

    @property
    def backend(self) -> str:
        """``"postgresql"`` or ``"mysql"``."""
        return self.admin.backend

    def db(self) -> Database | PgDatabase:
        """An admin connection (to the lab's database on PostgreSQL)."""
        if self.database:
            return connect_pg(dataclasses.replace(self.admin, database=self.database))
        return connect(self.admin)

    def sql(self, *statements: str) -> list[tuple[Any, ...]]:
        """Run statements as the admin; return the last one's rows."""
        db = self.db()
        try:
            rows: list[tuple[Any, ...]] = []
            for statement in statements:
                rows = db.query(statement)
            return rows
        finally:
            db.close()

    def create_user(self, user: str, password: str) -> None:
        """Create a login that holds nothing yet."""
        self.users.append(user)
        if self.backend == "postgresql":
            statement = f"CREATE ROLE {pg_quote(user)} LOGIN PASSWORD '{password}'"
        else:
            statement = f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"
        admin = open_db(self.admin)
        try:
            admin.execute(statement)
        finally:
            admin.close()

    def create(self, schemas: Iterable[str]) -> None:
        """Create the lab's account, and its database (PostgreSQL) or its schema grants."""
        self.users.remove(self.account.user)
        self.create_user(self.account.user, self.account.password)
        admin = open_db(self.admin)
        try:
            if self.database:
                admin.execute(
                    f"CREATE DATABASE {pg_quote(self.database)} OWNER {pg_quote(self.account.user)}"
                )
            else:
                for schema in schemas:
                    admin.execute(f"GRANT ALL ON {quote(schema)}.* TO '{self.account.user}'@'%'")
        finally:
            admin.close()

    def drop(self, schemas: Iterable[str]) -> None:
        """Drop the lab's database (or schemas) and every account made for it."""
        admin = open_db(self.admin)
        try:
            if self.database:
                admin.execute(f"DROP DATABASE IF EXISTS {pg_quote(self.database)} WITH (FORCE)")
                for user in self.users:
                    admin.execute(f"DROP ROLE IF EXISTS {pg_quote(user)}")
            else:
                admin.execute("SET FOREIGN_KEY_CHECKS=0")
                for schema in schemas:
                    admin.execute(f"DROP DATABASE IF EXISTS {quote(schema)}")
                for user in self.users:
                    admin.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        finally:
            admin.close()

    def connect_request(self, account: DatabaseServer | None = None) -> dict[str, Any]:
        """The ``connect`` part of a :mod:`tests.link2.side2` request."""
        server = account or self.account
        return {
            "host": server.host,
            "port": server.port,
            "user": server.user,
            "password": server.password,
            "backend": server.backend,
            "database": self.database,
        }

    def name(self, schema: str, table: str) -> str:
        """Return ``schema.table`` quoted for this lab's server."""
        return table_name(self.admin, schema, table)

    def tables(self, schema: str) -> list[str]:
        """Return the names of every table of ``schema``."""
        rows = self.sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            f"'{schema}' ORDER BY 1"
        )
        return [str(r[0]) for r in rows]

    def count(self, schema: str, table: str, where: str = "") -> int:
        """Return the number of rows of a table (``where`` optional)."""
        clause = f" WHERE {where}" if where else ""
        return int(self.sql(f"SELECT COUNT(*) FROM {self.name(schema, table)}{clause}")[0][0])

    def fingerprint(self, schema: str) -> dict[str, str]:
        """Return a digest of every table of ``schema``: its columns, indexes and rows."""
        out = {}
        for table in self.tables(schema):
            if self.backend == "postgresql":
                shape = self.sql(
                    "SELECT column_name, data_type, udt_name, is_nullable, column_default "
                    f"FROM information_schema.columns WHERE table_schema = '{schema}' AND "
                    f"table_name = '{table}' ORDER BY ordinal_position",
                )
                shape += self.sql(
                    f"SELECT indexdef FROM pg_indexes WHERE schemaname = '{schema}' "
                    f"AND tablename = '{table}' ORDER BY 1"
                )
            else:
                shape = self.sql(f"SHOW CREATE TABLE {self.name(schema, table)}")
            rows = sorted(repr(r) for r in self.sql(f"SELECT * FROM {self.name(schema, table)}"))
            text = repr(shape) + "\n".join(rows)
            out[table] = hashlib.sha256(text.encode()).hexdigest()
        return out

    def schemas(self) -> set[str]:
        """Return every schema of the lab's database (every database on MySQL)."""
        return {str(r[0]) for r in self.sql("SELECT schema_name FROM information_schema.schemata")}


class TwoLabs:
    """One link test's source lab, local lab, link account and stores (module docstring)."""

    def __init__(
        self,
        source_admin: DatabaseServer,
        local_admin: DatabaseServer,
        tmp: Path,
        *,
        s3: tuple[StorageServer, StorageServer] | None = None,
        buckets: tuple[str, str] = ("", ""),
    ) -> None:
        self.source = Lab(source_admin, "src")
        self.local = Lab(local_admin, "loc")
        self.tmp = tmp
        self.src_schema = unique("src_")
        self.out_schema = unique("out_")
        self.local_schema = unique("loc_")
        self.link_user, self.link_pass = unique("djlink_"), secrets.token_hex(8)
        self.files = tmp / "source-files"
        self.files.mkdir(parents=True, exist_ok=True)
        if s3 is None:
            for name in ("source-store", "local-store"):
                (tmp / name).mkdir(exist_ok=True)
            src: dict[str, Any] = {"protocol": "file", "location": str(tmp / "source-store")}
            dst: dict[str, Any] = {"protocol": "file", "location": str(tmp / "local-store")}
        else:
            src = s3_dj_spec(s3[0], buckets[0], "lab/raw")
            dst = s3_dj_spec(s3[1], buckets[1], "copy/raw")
        self.stores = {SOURCE_STORE: src, LOCAL_STORE: dst}
        self.workdir = tmp / "link"
        self.driver_conns: list[tuple[Driver, str]] = []

    @property
    def kind(self) -> str:
        """``"file"`` or ``"s3"``: where both stores live."""
        return str(self.stores[SOURCE_STORE]["protocol"])

    @property
    def pair(self) -> str:
        """``"postgresql-to-mysql"`` and the like."""
        return f"{self.source.backend}-to-{self.local.backend}"

    # ---- setting up ------------------------------------------------------------------------
    def create(self) -> None:
        """Create both labs' accounts and databases (the link account comes with its grants)."""
        self.source.create([self.src_schema])
        self.local.create([self.local_schema])
        self.write_link_config()

    def write_link_config(self, **extra: Any) -> Path:
        """Write the link's folder: the local account and both stores."""
        return write_config(self.workdir, self.local.account, self.stores, **extra)

    def build(
        self, ids: Iterable[int], kind: str = "full", *, read: bool = False, big: int = 0
    ) -> Any:
        """Declare the source pipeline as its owner and insert recordings ``ids``.

        With ``read``, return what :meth:`read_source` would (one process less); ``big``
        adds that many bytes to every attachment and file object.
        """
        self.kind_of_rows = kind
        download = {"download": str(self.tmp / unique("dl-src-"))} if read else {}
        return self.side2("build", self.source, ids=list(ids), kind=kind, big=big, **download)

    def more(self, ids: Iterable[int]) -> None:
        """Insert more recordings at the source, as its owner."""
        self.side2("more", self.source, ids=list(ids), kind=self.kind_of_rows)

    def ready(
        self, ids: Iterable[int], kind: str = "full", *, read: bool = False, big: int = 0
    ) -> Any:
        """Build the source pipeline with recordings ``ids``, grant the link; see :meth:`build`."""
        found = self.build(ids, kind, read=read, big=big)
        self.grant_link()
        return found

    def grant_link(self, tables: Iterable[str] | None = None) -> None:
        """Create the link account with the README's grants, or with SELECT on ``tables`` only.

        The README's statements (``CREATE USER``/``CREATE ROLE`` and the grants for
        this kind of source server) run as written there, with this test's names.
        """
        names = {
            "djlink": self.link_user,
            "secret-password": self.link_pass,
            "source_schema": self.src_schema,
            "helper_schema": self.out_schema,
        }
        self.source.users.append(self.link_user)
        if tables is None:
            # MySQL grants escape "_" (a wildcard there) as "\_": the test's names too.
            names |= {
                k.replace("_", "\\_"): v.replace("_", "\\_")
                for k, v in names.items()
                if k.endswith("_schema")
            }
            pattern = re.compile(r"\b(djlink|secret-password|source\\?_schema|helper\\?_schema)\b")
            statements = [
                pattern.sub(lambda found: names[found[0]], statement)
                for statement in readme_grants(self.source.backend)
            ]
            self.source.sql(*statements)
            return
        self.source.create_user(self.link_user, self.link_pass)
        self.source.users.remove(self.link_user)
        listed = [self.source.name(self.src_schema, t) for t in tables]
        if self.source.backend == "postgresql":
            user = pg_quote(self.link_user)
            self.source.sql(
                f"GRANT USAGE ON SCHEMA {pg_quote(self.src_schema)} TO {user}",
                f"GRANT SELECT, REFERENCES ON {', '.join(listed)} TO {user}",
                f"CREATE SCHEMA {pg_quote(self.out_schema)} AUTHORIZATION {user}",
            )
            return
        user = f"'{self.link_user}'@'%'"
        self.source.sql(
            *[f"GRANT SELECT, REFERENCES ON {t} TO {user}" for t in listed],
            f"GRANT ALL PRIVILEGES ON {quote(self.out_schema)}.* TO {user}",
        )

    def side2(
        self, op: str, lab: Lab, *, account: DatabaseServer | None = None, **fields: Any
    ) -> Any:
        """Run one :mod:`tests.link2.side2` request on ``lab`` (as its own account)."""
        store = SOURCE_STORE if lab is self.source else LOCAL_STORE
        request = {
            "op": op,
            "connect": lab.connect_request(account),
            "stores": {store: self.stores[store]},
            "schema": self.src_schema if lab is self.source else self.local_schema,
            "files": str(self.files),
            **fields,
        }
        return side2(request, self.tmp / f"side2-{op}")

    # ---- the link, as a user runs it ---------------------------------------------------------
    def header(
        self,
        table: str = "Recording",
        *,
        stores: dict[str, str] | None = None,
        backend: bool | str = True,
        **options: Any,
    ) -> str:
        """Return the seed's ``from link import link`` and decorated class for this link.

        ``backend`` True passes the source's ``backend=`` and ``database=`` when the
        source differs from the local side or is PostgreSQL; False passes neither.
        """
        source = self.source.admin
        args = [f"{source.host}:{source.port}", self.src_schema, self.out_schema, "Outbound"]
        text = ", ".join(repr(a) for a in [*args, self.local_schema])
        keywords = {"stores": {SOURCE_STORE: LOCAL_STORE} if stores is None else stores}
        if backend is True and (self.pair != "mysql-to-mysql"):
            keywords["backend"] = source.backend
            if source.backend == "postgresql":
                keywords["database"] = self.source.database
        keywords.update(options)
        text += "".join(f", {k}={v!r}" for k, v in keywords.items())
        return f"from link import link\n\n\n@link({text})\nclass {table}:\n    pass\n\n\n"

    def env(self, **changes: str) -> dict[str, str]:
        """``LINK_USER`` and ``LINK_PASS`` of the link account, with changes."""
        return {"LINK_USER": self.link_user, "LINK_PASS": self.link_pass, **changes}

    def run(
        self,
        body: str,
        *,
        header: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        timeout: float = 300,
    ) -> Run:
        """Run the link's header and ``body`` in the link's folder; return the :class:`Run`."""
        text = (self.header() if header is None else header) + body
        return run_script(
            self.workdir, text, env=self.env() if env is None else env, stdin=stdin,
            timeout=timeout,
        )  # fmt: skip

    def start(self, body: str, *, header: str | None = None) -> Any:
        """Start the link's header and ``body`` without waiting (a ``Popen``)."""
        text = (self.header() if header is None else header) + body
        return start_script(self.workdir, text, env=self.env())

    # ---- reading both sides ------------------------------------------------------------------
    def read_source(self, table: str = "Recording", parts: tuple[str, ...] = ("Channel",)) -> Any:
        """Read a source table and its parts with plain 2.x, as the source owner."""
        download = str(self.tmp / unique("dl-src-"))
        return self.side2("read", self.source, download=download, table=table, parts=parts)

    def read_local(self, table: str = "Recording", parts: tuple[str, ...] = ("Channel",)) -> Any:
        """Read a local table and its parts with plain 2.x, knowing only the local store."""
        download = str(self.tmp / unique("dl-loc-"))
        return self.side2("read", self.local, download=download, table=table, parts=parts)

    def protocols(self, keys: list[tuple[str, int]]) -> Any:
        """Declare the source lookup table ``Protocol``, insert ``keys``; return its read."""
        download = str(self.tmp / unique("dl-src-"))
        return self.side2("protocols", self.source, keys=keys, download=download)

    def flag(self, keys: list[dict[str, Any]]) -> None:
        """Flag source rows in the outbound table the seed's way, as the source's admin."""
        admin = dataclasses.replace(self.source.admin, database=self.source.database)
        self.side2(
            "flag", self.source, account=admin, keys=keys, schema=self.out_schema, table="Outbound"
        )

    def outbound(self) -> dict[int, tuple[str, str, str]]:
        """Return the outbound table's ``{rec_id: (process, is_flagged, is_deprecated)}``."""
        rows = self.source.sql(
            "SELECT rec_id, process, is_flagged, is_deprecated FROM "
            f"{self.source.name(self.out_schema, 'outbound')}"
        )
        return {int(r[0]): (str(r[1]), str(r[2]), str(r[3])) for r in rows}

    def local_ids(self, table: str = "recording") -> list[int]:
        """Return the ``rec_id`` of every local row of a table, sorted, duplicates kept."""
        rows = self.local.sql(f"SELECT rec_id FROM {self.local.name(self.local_schema, table)}")
        return sorted(int(r[0]) for r in rows)

    def store(self, name: str) -> Store:
        """Return djbridge's view of one of the two stores."""
        return store_from_dj_spec(name, self.stores[name])

    def objects(self, name: str) -> dict[str, str]:
        """Return ``{key: sha256}`` of every object in a store."""
        store = self.store(name)
        return {o.key: hashlib.sha256(store.get(o.key)).hexdigest() for o in store.iter_objects("")}

    def source_fingerprint(self) -> dict[str, Any]:
        """Every source table (the pipeline's schema) and every source-store object."""
        return {
            "tables": self.source.fingerprint(self.src_schema),
            "objects": self.objects(SOURCE_STORE),
        }

    def structure(self, dj2: Driver, lab: Lab, schema: str) -> dict[str, dict[str, Any]]:
        """Return plain 2.x's view of every table of a schema (the driver's ``dump``)."""
        name = unique("l2")
        dj2.call(
            "connect", name=name, backend=lab.backend, host=lab.admin.host,
            port=lab.admin.port, user=lab.admin.user, password=lab.admin.password,
            database=lab.database,
        )  # fmt: skip
        self.driver_conns.append((dj2, name))
        dump = dj2.call(
            "dump", conn=name, schema=schema, download_path=str(self.tmp / unique("dump-"))
        )
        tables = {t["table"]: t for t in dump["tables"]}
        tables["~lineage"] = {"rows": dump["lineage"]}
        return tables

    def teardown(self) -> None:
        """Close driver connections; drop both labs' databases, schemas and accounts."""
        for dj2, name in self.driver_conns:
            dj2.call("disconnect", conn=name)
        self.source.drop([self.out_schema, self.src_schema])
        self.local.drop([self.local_schema])


def dumps(value: Any) -> str:
    """Return a value as JSON text (for messages)."""
    return json.dumps(value, default=str)[:2000]
