"""dj-cleaner's safety rules, each against real MariaDB, real S3 (moto) and real files.

Every test builds a DataJoint pipeline with ``blob@``, ``attach@`` and ``filepath@``
columns, makes orphans the way labs do (rows deleted, then
``schema.external[store].delete(delete_external_files=False)``), runs the cleaner
and checks what a database administrator would check: which objects are still
there, which rows, the exit status and the report.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from djbridge.cleaner import CleanOptions, clean, load_config
from djbridge.cleaner.cli import main
from djbridge.config import DatabaseServer, StorageServer
from djbridge.errors import StoreError
from djbridge.layout import object_key
from djbridge.mysql import connect, quote
from djbridge.sandbox import MotoS3
from djbridge.stores import DeleteFailure, ObjectInfo, Store, open_store
from djbridge.stores.file import FileStore
from tests.conftest import dj_connection, s3_store_spec

STORE = "lab"
TWO_DAYS = 2 * 86400


@dataclass
class Lab:
    """One schema with a DataJoint pipeline whose external data lives in one store."""

    backend: str
    server: DatabaseServer
    schema: str
    store: Store
    storage_toml: str
    storage_ref: str
    bucket: str
    location: str
    stage: Path
    tables: dict[str, Any] = field(default_factory=dict)
    dj_schema: Any = None

    def key(self, digest: bytes | str, attachment: str | None = None) -> str:
        return object_key(self.schema, digest, attachment)

    def tracked(self) -> dict[str, int]:
        """Return ``{object key: size}`` for every blob and attachment row of ~external_lab."""
        db = connect(self.server)
        try:
            rows = db.query(
                "SELECT hash, attachment_name, size FROM "
                f"{quote(self.schema, '~external_' + STORE)} WHERE filepath IS NULL"
            )
        finally:
            db.close()
        return {self.key(h, a): int(s) for h, a, s in rows}

    def objects(self) -> set[str]:
        return {o.key for o in self.store.iter_objects(f"{self.schema}/")}

    def run_toml(self, **override: Any) -> str:
        values: dict[str, Any] = {
            "database_server": "lab",
            "schema": self.schema,
            "store": STORE,
            "storage_server": self.storage_ref,
            "location": self.location,
        }
        if self.bucket:
            values["bucket"] = self.bucket
        values.update(override)
        body = "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items() if v is not None)
        return "[[cleaning_runs]]\n" + body

    def config(self, path: Path, runs: Iterable[str] | None = None, extra: str = "") -> Path:
        server = self.server
        text = (
            f'[database_servers.lab]\nhost = "{server.host}:{server.port}"\n'
            f'user = "{server.user}"\npassword = "{server.password}"\n'
            f"use_tls = {str(bool(server.use_tls)).lower()}\n\n{self.storage_toml}\n{extra}\n"
        )
        text += "\n".join(runs if runs is not None else [self.run_toml()])
        path.write_text(text)
        return path


def declare(lab: Lab) -> None:
    """Declare the pipeline: Rec (blob@ and attach@, both nullable) and Doc (filepath@)."""
    import datajoint as dj

    schema = dj.Schema(lab.schema, connection=dj_connection(lab.server))

    @schema
    class Rec(dj.Manual):
        definition = f"""
        rec : int
        ---
        trace = null : blob@{STORE}
        notes = null : attach@{STORE}
        """

    @schema
    class Doc(dj.Manual):
        definition = f"""
        doc : int
        ---
        path : filepath@{STORE}
        """

    lab.dj_schema = schema
    lab.tables = {"Rec": Rec, "Doc": Doc}


def insert_recs(lab: Lab, ids: Iterable[int], salt: str = "", nulls: bool = False) -> None:
    """Insert recordings with a blob and an attachment each (distinct content per id)."""
    rec = lab.tables["Rec"]
    notes = lab.stage.parent / "notes"
    notes.mkdir(exist_ok=True)
    for rid in ids:
        path = notes / f"note{rid}{salt}.txt"
        path.write_text(f"recording {rid} {salt}\n" * (20 + rid))
        trace = np.arange(10 + rid, dtype="float64") + len(salt)
        if nulls and rid % 2:
            rec.insert1({"rec": rid, "trace": trace})
        else:
            rec.insert1({"rec": rid, "trace": trace, "notes": str(path)})


def insert_doc(lab: Lab, doc: int, relpath: str) -> str:
    """Insert a filepath@ row; return the object key of the file (outside the hash layout)."""
    path = lab.stage / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"user document {doc}\n")
    lab.tables["Doc"].insert1({"doc": doc, "path": str(path)})
    return relpath


def orphan(lab: Lab, ids: Iterable[int]) -> dict[str, int]:
    """Delete recordings, drop their tracking rows without files; return the orphaned keys."""
    before = lab.tracked()
    (lab.tables["Rec"] & [{"rec": rid} for rid in ids]).delete_quick()
    lab.dj_schema.external[STORE].delete(delete_external_files=False)
    after = lab.tracked()
    return {k: v for k, v in before.items() if k not in after}


def plant_foreign(lab: Lab) -> list[str]:
    """Put names inside the schema folder that DataJoint would not write (or only as temps)."""
    h = secrets.token_hex(16)
    keys = [
        f"{lab.schema}/readme.txt",
        f"{lab.schema}/{h[:2]}/{h[2:4]}/{h}.saving",  # a crashed blob write
        f"{lab.schema}/{h[:2]}/{h[2:4]}/{h}.notes.txt.copying",  # a crashed attachment copy
        f"{lab.schema}/00/00/{h}",  # folds that do not match the hash
        f"{lab.schema}/{h[:2]}/{h[2:4]}/{h.upper()}",
        f"{lab.schema}/{h[:2]}/{h}",  # one fold missing
        f"{lab.schema}/{h[:2]}/{h[2:4]}/{h}/extra",
        f"{lab.schema}/{'x' * 43}",  # a 0.11 legacy blob name
    ]
    for key in keys:
        lab.store.put(key, b"not managed by DataJoint")
    return keys


def backdate(lab: Lab, keys: Iterable[str], seconds: float = TWO_DAYS) -> None:
    """Make file-store objects look old (moto cannot backdate; S3 tests use --min-age 0)."""
    assert isinstance(lab.store, FileStore)
    when = time.time() - seconds
    for key in keys:
        os.utime(lab.store.path(key), (when, when))


def all_keys(lab: Lab) -> set[str]:
    return {o.key for o in lab.store.iter_objects("")}


def cli(config: Path, *flags: str, report: Path | None = None) -> tuple[int, list[dict[str, Any]]]:
    args = ["--config-file", str(config), "--no-progress", *flags]
    if report is None:
        report = config.with_suffix(".json")
    status = main([*args, "--report", str(report)])
    data = json.loads(report.read_text()) if report.exists() else []
    return status, data


def make_lab(
    backend: str,
    server: DatabaseServer,
    schema: str,
    base: Path,
    dj_stores: dict[str, Any],
    s3: StorageServer | None = None,
    bucket: str = "",
) -> Lab:
    stage = base / "stage"
    stage.mkdir(parents=True, exist_ok=True)
    if backend == "file":
        root = base / "store"
        root.mkdir(exist_ok=True)
        dj_stores[STORE] = {"protocol": "file", "location": str(root), "stage": str(stage)}
        lab = Lab(
            backend,
            server,
            schema,
            FileStore(root),
            "[storage_servers.file.disk]\n",
            "file.disk",
            "",
            str(root),
            stage,
        )
    else:
        assert s3 is not None
        location = "dj/lab"
        dj_stores[STORE] = {**s3_store_spec(s3, bucket, location), "stage": str(stage)}
        toml = (
            f'[storage_servers.minio.labs3]\nendpoint = "{s3.endpoint}"\n'
            f'access_key = "{s3.access_key}"\nsecret_key = "{s3.secret_key}"\nsecure = false\n'
        )
        store = open_store(s3, bucket=bucket, location=location)
        lab = Lab(backend, server, schema, store, toml, "minio.labs3", bucket, location, stage)
    declare(lab)
    return lab


@pytest.fixture(autouse=True)
def _filepath_support(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DJ_SUPPORT_FILEPATH_MANAGEMENT", "TRUE")


def build_lab(request: pytest.FixtureRequest, tmp_path: Path) -> Lab:
    """Build a lab on ``request.param``'s backend from the session's servers."""
    server = request.getfixturevalue("source_server")
    schema = request.getfixturevalue("schema_factory")()
    stores = request.getfixturevalue("dj_stores")
    if request.param == "file":
        return make_lab("file", server, schema, tmp_path, stores)
    s3 = request.getfixturevalue("s3_a")
    bucket = request.getfixturevalue("bucket_factory")(s3)
    return make_lab("s3", server, schema, tmp_path, stores, s3, bucket)


@pytest.fixture(params=["file", "s3"])
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Lab:
    return build_lab(request, tmp_path)


def age_flags(lab: Lab, keys: Iterable[str]) -> list[str]:
    """Backdate on file stores and keep the default 1d; use --min-age 0 on S3."""
    if lab.backend == "file":
        backdate(lab, keys)
        return []
    return ["--min-age", "0"]


# --- the rules -------------------------------------------------------------------------


def test_deletes_orphans_and_keeps_referenced_foreign_and_filepath_files(
    lab: Lab, tmp_path: Path
) -> None:
    insert_recs(lab, range(6))
    inside = insert_doc(lab, 1, f"{lab.schema}/docs/protocol.md")  # filepath inside the folder
    outside = insert_doc(lab, 2, "raw/session1/readme.txt")
    orphans = orphan(lab, [0, 2, 4])
    foreign = plant_foreign(lab)
    referenced = lab.tracked()
    assert len(orphans) == 6 and len(referenced) == 6  # a blob and an attachment per recording
    flags = age_flags(lab, all_keys(lab))

    status, [report] = cli(lab.config(tmp_path / "c.toml"), *flags)

    assert status == 0, report
    remaining = all_keys(lab)
    assert not set(orphans) & remaining
    assert set(referenced) | set(foreign) | {inside, outside} <= remaining
    assert report["scanned"] == 6 + 6 + len(foreign) + 1
    assert report["referenced"] == 6
    assert report["orphaned"] == report["deleted"] == 6
    assert report["bytes_deleted"] == sum(orphans.values())
    assert report["kept_foreign"] == len(foreign) + 1
    assert report["kept_young"] == report["missing"] == 0
    assert report["errors"] == []
    for key in ("database_server", "schema", "store", "storage_server", "bucket", "location"):
        assert (
            report[key]
            == {
                "database_server": "lab",
                "schema": lab.schema,
                "store": STORE,
                "storage_server": lab.storage_ref,
                "bucket": lab.bucket,
                "location": lab.location,
            }[key]
        )
    rows = lab.tables["Rec"].fetch(as_dict=True, download_path=str(tmp_path / "dl"))
    assert sorted(r["rec"] for r in rows) == [1, 3, 5]
    assert all(Path(r["notes"]).is_file() for r in rows)
    assert len(lab.tables["Doc"].fetch("path", download_path=str(tmp_path / "dl2"))) == 2


def test_same_hash_in_exp_and_exp2_only_exp_is_cleaned(
    lab: Lab,
    schema_factory: Callable[..., str],
    dj_stores: dict[str, Any],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """The prefix of exp also matches exp2...; identical content has one hash in both schemas."""
    s3 = request.getfixturevalue("s3_a") if lab.backend == "s3" else None
    base = tmp_path if lab.backend == "s3" else Path(lab.location).parent
    exp2 = make_lab(
        lab.backend,
        lab.server,
        schema_factory(prefix=lab.schema + "2"),
        base,
        dj_stores,
        s3,
        lab.bucket,
    )
    insert_recs(lab, range(3))
    insert_recs(exp2, range(3))  # the same blobs and attachments, so the same hashes
    assert set(k.split("/", 1)[1] for k in lab.tracked()) == {
        k.split("/", 1)[1] for k in exp2.tracked()
    }
    orphans = orphan(lab, [0, 1])
    exp2_before = exp2.objects()
    exp2_orphan = orphan(exp2, [2])  # an orphan in exp2 is not exp's business
    flags = age_flags(lab, all_keys(lab))

    status, [report] = cli(lab.config(tmp_path / "c.toml"), *flags)

    assert status == 0
    assert not set(orphans) & lab.objects()
    assert exp2.objects() == exp2_before
    assert set(exp2_orphan) <= exp2.objects()
    assert report["deleted"] == 4 and report["scanned"] == 6


def test_young_orphans_are_kept(lab: Lab, tmp_path: Path) -> None:
    insert_recs(lab, range(4))
    orphans = orphan(lab, [0, 1])
    config = lab.config(tmp_path / "c.toml")
    if lab.backend == "file":
        old = [k for k in orphans if "." not in k.rsplit("/", 1)[1]]  # the two blobs
        backdate(lab, old)
        status, [report] = cli(config)  # default --min-age 1d
        assert status == 0
        assert report["kept_young"] == 2 and report["deleted"] == 2
        assert lab.objects() & set(orphans) == set(orphans) - set(old)
        return
    status, [report] = cli(config, "--min-age", "15m")  # moto stamps uploads "now"
    assert status == 0
    assert report["kept_young"] == report["orphaned"] == 4 and report["deleted"] == 0
    assert set(orphans) <= lab.objects()


def test_dry_run_deletes_nothing(lab: Lab, tmp_path: Path) -> None:
    insert_recs(lab, range(4))
    orphans = orphan(lab, [0])
    (lab.tables["Rec"] & {"rec": 1}).delete_quick()  # leaves two tracked-but-unused rows
    flags = age_flags(lab, all_keys(lab))
    before, rows_before = all_keys(lab), lab.tracked()

    status, [report] = cli(
        lab.config(tmp_path / "c.toml"), *flags, "--dry-run", "--include-unused", "--min-age", "0"
    )

    assert status == 0
    assert all_keys(lab) == before and lab.tracked() == rows_before
    assert report["dry_run"] is True and report["deleted"] == 0
    assert report["to_delete"] == 4 and report["unused_rows"] == 2
    assert set(orphans) <= before


def test_include_unused_survives_the_not_in_null_trap(lab: Lab, tmp_path: Path) -> None:
    insert_recs(lab, range(6), nulls=True)  # odd recordings have notes = NULL
    doc = insert_doc(lab, 1, "loose/notes.md")
    lab.tables["Doc"].delete_quick()  # its tracking row is now unused, and a filepath row
    unused_keys = {
        k: v for k, v in lab.tracked().items() if k.endswith((".note0.txt", ".note2.txt"))
    }
    (lab.tables["Rec"] & "rec in (0, 2, 3)").delete_quick()
    assert len(lab.dj_schema.external[STORE].unused()) == 0  # DataJoint's NOT IN sees nothing
    live_rows = lab.tables["Rec"].fetch("rec")
    before = lab.tracked()
    assert len(before) == 6 + 3  # six blobs, three attachments
    flags = age_flags(lab, all_keys(lab))
    db = connect(lab.server)
    db.execute(
        f"UPDATE {quote(lab.schema, '~external_' + STORE)} SET timestamp = NOW() - INTERVAL 2 DAY"
    )
    db.close()

    status, [report] = cli(lab.config(tmp_path / "c.toml"), *flags, "--include-unused")

    assert status == 0, report
    after = lab.tracked()
    assert len(after) == 6 - 3 + 1  # blobs of 1, 4, 5 and the attachment of 4 (1, 5 are NULL)
    assert set(unused_keys) & set(after) == set()
    assert report["unused_rows"] == report["unused_rows_deleted"] == 5
    assert report["deleted"] == 5
    assert lab.objects() == set(after)
    assert doc in all_keys(lab)  # filepath files are never deleted
    rows = lab.tables["Rec"].fetch(as_dict=True, download_path=str(tmp_path / "dl"))
    assert sorted(r["rec"] for r in rows) == sorted(live_rows)
    db = connect(lab.server)
    try:
        (count,) = db.query(
            f"SELECT COUNT(*) FROM {quote(lab.schema, '~external_' + STORE)} "
            "WHERE filepath IS NOT NULL"
        )[0]
    finally:
        db.close()
    assert count == 1  # the unused filepath row is kept


def test_include_unused_keeps_young_rows(lab: Lab, tmp_path: Path) -> None:
    insert_recs(lab, range(3))
    (lab.tables["Rec"] & {"rec": 0}).delete_quick()
    before = lab.tracked()
    status, [report] = cli(lab.config(tmp_path / "c.toml"), "--include-unused", "--min-age", "1h")
    assert status == 0
    assert lab.tracked() == before and set(before) <= lab.objects()
    assert report["unused_rows"] == 0 and report["deleted"] == 0


def test_max_delete_caps_a_run(lab: Lab, tmp_path: Path) -> None:
    insert_recs(lab, range(4))
    orphans = orphan(lab, [0, 1])
    flags = age_flags(lab, all_keys(lab))
    config = lab.config(tmp_path / "c.toml")

    status, [report] = cli(config, *flags, "--max-delete", "3")
    assert status == 1
    assert set(orphans) <= lab.objects()
    assert report["deleted"] == 0 and "max-delete" in report["errors"][0]

    status, [report] = cli(config, *flags, "--max-delete", "4")
    assert status == 0 and report["deleted"] == 4
    assert not set(orphans) & lab.objects()


def test_wrong_location_or_subfolding_is_refused(lab: Lab, tmp_path: Path) -> None:
    insert_recs(lab, range(3))
    orphan(lab, [0])
    # A folder that only holds managed-looking names that the table does not list.
    decoy = secrets.token_hex(16)
    if lab.backend == "file":
        wrong_root = Path(lab.location).parent / "other-store"
        wrong = FileStore(wrong_root)
        location = str(wrong_root)
    else:
        wrong = open_store(lab.store.server, bucket=lab.bucket, location="dj/elsewhere")  # type: ignore[attr-defined]
        location = "dj/elsewhere"
    decoy_key = f"{lab.schema}/{decoy[:2]}/{decoy[2:4]}/{decoy}"
    wrong.put(decoy_key, b"someone else's data")
    before = all_keys(lab)
    runs = [lab.run_toml(location=location), lab.run_toml(subfolding=[3])]
    flags = age_flags(lab, all_keys(lab)) if lab.backend == "s3" else ["--min-age", "0"]

    status, reports = cli(lab.config(tmp_path / "c.toml", runs), *flags)

    assert status == 1
    assert [r["status"] for r in reports] == ["failed", "failed"]
    assert all("refusing" in r["errors"][0] and r["deleted"] == 0 for r in reports)
    assert decoy_key in {o.key for o in wrong.iter_objects("")}
    assert all_keys(lab) == before


def test_recheck_keeps_an_object_referenced_after_the_listing(lab: Lab) -> None:
    insert_recs(lab, range(3))
    orphans = orphan(lab, [0])
    blob_key = next(k for k in orphans if "." not in k.rsplit("/", 1)[1])
    digest = bytes.fromhex(blob_key.rsplit("/", 1)[1])
    config = load_config(lab.config(Path(lab.stage.parent, "c.toml")))

    def hook(event: str, run: Any) -> None:
        if event == "listed":  # an insert of the same content lands now
            db = connect(lab.server)
            db.execute(
                f"INSERT INTO {quote(lab.schema, '~external_' + STORE)} (hash, size) "
                "VALUES (%s, %s)",
                (digest, orphans[blob_key]),
            )
            db.close()

    [report] = clean(config, CleanOptions(min_age=0, progress=False), hook=hook)

    assert report.ok
    assert report.to_delete == 2 and report.kept_rechecked == 1 and report.deleted == 1
    assert blob_key in lab.objects()
    assert not (set(orphans) - {blob_key}) & lab.objects()


class FlakyStore:
    """Wraps a real store: the run's listing breaks, or deletes fail.

    The listing breaks after ``list_after`` objects, counted over all key ranges (the
    preflight only asks the store for one round trip, and lists nothing).
    """

    def __init__(self, inner: Store, *, list_after: int | None = None, refuse: str = "") -> None:
        self.inner = inner
        self.description = inner.description
        self.list_after = list_after
        self.refuse = refuse
        self.listings = 0
        self.listed = 0
        self.lock = threading.Lock()

    def iter_objects(self, prefix: str, **bounds: Any) -> Iterator[ObjectInfo]:
        with self.lock:
            self.listings += 1
        for obj in self.inner.iter_objects(prefix, **bounds):
            with self.lock:
                broken = self.listed == self.list_after
                self.listed += 1
            if broken:
                raise StoreError(f"{self.description}: connection reset while listing")
            yield obj

    def delete_many(self, keys: Iterable[str]) -> list[DeleteFailure]:
        keys = list(keys)
        refused = [k for k in keys if self.refuse and self.refuse in k]
        failures = self.inner.delete_many([k for k in keys if k not in refused])
        return failures + [DeleteFailure(k, "AccessDenied: object is locked") for k in refused]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def flaky(**kwargs: Any) -> Callable[[Any], Store]:
    def opener(run: Any) -> Store:
        inner = open_store(run.storage, bucket=run.bucket, location=run.location)
        return FlakyStore(inner, **kwargs)  # type: ignore[return-value]

    return opener


def test_listing_that_breaks_midway_deletes_nothing(lab: Lab) -> None:
    insert_recs(lab, range(6))
    orphans = orphan(lab, [0, 1, 2, 3])
    config = load_config(lab.config(Path(lab.stage.parent, "c.toml")))
    opener = flaky(list_after=5)

    [report] = clean(config, CleanOptions(min_age=0, progress=False), open_run=opener)

    assert report.status == "failed" and "connection reset" in report.errors[0]
    assert report.deleted == 0
    assert set(orphans) <= lab.objects()


def test_per_key_delete_failures_are_reported(lab: Lab) -> None:
    insert_recs(lab, range(4))
    orphans = orphan(lab, [0, 1])
    locked = next(k for k in orphans if k.endswith(".note0.txt"))
    config = load_config(lab.config(Path(lab.stage.parent, "c.toml")))
    opener = flaky(refuse=".note0.txt")

    [report] = clean(config, CleanOptions(min_age=0, progress=False), open_run=opener)

    assert report.status == "failed"
    assert report.errors == (f"cannot delete {locked}: AccessDenied: object is locked",)
    assert report.deleted == 3 and report.delete_failed == 1
    assert lab.objects() & set(orphans) == {locked}


def test_database_failure_during_the_scan_deletes_nothing(lab: Lab, source_db: Any) -> None:
    insert_recs(lab, range(4))
    orphans = orphan(lab, [0, 1])
    config = load_config(lab.config(Path(lab.stage.parent, "c.toml")))
    known = {row[0] for row in source_db.query("SELECT id FROM information_schema.processlist")}

    def hook(event: str, run: Any) -> None:
        if event == "start":  # the cleaner's connection dies after the preflight
            for (pid,) in source_db.query("SELECT id FROM information_schema.processlist"):
                if pid not in known:
                    source_db.execute(f"KILL {int(pid)}")

    [report] = clean(config, CleanOptions(min_age=0, progress=False), hook=hook)

    assert report.status == "failed" and report.deleted == 0
    assert report.errors and "lab" in report.errors[0]
    assert set(orphans) <= lab.objects()


def test_missing_table_fails_that_run_and_never_creates_it(lab: Lab, tmp_path: Path) -> None:
    insert_recs(lab, range(2))
    orphans = orphan(lab, [0])
    flags = age_flags(lab, all_keys(lab))
    runs = [lab.run_toml(store="nosuch"), lab.run_toml()]  # a missing schema: exit 2, tests/dj2

    status, reports = cli(lab.config(tmp_path / "c.toml", runs), *flags)

    assert status == 1
    assert [r["status"] for r in reports] == ["failed", "ok"]
    assert "~external_nosuch" in reports[0]["errors"][0]
    assert reports[1]["deleted"] == 2 and not set(orphans) & lab.objects()
    db = connect(lab.server)
    try:
        assert not db.table_exists(lab.schema, "~external_nosuch")
    finally:
        db.close()


def test_config_error_in_a_later_run_deletes_nothing(lab: Lab, tmp_path: Path) -> None:
    insert_recs(lab, range(3))
    orphans = orphan(lab, [0])
    flags = age_flags(lab, all_keys(lab))
    cases = {
        "cleaning_runs[1].database_server": [lab.run_toml(), lab.run_toml(database_server="nope")],
        "cleaning_runs[1].subfolding": [lab.run_toml(), lab.run_toml(subfolding="2,2")],
        "cleaning_runs[1]": [
            lab.run_toml(),
            lab.run_toml(
                storage_server="file.disk", bucket=None, location=str(tmp_path / "absent")
            ),
        ],
    }
    extra = "[storage_servers.file.disk]\n" if lab.backend == "s3" else ""
    for needle, runs in cases.items():
        config = lab.config(tmp_path / "c.toml", runs, extra=extra)
        report = tmp_path / "never.json"
        status, reports = cli(config, *flags, report=report)
        assert status == 2, needle
        assert not report.exists()
        assert set(orphans) <= lab.objects(), needle


def test_unreachable_servers_are_configuration_errors(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    insert_recs(lab, range(2))
    orphans = orphan(lab, [0])
    flags = age_flags(lab, all_keys(lab))
    config = lab.config(tmp_path / "c.toml")
    text = config.read_text()
    bad_password = text.replace(f'password = "{lab.server.password}"', 'password = "wrong-pw"')
    config.write_text(bad_password)
    assert cli(config, *flags)[0] == 2
    assert "database_servers.lab" in capsys.readouterr().err
    if lab.backend == "s3":
        config.write_text(text.replace(f'bucket = "{lab.bucket}"', 'bucket = "no-such-bucket"'))
        assert cli(config, *flags)[0] == 2
        assert "no-such-bucket" in capsys.readouterr().err
    assert set(orphans) <= lab.objects()


def test_stopped_endpoint_fails_its_run_and_the_next_run_goes_ahead(
    source_server: DatabaseServer,
    schema_factory: Callable[..., str],
    dj_stores: dict[str, Any],
    tmp_path: Path,
) -> None:
    with MotoS3("cleaner-outage") as endpoint:
        endpoint.make_bucket("outage")
        s3_lab = make_lab(
            "s3",
            source_server,
            schema_factory(),
            tmp_path / "s3",
            dj_stores,
            endpoint.server,
            "outage",
        )
        insert_recs(s3_lab, range(2))
        orphan(s3_lab, [0])
        file_lab = make_lab("file", source_server, schema_factory(), tmp_path / "f", dj_stores)
        insert_recs(file_lab, range(2))
        file_orphans = orphan(file_lab, [0])
        runs = [s3_lab.run_toml(), file_lab.run_toml()]
        config = load_config(s3_lab.config(tmp_path / "c.toml", runs, extra=file_lab.storage_toml))

        def hook(event: str, run: Any) -> None:
            if event == "start" and run.index == 0:
                endpoint.stop()

        reports = clean(config, CleanOptions(min_age=0, progress=False), hook=hook)

    assert [r.status for r in reports] == ["failed", "ok"]
    assert "cannot list" in reports[0].errors[0] or "list" in reports[0].errors[0]
    assert reports[0].deleted == 0
    assert reports[1].deleted == 2 and not set(file_orphans) & file_lab.objects()


def test_credentials_never_appear_in_output_logs_or_report(
    lab: Lab, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "pw-" + secrets.token_hex(8)
    user = "cleaner_" + secrets.token_hex(3)
    db = connect(lab.server)
    db.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
    db.execute(f"GRANT ALL PRIVILEGES ON *.* TO {quote(user)}@'%'")
    db.close()
    insert_recs(lab, range(3))
    orphan(lab, [0])
    flags = age_flags(lab, all_keys(lab))
    monkeypatch.setenv("CLEANER_TEST_PASSWORD", password)
    config = lab.config(tmp_path / "c.toml", [lab.run_toml(), lab.run_toml(store="nosuch")])
    text = config.read_text().replace(f'user = "{lab.server.user}"', f'user = "{user}"')
    text = text.replace(
        f'password = "{lab.server.password}"', 'password = "${CLEANER_TEST_PASSWORD}"'
    )
    config.write_text(text)
    log_file = tmp_path / "clean.log"

    status, reports = cli(config, *flags, "--log-level", "debug", "--log-file", str(log_file))
    out, err = capfd.readouterr()

    assert status == 1 and reports[0]["deleted"] == 2
    secrets_used = {password}
    if lab.backend == "s3":
        secrets_used.add(MotoS3.SECRET_KEY)
    for text_seen in (
        out,
        err,
        log_file.read_text(),
        json.dumps(reports),
        repr(load_config(config)),
    ):
        for secret in secrets_used:
            assert secret not in text_seen
    assert "batch 1: deleted 2 objects" in log_file.read_text()
    db = connect(lab.server)
    db.execute(f"DROP USER {quote(user)}@'%'")
    db.close()


def test_log_level_applies_without_a_log_file(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    insert_recs(lab, range(2))
    orphan(lab, [0])
    flags = age_flags(lab, all_keys(lab))
    status, _ = cli(lab.config(tmp_path / "c.toml"), *flags, "--log-level", "INFO")
    captured = capsys.readouterr()
    assert status == 0
    assert "batch 1: deleted 2 objects" in captured.err
    assert f"server lab, schema {lab.schema}, store {STORE}" in captured.out
    assert "deleted 2" in captured.out


def test_nothing_to_delete_is_success(lab: Lab, tmp_path: Path) -> None:
    insert_recs(lab, range(2))
    status, [report] = cli(lab.config(tmp_path / "c.toml"), "--min-age", "0")
    assert status == 0 and report["deleted"] == report["orphaned"] == 0
    assert report["referenced"] == 4


def test_installed_console_script(lab: Lab, tmp_path: Path) -> None:
    insert_recs(lab, range(3))
    orphans = orphan(lab, [1])
    flags = age_flags(lab, all_keys(lab))
    config = lab.config(tmp_path / "datajoint-cleaner.toml")
    script = Path(sys.executable).parent / "dj-cleaner"

    dry = subprocess.run(
        [str(script), *flags, "--dry-run"], cwd=tmp_path, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    assert "would delete 2" in dry.stdout and set(orphans) <= lab.objects()

    done = subprocess.run(
        [str(script), "--config-file", str(config), *flags], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "deleted 2" in done.stdout and not set(orphans) & lab.objects()
    assert "Traceback" not in done.stderr
