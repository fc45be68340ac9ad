"""Only names with DataJoint's exact managed shape can ever be deletion candidates."""

from __future__ import annotations

import pytest

from djbridge.cleaner import managed_hash

H = "18285198e5f67356fd7ad37635720e23"


@pytest.mark.parametrize(
    ("name", "folds"),
    [
        (f"18/28/{H}", (2, 2)),  # blob
        (f"18/28/{H}.f2.bin", (2, 2)),  # attachment
        (f"18/28/{H}.notes", (2, 2)),
        (f"182/{H}", (3,)),
        (f"1/8/2/{H}", (1, 1, 1)),
        (H, ()),  # subfolding [] puts objects straight into the schema folder
    ],
)
def test_managed_names(name: str, folds: tuple[int, ...]) -> None:
    assert managed_hash(name, folds) == H


@pytest.mark.parametrize(
    ("name", "folds"),
    [
        (f"18/28/{H}.saving", (2, 2)),  # a blob being written (safe_write)
        (f"18/28/{H}.f2.bin.copying", (2, 2)),  # an attachment being copied (safe_copy)
        (f"18/28/{H}.copying", (2, 2)),
        (f"18/28/{H}.", (2, 2)),
        (f"18/28/{H}.a\nb", (2, 2)),
        (f"18/29/{H}", (2, 2)),  # folds must equal the hash's prefixes
        (f"00/00/{H}", (2, 2)),
        (f"18/28/{H.upper()}", (2, 2)),
        (f"18/28/{H[:-1]}", (2, 2)),
        (f"18/28/{H}0", (2, 2)),
        (f"18/{H}", (2, 2)),  # a fold missing
        (f"18/28/{H}", (3,)),  # other subfolding
        (f"18/28/{H}", ()),
        (f"18/28/{H}/x", (2, 2)),
        ("readme.txt", (2, 2)),
        ("x" * 43, (2, 2)),  # a 0.11 legacy name
        (f"raw/session1/{H}", (2, 2)),
    ],
)
def test_foreign_names(name: str, folds: tuple[int, ...]) -> None:
    assert managed_hash(name, folds) is None
