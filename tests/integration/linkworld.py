"""A source pipeline, a link account and DataJoint config for link tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from djbridge.config import DatabaseServer, StorageServer
from djbridge.mysql import connect, quote
from djbridge.stores import Store, store_from_dj_spec
from tests.conftest import dj_connection, s3_store_spec

LINK_USER, LINK_PASS = "djlink", "link-secret"


@dataclass
class World:
    """Names and handles one link test works with."""

    source: DatabaseServer
    local: DatabaseServer
    src_schema: str
    out_schema: str
    local_schema: str
    stores: dict[str, dict[str, Any]]
    tmp: Path

    def store(self, name: str) -> Store:
        return store_from_dj_spec(name, self.stores[name])

    def objects(self, name: str, prefix: str = "") -> dict[str, int]:
        return {o.key: o.size for o in self.store(name).iter_objects(prefix)}

    def query(self, role: str, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        db = connect(self.source if role == "source" else self.local)
        try:
            return db.query(sql, args)
        finally:
            db.close()

    def outbound(self, table: str = "outbound") -> dict[Any, tuple[str, str, str]]:
        rows = self.query(
            "source",
            f"SELECT * FROM {quote(self.out_schema, table)}",
        )
        return {r[0] if len(r) == 4 else r[:-3]: tuple(r[-3:]) for r in rows}


def grant_link_account(server: DatabaseServer, src_schema: str, out_schema: str) -> None:
    db = connect(server)
    try:
        db.execute(f"CREATE USER IF NOT EXISTS '{LINK_USER}'@'%' IDENTIFIED BY '{LINK_PASS}'")
        db.execute(f"GRANT SELECT, REFERENCES ON {quote(src_schema)}.* TO '{LINK_USER}'@'%'")
        db.execute(f"GRANT ALL PRIVILEGES ON {quote(out_schema)}.* TO '{LINK_USER}'@'%'")
    finally:
        db.close()


@contextmanager
def link_config(world: World) -> Iterator[None]:
    """Set LINK_USER/LINK_PASS, the local account and the stores; restore afterwards."""
    import datajoint as dj

    saved_env = {k: os.environ.get(k) for k in ("LINK_USER", "LINK_PASS")}
    keys = ("database.host", "database.user", "database.password", "database.use_tls", "stores")
    saved = {k: dj.config.get(k) for k in keys}
    os.environ["LINK_USER"], os.environ["LINK_PASS"] = LINK_USER, LINK_PASS
    dj.config["database.host"] = f"{world.local.host}:{world.local.port}"
    dj.config["database.user"] = world.local.user
    dj.config["database.password"] = world.local.password
    dj.config["database.use_tls"] = world.local.use_tls
    dj.config["stores"] = world.stores
    dj.conn(reset=True)
    try:
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for k, v in saved.items():
            dj.config[k] = v


def make_stores(
    kind: str,
    tmp: Path,
    s3: tuple[StorageServer, StorageServer] | None = None,
    bucket: Callable[[StorageServer], str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Source store 'src' and destination store 'dst', on two endpoints or two directories."""
    if kind == "file":
        for name in ("src", "dst", "stage"):
            (tmp / name).mkdir(exist_ok=True)
        return {
            "src": {"protocol": "file", "location": str(tmp / "src"), "stage": str(tmp / "stage")},
            "dst": {"protocol": "file", "location": str(tmp / "dst"), "stage": str(tmp / "dst")},
        }
    assert s3 is not None and bucket is not None
    return {
        "src": s3_store_spec(s3[0], bucket(s3[0]), "lab/src"),
        "dst": s3_store_spec(s3[1], bucket(s3[1]), "copy/dst"),
    }


def source_schema(world: World) -> Any:
    """Return the DataJoint schema of the source pipeline, with the world's stores configured."""
    import datajoint as dj

    dj.config["stores"] = world.stores
    return dj.Schema(world.src_schema, connection=dj_connection(world.source))


def build_pipeline(world: World, n: int = 6) -> dict[str, Any]:
    """Declare Subject -> Recording (blob@src, attach@src, 2 parts) on the source; fill it."""
    import datajoint as dj

    schema = source_schema(world)

    @schema
    class Subject(dj.Manual):
        definition = """
        subject_id : int
        ---
        species = "mouse" : varchar(32)
        """

    @schema
    class Recording(dj.Manual):
        definition = """
        # one recording session with raw data
        -> Subject
        rec_id : int
        ---
        trace : blob@src
        notes : attach@src
        quality = null : float
        made = CURRENT_TIMESTAMP : timestamp
        label : varchar(40)
        unique index (label)
        """

        class Channel(dj.Part):
            definition = """
            -> master
            channel : tinyint
            ---
            gain : double
            wave : blob@src
            """

        class Reviewer(dj.Part):
            definition = """
            -> master
            -> Subject.proj(reviewer_id="subject_id")
            ---
            verdict : varchar(16)
            """

    rng = np.random.default_rng(11)
    Subject.insert([(i, "mouse") for i in range(3)])
    sent: dict[int, dict[str, Any]] = {}
    for rec in range(n):
        path = world.tmp / f"notes-{rec}.bin"
        path.write_bytes(rng.bytes(1500 + rec))
        trace = rng.normal(size=(30, 3))
        Recording.insert1(
            dict(subject_id=rec % 3, rec_id=rec, trace=trace, notes=str(path),
                 quality=None if rec % 2 else 0.5, label=f"rec-{rec}")
        )  # fmt: skip
        Recording.Channel.insert(
            [dict(subject_id=rec % 3, rec_id=rec, channel=c, gain=1.5 * c,
                  wave=rng.normal(size=8)) for c in range(2)]
        )  # fmt: skip
        Recording.Reviewer.insert1(
            dict(subject_id=rec % 3, rec_id=rec, reviewer_id=(rec + 1) % 3, verdict="ok")
        )
        sent[rec] = {"trace": trace, "notes": path.read_bytes()}
    return {"Subject": Subject, "Recording": Recording, "sent": sent}


def make_link(world: World, **kwargs: Any) -> Any:
    from link import link

    stores = kwargs.pop("stores", {"src": "dst"})

    @link(f"{world.source.host}:{world.source.port}", world.src_schema, world.out_schema,
          "Outbound", world.local_schema, stores=stores, **kwargs)  # fmt: skip
    class Recording:
        """The linked recordings."""

    return Recording


@pytest.fixture(params=["s3", "file"])
def world(
    request: pytest.FixtureRequest,
    source_server: DatabaseServer,
    local_server: DatabaseServer,
    schema_factory: Callable[..., str],
    bucket_factory: Callable[[StorageServer], str],
    tmp_path: Path,
) -> Iterator[World]:
    s3 = None
    if request.param == "s3":
        s3 = (request.getfixturevalue("s3_a"), request.getfixturevalue("s3_b"))
    stores = make_stores(request.param, tmp_path, s3, bucket_factory)
    w = World(
        source_server, local_server, schema_factory("source", "src_"),
        schema_factory("source", "out_"), schema_factory("local", "loc_"), stores, tmp_path,
    )  # fmt: skip
    grant_link_account(source_server, w.src_schema, w.out_schema)
    with link_config(w):
        yield w
