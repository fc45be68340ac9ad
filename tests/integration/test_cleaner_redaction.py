"""Redaction never alters data: names print exactly, and only echoed secrets are masked.

A secret is masked only where library text carries it (issue 8): the report's
fields and the summary's names are never rewritten, even when a name contains
the characters of a short password.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from djbridge.config import DatabaseServer, StorageServer
from djbridge.mysql import Database, connect, quote
from tests.integration.test_cleaner_rules import (
    STORE,
    Lab,
    age_flags,
    all_keys,
    cli,
    insert_recs,
    make_lab,
    orphan,
)


@pytest.fixture(autouse=True)
def _filepath_support(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DJ_SUPPORT_FILEPATH_MANAGEMENT", "TRUE")


@pytest.fixture
def account(source_server: DatabaseServer) -> Iterator[Callable[[str], DatabaseServer]]:
    """Return ``make(password)``: a fresh account with that password, dropped afterwards."""
    made: list[str] = []

    def make(password: str) -> DatabaseServer:
        user = "redact_" + secrets.token_hex(3)
        db = connect(source_server)
        try:
            db.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
            db.execute(f"GRANT ALL PRIVILEGES ON *.* TO {quote(user)}@'%'")
        finally:
            db.close()
        made.append(user)
        return DatabaseServer("lab", source_server.host, user, password, source_server.port, False)

    yield make
    db = connect(source_server)
    try:
        for user in made:
            db.execute(f"DROP USER {quote(user)}@'%'")
    finally:
        db.close()


@pytest.fixture(params=["file", "s3"])
def djx_lab(
    request: pytest.FixtureRequest,
    account: Callable[[str], DatabaseServer],
    schema_factory: Callable[..., str],
    bucket_factory: Callable[[StorageServer], str],
    dj_stores: dict[str, Any],
    tmp_path: Path,
) -> Lab:
    """A lab whose schema is named ``lab_djx...`` and whose database password is ``dj``."""
    server = account("dj")
    schema = schema_factory(prefix="lab_djx")
    if request.param == "file":
        return make_lab("file", server, schema, tmp_path, dj_stores)
    s3: StorageServer = request.getfixturevalue("s3_a")
    return make_lab("s3", server, schema, tmp_path, dj_stores, s3, bucket_factory(s3))


def test_a_short_password_never_garbles_names(
    djx_lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = djx_lab
    insert_recs(lab, range(3))
    orphans = orphan(lab, [0])
    flags = age_flags(lab, all_keys(lab))

    status, [report] = cli(lab.config(tmp_path / "c.toml"), *flags)
    out = capsys.readouterr().out

    assert status == 0
    assert not set(orphans) & all_keys(lab)
    assert report["schema"] == lab.schema and "dj" in lab.schema
    assert report["database_server"] == "lab" and report["store"] == STORE
    assert report["storage_server"] == lab.storage_ref
    assert (report["bucket"], report["location"]) == (lab.bucket, lab.location)
    assert report["deleted"] == 2 and report["referenced"] == 4
    assert f"schema {lab.schema}, store {STORE}" in out
    assert "***" not in out


class EchoingS3(BaseHTTPRequestHandler):
    """An S3 endpoint that refuses every request and echoes a secret in its error."""

    echoed = ""

    def _refuse(self) -> None:
        body = (
            "<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
            f"<Message>bad signature for secret '{self.echoed}'</Message>"
            "<Resource>/</Resource><RequestId>1</RequestId></Error>"
        ).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _refuse

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        """Stay quiet."""


def test_a_secret_that_a_failing_server_echoes_is_masked(
    account: Callable[[str], DatabaseServer],
    schema_factory: Callable[..., str],
    source_db: Database,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    schema = schema_factory(prefix="lab_x")  # it exists: the run gets as far as the store
    source_db.execute(f"CREATE DATABASE {quote(schema)}")
    password = secrets.token_urlsafe(24)
    secret_key = secrets.token_urlsafe(24)
    server = account(password)
    handler = type("Echo", (EchoingS3,), {"echoed": secret_key})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    config = tmp_path / "c.toml"
    config.write_text(
        f'[database_servers.lab]\nhost = "{server.host}:{server.port}"\n'
        f'user = "{server.user}"\npassword = "{password}"\nuse_tls = false\n\n'
        f'[storage_servers.minio.lab]\nendpoint = "127.0.0.1:{httpd.server_port}"\n'
        f'access_key = "lab-access"\nsecret_key = "{secret_key}"\nsecure = false\n\n'
        '[[cleaning_runs]]\ndatabase_server = "lab"\n'
        f'schema = "{schema}"\nstore = "raw"\n'
        'storage_server = "minio.lab"\nbucket = "lab-bucket"\nlocation = "loc"\n'
    )
    log_file = tmp_path / "clean.log"
    try:
        status, _ = cli(config, "--log-level", "debug", "--log-file", str(log_file))
    finally:
        httpd.shutdown()
        httpd.server_close()
    out, err = capfd.readouterr()

    assert status == 2
    assert "bad signature for secret '***'" in err  # the echo arrived, masked
    for text in (out, err, log_file.read_text()):
        assert password not in text
        assert secret_key not in text
