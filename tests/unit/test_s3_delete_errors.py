"""S3 ``DeleteObjects`` per-key errors are returned, never dropped (fake client)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from minio.deleteobjects import DeleteError, DeleteObject

from djbridge.config import StorageServer
from djbridge.stores import DeleteFailure
from djbridge.stores.s3 import S3Store


class FakeClient:
    """Answers DeleteObjects with an AccessDenied for every key containing 'locked'."""

    def __init__(self) -> None:
        self.requested: list[str] = []

    def remove_objects(self, bucket: str, objects: Iterable[DeleteObject]) -> Iterator[Any]:
        for obj in objects:
            name = obj.name
            self.requested.append(name)
            if "locked" in name:
                yield DeleteError("AccessDenied", "object is locked", name, None)


def test_per_key_errors_come_back_with_the_callers_keys() -> None:
    client = FakeClient()
    store = S3Store(client, "bkt", "/dj/loc/", StorageServer("s", "s3", endpoint="e"))  # type: ignore[arg-type]
    failures = store.delete_many(["exp/a", "exp/locked-1", "exp/b", "exp/locked-2"])
    assert client.requested == [
        "dj/loc/exp/a",
        "dj/loc/exp/locked-1",
        "dj/loc/exp/b",
        "dj/loc/exp/locked-2",
    ]
    assert failures == [
        DeleteFailure("exp/locked-1", "AccessDenied: object is locked"),
        DeleteFailure("exp/locked-2", "AccessDenied: object is locked"),
    ]
