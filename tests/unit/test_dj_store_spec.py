"""A ``dj.config["stores"]`` entry with a key missing is named in a ConfigError."""

from __future__ import annotations

import pytest

from djbridge.errors import ConfigError
from djbridge.stores import store_from_dj_spec

S3 = {"protocol": "s3", "endpoint": "127.0.0.1:9000", "bucket": "lab-data", "location": "loc",
      "access_key": "ak", "secret_key": "sk"}  # fmt: skip


@pytest.mark.parametrize("key", ["location", "bucket", "endpoint", "secret_key"])
def test_s3_spec_without_a_key(key: str) -> None:
    spec = {k: v for k, v in S3.items() if k != key}
    with pytest.raises(ConfigError, match=rf"\['raw'\]: missing key '{key}'"):
        store_from_dj_spec("raw", spec)


def test_file_spec_without_location() -> None:
    with pytest.raises(ConfigError, match=r"\['notes'\]: missing key 'location'"):
        store_from_dj_spec("notes", {"protocol": "file"})


def test_complete_spec_opens() -> None:
    store = store_from_dj_spec("raw", S3)
    assert store.description == "s3://127.0.0.1:9000/lab-data/loc"
