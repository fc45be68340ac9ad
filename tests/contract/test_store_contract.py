"""One contract, every backend: the same tests run against the file and the S3 store."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from djbridge.config import StorageServer
from djbridge.errors import ConfigError, ObjectNotFound, StoreError
from djbridge.stores import Store, open_store
from djbridge.stores.file import FileStore

BACKENDS = ["file", "s3"]


@pytest.fixture(params=BACKENDS)
def store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    bucket_factory: Callable[[StorageServer], str],
) -> Store:
    if request.param == "file":
        (tmp_path / "root").mkdir()
        return open_store(StorageServer("files", "file"), location=str(tmp_path / "root"))
    server: StorageServer = request.getfixturevalue("s3_a")
    return open_store(server, bucket=bucket_factory(server), location="/dj/store/")


def keys(store: Store, prefix: str) -> set[str]:
    return {o.key for o in store.iter_objects(prefix)}


def test_put_get_stat_round_trip(store: Store) -> None:
    payload = bytes(range(256)) * 40
    before = time.time() - 5
    store.put("exp/ab/cd/abcd", payload)
    assert store.get("exp/ab/cd/abcd") == payload
    info = store.stat("exp/ab/cd/abcd")
    assert info.key == "exp/ab/cd/abcd"
    assert info.size == len(payload)
    assert before <= info.mtime <= time.time() + 5


def test_put_replaces(store: Store) -> None:
    store.put("k/one", b"first")
    store.put("k/one", b"second!")
    assert store.get("k/one") == b"second!"
    assert store.stat("k/one").size == 7


def test_listing_is_by_prefix_with_sizes(store: Store) -> None:
    store.put("exp/aa/bb/x1", b"1")
    store.put("exp/aa/cc/x2", b"22")
    store.put("exp2/aa/bb/x3", b"333")
    store.put("other", b"4444")
    listed = {o.key: o.size for o in store.iter_objects("exp/")}
    assert listed == {"exp/aa/bb/x1": 1, "exp/aa/cc/x2": 2}
    assert keys(store, "exp") == {"exp/aa/bb/x1", "exp/aa/cc/x2", "exp2/aa/bb/x3"}
    assert keys(store, "") == {"exp/aa/bb/x1", "exp/aa/cc/x2", "exp2/aa/bb/x3", "other"}
    assert keys(store, "nothing/") == set()


MANAGED_LIKE = [
    "lab/0f/3c/0f3c" + "1" * 28,
    "lab/0f/3c/0f3c" + "1" * 28 + ".notes.txt",
    "lab/10/00/1000" + "2" * 28,
    "lab/7f/ff/7fff" + "3" * 28,
    "lab/80/00/8000" + "4" * 28,
    "lab/docs/readme.md",
    "lab/ff/ff/ffff" + "5" * 28,
    "lab.x",
]


def test_listing_comes_in_key_order_for_datajoint_names(store: Store) -> None:
    for key in reversed(MANAGED_LIKE):
        store.put(key, b"x")
    listed = [o.key for o in store.iter_objects("lab/") if o.key.count("/") == 3]
    assert listed == sorted(listed) and len(listed) == 6


@pytest.mark.parametrize(
    ("start_after", "end_at"),
    [(None, "lab/10"), ("lab/10", "lab/80"), ("lab/80", None), ("lab/0f", "lab/7f/ff/~")],
)
def test_bounds_select_exactly_the_keys_between(
    store: Store, start_after: str | None, end_at: str | None
) -> None:
    for key in MANAGED_LIKE:
        store.put(key, b"x")
    listed = {o.key for o in store.iter_objects("lab/", start_after=start_after, end_at=end_at)}
    expected = {
        k
        for k in MANAGED_LIKE
        if k.startswith("lab/")
        and (start_after is None or k > start_after)
        and (end_at is None or k <= end_at)
    }
    assert listed == expected


def test_move_many_moves_and_never_replaces(store: Store) -> None:
    store.put("lab/a", b"alpha")
    store.put("lab/b", b"beta")
    store.put("q/1/lab/b", b"already there")

    failures = store.move_many(
        [("lab/a", "q/1/lab/a"), ("lab/b", "q/1/lab/b"), ("lab/none", "q/1/lab/none")]
    )

    assert sorted(f.key for f in failures) == ["lab/b", "lab/none"]
    assert store.get("q/1/lab/a") == b"alpha"
    assert store.get("q/1/lab/b") == b"already there"
    assert store.get("lab/b") == b"beta"
    assert keys(store, "lab/") == {"lab/b"}


def test_missing_object_raises_not_found(store: Store) -> None:
    with pytest.raises(ObjectNotFound):
        store.get("no/such/key")
    with pytest.raises(ObjectNotFound):
        store.stat("no/such/key")


def test_delete_many_deletes_and_tolerates_absent_keys(store: Store) -> None:
    for i in range(5):
        store.put(f"d/{i}", b"x")
    failures = store.delete_many(["d/0", "d/1", "d/absent"])
    assert failures == []
    assert keys(store, "d/") == {"d/2", "d/3", "d/4"}


def test_delete_many_over_one_request_batch(store: Store) -> None:
    names = [f"many/{i:05d}" for i in range(1205)]
    for name in names:
        store.put(name, b"")
    assert store.delete_many(names[:1100]) == []
    assert keys(store, "many/") == set(names[1100:])


def test_copy_within_and_between_stores(store: Store, tmp_path: Path) -> None:
    store.put("src/obj", b"payload-123")
    assert store.copy(store, "src/obj", "dst/obj") == 11
    assert store.get("dst/obj") == b"payload-123"
    other = FileStore(tmp_path / "other")
    assert other.copy(store, "src/obj", "here/obj") == 11
    assert other.get("here/obj") == b"payload-123"
    other.put("back/obj", b"from-file")
    assert store.copy(other, "back/obj", "came/back") == 9
    assert store.get("came/back") == b"from-file"


def test_copy_of_missing_source_raises(store: Store) -> None:
    with pytest.raises(ObjectNotFound):
        store.copy(store, "not/there", "dst/x")
    assert keys(store, "dst/") == set()


def test_unreachable_store_raises_store_error(tmp_path: Path) -> None:
    dead = open_store(
        StorageServer("dead", "s3", endpoint="127.0.0.1:9", access_key="a", secret_key="b"),
        bucket="some-bucket",
    )
    with pytest.raises(StoreError, match="127.0.0.1:9"):
        list(dead.iter_objects(""))
    missing_dir = open_store(StorageServer("f", "file"), location=str(tmp_path / "absent"))
    with pytest.raises(StoreError, match="does not exist"):
        list(missing_dir.iter_objects(""))


def test_invalid_bucket_name_is_a_config_error() -> None:
    server = StorageServer("s", "s3", endpoint="127.0.0.1:9", access_key="a", secret_key="b")
    with pytest.raises(ConfigError, match="Bad;Name"):
        open_store(server, bucket="Bad;Name")


def test_file_store_refuses_keys_that_escape_the_root(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "root")
    for bad in ("../escape", "/abs/path", "a//b", "a/./b"):
        with pytest.raises(StoreError):
            store.put(bad, b"x")
    assert not (tmp_path / "escape").exists()


def test_s3_delete_in_missing_bucket_raises(s3_a: StorageServer) -> None:
    gone = open_store(s3_a, bucket="djbt-no-such-bucket-anywhere")
    with pytest.raises(StoreError, match="djbt-no-such-bucket-anywhere"):
        gone.delete_many(["x", "y"])
