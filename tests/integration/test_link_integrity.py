"""A copy whose bytes differ from DataJoint's record fails its batch before any row commits.

The checksum (MD5, with the attachment-name rule) is computed while the bytes
stream; a mismatch vetoes the write, so the destination holds no object at that
key, the batch's rows are not committed, and the other batches still arrive.
"""

from __future__ import annotations

import pytest

from djbridge.errors import LinkError
from djbridge.layout import object_key
from djbridge.mysql import quote
from tests.integration.linkworld import World, build_pipeline, make_link


def test_a_corrupted_source_object_fails_only_its_batch(world: World) -> None:
    build_pipeline(world, n=4)
    (hash_, name), *_ = world.query(
        "source",
        f"SELECT e.hash, e.attachment_name FROM {quote(world.src_schema, 'recording')} r "
        f"JOIN {quote(world.src_schema, '~external_src')} e ON e.hash = r.notes "
        "WHERE r.rec_id = 0",
    )
    key = object_key(world.src_schema, hash_, name)
    store = world.store("src")
    good = store.get(key)
    store.put(key, bytes(b ^ 0xFF for b in good))  # same size, other bytes
    Recording = make_link(world, batch_size=1)

    with pytest.raises(LinkError, match="checksum does not match"):
        Recording().source.pull()

    assert sorted(Recording().fetch("rec_id")) == [1, 2, 3]
    assert world.objects("dst", object_key(world.local_schema, hash_, name)) == {}
    tracked = world.query(
        "local",
        f"SELECT COUNT(*) FROM {quote(world.local_schema, '~external_dst')} WHERE hash=%s",
        (hash_,),
    )
    assert tracked == [(0,)]
    store.put(key, good)  # repaired at the source: the next pull finishes the row
    Recording().source.pull()
    assert sorted(Recording().fetch("rec_id")) == [0, 1, 2, 3]
