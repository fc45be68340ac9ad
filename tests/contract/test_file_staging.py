"""A file store's writes are staged outside every object, and a killed writer's leftovers go.

A DataJoint 2.x ``<object@>`` folder is read by listing it: a temporary file left
inside it by a killed copy would show up as one of the object's files. So a
``FileStore`` writes into ``<root>/.djbridge-staging/`` and renames into place.
These tests kill a real writer process in the middle of an object, then look at
the directory the way a user would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from djbridge.stores.file import STAGING, FileStore

# A writer that streams two chunks into a folder object's file and SIGKILLs itself
# after the first one has reached the temporary file.
WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from djbridge.stores.file import FileStore

    class Reader:
        def __init__(self):
            self.calls = 0
        def read(self, size=-1):
            self.calls += 1
            if self.calls == 1:
                return b"x" * 1000
            os.kill(os.getpid(), signal.SIGKILL)

    FileStore(sys.argv[1]).put_stream("lab/rec/obj_TOKEN/sub/two.bin", Reader())
    """
)


def kill_a_writer(root: Path) -> None:
    run = subprocess.run([sys.executable, "-c", WRITER, str(root)], capture_output=True)
    assert run.returncode == -9, run.stderr.decode()


def test_a_killed_write_leaves_nothing_inside_the_object_folder(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = FileStore(root)
    store.put("lab/rec/obj_TOKEN/one.txt", b"one")
    kill_a_writer(root)

    folder = root / "lab/rec/obj_TOKEN"
    found = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert found == ["one.txt"]
    assert {o.key for o in store.iter_objects("")} == {"lab/rec/obj_TOKEN/one.txt"}
    leftovers = [p.name for p in (root / STAGING).iterdir()]
    assert len(leftovers) == 1 and leftovers[0].endswith(".part"), leftovers

    # The next process to write removes the dead writer's file, and writes.
    FileStore(root).put("lab/rec/obj_TOKEN/sub/two.bin", b"two")
    assert not list((root / STAGING).iterdir())
    assert store.get("lab/rec/obj_TOKEN/sub/two.bin") == b"two"


def test_the_sweep_keeps_live_writers_and_other_hosts_files(tmp_path: Path) -> None:
    root = tmp_path / "store"
    staging = root / STAGING
    staging.mkdir(parents=True)
    host = socket.gethostname()
    live = staging / f"djbridge-{os.getppid()}-1-0@{host}.part"
    elsewhere = staging / f"djbridge-999999999-1-0@another-{host}.part"
    foreign = staging / "notes.txt"
    for path in (live, elsewhere, foreign):
        path.write_bytes(b"partial")

    FileStore(root).put("lab/a", b"a")
    assert sorted(p.name for p in staging.iterdir()) == sorted(
        p.name for p in (live, elsewhere, foreign)
    )


def test_a_folder_on_another_filesystem_gets_its_temporary_file_beside_the_target(
    tmp_path: Path,
) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test's temporary folder")
    elsewhere = shm / f"djbridge-test-{os.getpid()}"
    elsewhere.mkdir()
    try:
        root = tmp_path / "store"
        root.mkdir()
        (root / "mounted").symlink_to(elsewhere)
        store = FileStore(root)
        store.put("mounted/lab/x", b"payload")
        store.put("local/y", b"other")
        assert (elsewhere / "lab/x").read_bytes() == b"payload"
        assert store.get("local/y") == b"other"
        assert [p.name for p in (elsewhere / "lab").iterdir()] == ["x"]
    finally:
        subprocess.run(["rm", "-rf", str(elsewhere)], check=True)


def test_an_object_gets_the_mode_a_new_file_gets(tmp_path: Path) -> None:
    umask = os.umask(0o027)
    try:
        FileStore(tmp_path).put("lab/a", b"a")
    finally:
        os.umask(umask)
    assert (tmp_path / "lab/a").stat().st_mode & 0o777 == 0o640


def test_without_a_staging_directory_writes_go_beside_their_targets(tmp_path: Path) -> None:
    (tmp_path / STAGING).write_bytes(b"a file where the directory would be")
    store = FileStore(tmp_path)
    store.put("lab/a", b"payload")
    assert store.get("lab/a") == b"payload"
    assert [p.name for p in (tmp_path / "lab").iterdir()] == ["a"]
