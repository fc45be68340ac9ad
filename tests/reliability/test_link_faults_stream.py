"""SIGKILL a pull in the middle of a streamed object copy; one resume must converge.

The link copies every object through :func:`djbridge.stores.stream_copy`, a chunk
at a time: a file store writes a temporary file beside the final name and renames
it, an S3 store sends one PUT or, above ``DJB_S3_PART_SIZE``, a multipart upload.
Here the source pipeline of ``test_link_faults_kill`` gets two more recordings with
12 MiB attachments, and the children run with ``DJB_S3_PART_SIZE=5242880`` (S3's
minimum), so such an object streams as three chunks into a file store and as
three parts (5 + 5 + 2 MiB) into S3. The driver's stream events
(``tests/reliability/driver.py``) kill the child:

* ``chunk`` 1 on a file store: the first 4 MiB chunk is in the temporary file;
* ``chunk_last`` on a file store: the whole object is in the temporary file, not
  yet renamed;
* ``chunk`` 1 and 2 on S3: one and two parts of a multipart upload are uploaded,
  the upload is not completed.

Right after the kill, before any resume, the store must show no partial object:
every object at a live (managed) key has its full size, every committed
``~external`` row's object is present, and the partial data the kill left is
where it belongs (a temporary file in the store's ``.djbridge-staging/``, or an
unfinished S3 multipart upload, which is what proves the kill really landed
mid-stream). Then
one resume and :func:`~tests.reliability.faults.verify_all`.

The partial data is never at an object's key or inside an object's folder. A file
store's next writing process removes a dead writer's temporary file (see
``tests/contract/test_file_staging.py``); an unfinished S3 upload is left to the
bucket's lifecycle rules. Neither is a live object.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from djbridge.stores.file import STAGING
from tests.integration.linkworld import World, build_pipeline
from tests.reliability.faults import (
    Lane,
    Zygote,
    assert_tracked_objects_present,
    new_lane,
    object_key,
    query,
    verify_all,
)

MIB = 1 << 20
BIG = 12 * MIB
PART = 5 * MIB
KILLS = {
    "file": [("chunk", 1), ("chunk_last", 1)],
    "s3": [("chunk", 1), ("chunk", 2)],
}


@pytest.fixture(scope="module")
def stream_zygote() -> Iterator[Zygote]:
    """A driver whose children upload to S3 in parts of 5 MiB."""
    driver = Zygote(env={"DJB_S3_PART_SIZE": str(PART)})
    yield driver
    driver.close()


def big_pipeline(world: World) -> Any:
    """The fault tests' pipeline plus two recordings with 12 MiB attachments."""
    pipeline = build_pipeline(world, n=4)
    recording = pipeline["Recording"]
    rng = np.random.default_rng(23)
    for rec in (4, 5):
        path = world.tmp / f"big-{rec}.bin"
        path.write_bytes(rng.bytes(BIG + rec))
        recording.insert1(dict(subject_id=rec % 3, rec_id=rec, trace=rng.normal(size=(4, 4)),
                               notes=str(path), label=f"big-{rec}"))  # fmt: skip
        recording.Channel.insert1(
            dict(subject_id=rec % 3, rec_id=rec, channel=0, gain=1.0, wave=rng.normal(size=8))
        )
    return recording


def source_sizes(world: World) -> dict[str, int]:
    """The size of every object the link may write, by its key in the destination store."""
    rows = query(world, "source", "SELECT hash, size, attachment_name FROM "
                 f"`{world.src_schema}`.`~external_src`")  # fmt: skip
    return {object_key(world.local_schema, bytes(h), a): int(s) for h, s, a in rows}


def partial_uploads(world: World) -> list[str]:
    """Keys of the S3 multipart uploads started and not completed in the destination bucket."""
    spec = world.stores["dst"]
    client = boto3.client(
        "s3", endpoint_url=f"http://{spec['endpoint']}", aws_access_key_id=spec["access_key"],
        aws_secret_access_key=spec["secret_key"], region_name="us-east-1",
    )  # fmt: skip
    prefix = f"{spec['location']}/{world.local_schema}/"
    listing = client.list_multipart_uploads(Bucket=spec["bucket"], Prefix=prefix)
    return [u["Key"][len(spec["location"]) + 1 :] for u in listing.get("Uploads", [])]


def assert_nothing_partial_is_live(world: World, label: str) -> None:
    """After the kill: no live key holds a partial object; the partial data is set aside."""
    sizes = source_sizes(world)
    present = world.objects("dst", f"{world.local_schema}/")
    wrong = {k: (n, sizes[k]) for k, n in present.items() if k in sizes and n != sizes[k]}
    assert not wrong, f"partial objects at live keys (bytes, expected): {wrong}"
    assert_tracked_objects_present(world)
    big_keys = {k for k, n in sizes.items() if n > BIG // 2}
    if world.stores["dst"]["protocol"] == "file":
        assert set(present) <= set(sizes), "an object outside the managed keys"
        staging = Path(world.stores["dst"]["location"], STAGING)
        temps = {p.name: p.stat().st_size for p in staging.iterdir()}
        assert all(name.startswith("djbridge-") and name.endswith(".part") for name in temps)
        # The kill left a temporary file with the chunks written so far: the first 4 MiB,
        # or every full chunk (a short tail may still sit in the writer's buffer).
        want = {"chunk": lambda n: n == 4 * MIB, "chunk_last": lambda n: n >= BIG}[label]
        assert any(want(n) for n in temps.values()), (label, temps)
    else:
        assert set(present) <= set(sizes), "an object outside the managed keys"
        uploads = partial_uploads(world)
        assert uploads and set(uploads) <= big_keys, f"no unfinished multipart upload: {uploads}"


def run_ok(zygote: Zygote, lane: Lane) -> None:
    case = lane.case("pull")
    [code] = zygote.run([case])
    assert code == 0, Lane.report(case).get("trace", Lane.report(case))


@pytest.mark.slow
@pytest.mark.parametrize("world", ["file", "s3"], indirect=True)
def test_sigkill_inside_a_streamed_copy_leaves_no_partial_object_then_resume_converges(
    stream_zygote: Zygote, world: World, schema_factory: Any, tmp_path: Path
) -> None:
    source = big_pipeline(world)
    kind = world.stores["dst"]["protocol"]
    for label, nth in KILLS[kind]:
        lane = new_lane(world, schema_factory, f"{label}{nth}", batch_size=3)
        case = lane.case("pull", kill={"label": label, "nth": nth}, stream_events=True)
        [code] = stream_zygote.run([case])
        report = Lane.report(case)
        assert code == -9, report
        assert report["note"]["label"] == label
        assert_nothing_partial_is_live(lane.world, label)
        run_ok(stream_zygote, lane)
        verify_all(lane.world, "pull", source, tmp_path)
        if kind == "file":  # the resume's first write removed the killed writer's file
            staging = Path(lane.world.stores["dst"]["location"], STAGING)
            assert not list(staging.iterdir()), list(staging.iterdir())
