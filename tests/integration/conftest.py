"""The cleaner's lab fixture, shared by the cleaner's integration modules.

``test_cleaner_rules`` keeps its own fixture of the same name; the modules added
since (``--jobs``, quarantine) take this one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_cleaner_rules import Lab, build_lab


@pytest.fixture(params=["file", "s3"])
def lab(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    """A schema with a DataJoint pipeline, once with a file store and once with S3."""
    monkeypatch.setenv("DJ_SUPPORT_FILEPATH_MANAGEMENT", "TRUE")
    return build_lab(request, tmp_path)
