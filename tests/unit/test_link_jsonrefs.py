"""The 2.x link's pure rules: how a JSON reference is rewritten, and how a definition reads.

* :meth:`JsonReferences.rewrite` moves a hash-addressed value to the destination's
  ``{hash_prefix}/{local schema}/[folds/]{hash}``, keeps its hash and expects the
  MD5 that hash spells; an ``<object@>`` keeps its key folders and file name under
  the destination's prefix and the local schema; a ``<filepath@>`` keeps its path;
  ``store`` always names the destination store;
* a path outside the source schema's area, or a store the link does not map, is an
  error naming it;
* a row whose reference was not part of the batch's copies is refused;
* :func:`clean_default` and :func:`native_to_core` turn what a 2.x heading shows on
  PostgreSQL back into what a definition declares.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from djbridge.errors import LinkError
from djbridge.link.declare2 import clean_default, native_to_core, reference_line
from djbridge.link.jsonrefs import Adapter, Dj2Store, JsonReferences, Pending, Sides, hash_digest
from djbridge.link.mirror import Column, SourceTable
from djbridge.sqldialect import MYSQL, POSTGRES, ForeignKey


class FakeStore:
    """Only what a rewrite looks at: where the store is."""

    def __init__(self, root: str) -> None:
        self.root_id = root
        self.description = root


def refs(dst_folds: tuple[int, ...] = (), schema_prefix: str = "_schema") -> JsonReferences:
    src = Dj2Store("raw", FakeStore("file:/src"))  # type: ignore[arg-type]
    dst = Dj2Store("raw_local", FakeStore("file:/dst"), "_h", schema_prefix,  # type: ignore[arg-type]
                   dst_folds)  # fmt: skip
    return JsonReferences("lab", "copy", {"raw": Sides(src, dst)}, {})


def b32(data: bytes) -> str:
    return base64.b32encode(hashlib.md5(data).digest()).decode().rstrip("=").lower()


def test_a_hashed_value_moves_to_the_local_schema_and_keeps_its_hash() -> None:
    digest = b32(b"payload")
    doc = {"hash": digest, "path": f"_hash/lab/{digest}", "size": 7, "store": "raw",
           "schema": "lab"}  # fmt: skip
    out, copy, folder = refs(dst_folds=(2, 2)).rewrite("blob", doc)
    assert out == {**doc, "path": f"_h/copy/{digest[:2]}/{digest[2:4]}/{digest}",
                   "store": "raw_local", "schema": "copy"}  # fmt: skip
    assert copy is not None and not folder
    assert (copy.src_key, copy.dst_key, copy.size) == (doc["path"], out["path"], 7)
    assert copy.md5 == hashlib.md5(b"payload").digest()
    assert doc["path"] == f"_hash/lab/{digest}", "the source document is not changed"


def test_hash_digest_reads_datajoints_base32() -> None:
    assert hash_digest(b32(b"x")) == hashlib.md5(b"x").digest()


def test_an_object_keeps_its_key_folders_and_name_under_the_local_schema() -> None:
    doc = {"path": "_schema/lab/rec/rec_id=1/o_ab12CD34.txt", "size": 5, "store": "raw",
           "is_dir": False, "ext": ".txt", "url": "file:///src/_schema/lab/..."}  # fmt: skip
    out, copy, folder = refs(schema_prefix="objs").rewrite("object", doc)
    assert out["path"] == "objs/copy/rec/rec_id=1/o_ab12CD34.txt"
    assert out["store"] == "raw_local" and "url" not in out
    assert copy is not None and copy.size == 5 and copy.md5 is None and not folder


def test_a_partitioned_object_keeps_its_partitions() -> None:
    doc = {"path": "_schema/subject=3/lab/rec/rec_id=1/o_x1y2z3w4", "size": 9, "store": "raw",
           "is_dir": True}  # fmt: skip
    out, copy, folder = refs().rewrite("object", doc)
    assert out["path"] == "_schema/subject=3/copy/rec/rec_id=1/o_x1y2z3w4"
    assert folder and copy is not None and copy.size is None, "a folder is checked by manifest"


def test_an_object_outside_the_source_schema_is_refused_with_its_path() -> None:
    doc = {"path": "elsewhere/o_1.bin", "size": 1, "store": "raw"}
    with pytest.raises(LinkError, match="elsewhere/o_1.bin"):
        refs().rewrite("object", doc)


def test_a_filepath_keeps_its_path_in_the_destination_store() -> None:
    doc = {"path": "raw/session1/a.dat", "size": 3, "store": "raw", "is_dir": False}
    out, copy, _ = refs().rewrite("filepath", doc)
    assert out == {**doc, "store": "raw_local"}
    assert copy is not None and copy.dst_key == "raw/session1/a.dat"


def test_a_store_the_link_does_not_map_is_named() -> None:
    with pytest.raises(LinkError, match="'other'"):
        refs().rewrite("blob", {"hash": "x", "path": "_hash/lab/x", "store": "other"})


class Linked:
    """What ``local_rows`` reads of a link: the two connections' dialects."""

    class Db:
        """A connection: only its dialect."""

        def __init__(self, dialect: Any) -> None:
            self.dialect = dialect

    def __init__(self) -> None:
        self.source_db = self.Db(MYSQL)
        self.local_db = self.Db(POSTGRES)


def test_a_row_whose_reference_was_not_copied_is_refused() -> None:
    table = SourceTable("lab", "rec", "", [Column("id", True), Column("b", False, "blob", "raw")])
    digest = b32(b"new")
    row = (1, f'{{"hash": "{digest}", "path": "_hash/lab/{digest}", "store": "raw"}}')
    with pytest.raises(LinkError, match="changed on the source"):
        refs().local_rows(Linked(), table, [row], Pending())  # type: ignore[arg-type]


def test_adapters_carry_values_between_mysql_and_postgresql() -> None:
    flag = Adapter("bool", MYSQL, POSTGRES)
    assert flag.param(flag.value(1)) is True
    doc = Adapter("json", MYSQL, POSTGRES)
    assert doc.param(doc.value('{"a": [1, 2]}')).obj == {"a": [1, 2]}
    back = Adapter("json", POSTGRES, MYSQL)
    assert back.param(back.value({"a": 1})) == '{"a": 1}'


@pytest.mark.parametrize(
    ("shown", "declared"),
    [
        ("\"'abc'::character varying\"", "'abc'"),
        ("'it''s'::text", "'it''s'"),
        ("CURRENT_TIMESTAMP", "CURRENT_TIMESTAMP"),
        ("null", "null"),
        ("42", "42"),
    ],
)
def test_clean_default_removes_postgresqls_casts(shown: str, declared: str) -> None:
    assert clean_default(shown) == declared


@pytest.mark.parametrize(
    ("sql", "core"),
    [
        ("integer", "int32"),
        ("smallint", "int16"),
        ("double precision", "float64"),
        ("character varying(40)", "varchar(40)"),
        ("numeric(8, 3)", "decimal(8,3)"),
        ("timestamp without time zone", "datetime"),
        ("date", "date"),
    ],
)
def test_native_types_read_back_as_core_types(sql: str, core: str) -> None:
    assert native_to_core(sql) == core


def test_a_datetime_with_microseconds_is_refused_for_mysql_and_kept_for_postgresql() -> None:
    from datetime import datetime

    moment = datetime(2026, 1, 2, 3, 4, 5, 678)
    assert Adapter("datetime", POSTGRES, POSTGRES).param(moment) == moment
    assert Adapter("datetime", POSTGRES, MYSQL).param(moment.replace(microsecond=0))
    with pytest.raises(LinkError, match="fractions of a second"):
        Adapter("datetime", POSTGRES, MYSQL).param(moment)


def test_a_kept_foreign_key_is_a_reference_line_with_renames_projected() -> None:
    same = ForeignKey("lab", "subject", {"subject_id": "subject_id"})
    renamed = ForeignKey("lab", "subject", {"reviewer_id": "subject_id", "day": "day"})
    assert reference_line("Local_subject", same, nullable=False) == "-> Local_subject"
    assert reference_line("Local_subject", same, nullable=True) == "-> [nullable] Local_subject"
    assert (
        reference_line("Local_subject", renamed, nullable=False)
        == "-> Local_subject.proj(reviewer_id='subject_id')"
    )
