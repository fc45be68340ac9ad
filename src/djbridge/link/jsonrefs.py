"""DataJoint 2.x's external references: the JSON in the column, and how a link moves them.

A 2.x column declared with a store (``<blob@raw>``, ``<object@raw>``, ...) holds a
JSON document; its ``path`` is the object's key relative to the store's
``location`` and its ``store`` names the store, which wins over the column's
declared one. There is no tracking table: the row *is* the reference. A link
therefore rewrites each document as the row crosses over, and copies what it
points at into the destination store, where DataJoint 2.x would have put it had
the row been inserted locally:

* ``<blob@>``, ``<attach@>``, ``<hash@>`` go to
  ``{hash_prefix}/{local schema}/[folds/]{hash}``, checked by MD5 against ``hash``
  and by ``size``;
* ``<object@>`` (a file, or a folder with its ``.manifest.json``) and ``<npy@>`` go to
  ``{schema_prefix}/{local schema}/{table}/{key folders}/{field}_{token}{ext}``,
  checked by size (each file of a folder against its manifest);
* ``<filepath@>`` keeps its relative path in the destination store, checked by ``size``.

An object's file name (``{field}_{token}{ext}``) and key folders are kept: only the
part before them, the prefix and the schema, is the destination's. So a rewrite
depends on nothing but the document, and a row read twice (a part row that
streams after its objects were copied) rewrites to the same document both times.

Values that are not references are carried too, changed only where the two
servers spell a value differently (:class:`Adapter`): a JSON value is re-encoded
for the destination, a boolean is a ``bool`` for PostgreSQL, a UUID is 16 bytes on
MySQL and a ``uuid`` on PostgreSQL.

    refs = JsonReferences(local_schema="lab_copy", stores={"raw": (src, dst)}, tables=...)
    pending = refs.collect(linked, fetched)        # the copies the rows need
    refs.copy(linked, pending, pool, on_bytes)     # verified, concurrently
    refs.local_rows(linked, table, rows, pending)  # the rows with rewritten JSON
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from djbridge.errors import IntegrityError, LinkError, ObjectNotFound, StoreError
from djbridge.layout import dj2_hash_key
from djbridge.link.transfer import Copy, Fetched, Key, copy_all, reference_columns
from djbridge.stores import Store

if TYPE_CHECKING:
    from djbridge.link.mirror import SourceTable
    from djbridge.link.sync import Linked
    from djbridge.sqldialect import SqlDialect

log = logging.getLogger(__name__)

HASHED = frozenset({"blob", "attach", "hash"})
"""Codecs whose objects are addressed by their content's hash."""
SCHEMA_ADDRESSED = frozenset({"object", "npy"})
"""Codecs whose objects live under the schema's folder, named by table, key and field."""
MANIFEST = ".manifest.json"


@dataclass(frozen=True)
class Dj2Store:
    """One 2.x store as a link side sees it: the open store and how it lays out keys."""

    name: str
    store: Store
    hash_prefix: str = "_hash"
    schema_prefix: str = "_schema"
    subfolding: tuple[int, ...] = ()

    @classmethod
    def from_spec(cls, name: str, spec: Mapping[str, Any], store: Store) -> Dj2Store:
        """Build from a ``dj.config.stores`` entry (DataJoint 2.x's defaults where unset)."""
        return cls(
            name=name,
            store=store,
            hash_prefix=str(spec.get("hash_prefix") or "_hash").strip("/"),
            schema_prefix=str(spec.get("schema_prefix") or "_schema").strip("/"),
            subfolding=tuple(int(n) for n in spec.get("subfolding") or ()),
        )


@dataclass(frozen=True)
class Sides:
    """A source store and the destination store its objects go to."""

    src: Dj2Store
    dst: Dj2Store


def hash_digest(content_hash: str) -> bytes:
    """Return the MD5 that a 2.x ``hash`` (lowercase base32, no padding) spells."""
    text = content_hash.upper()
    return base64.b32decode(text + "=" * (-len(text) % 8))


@dataclass
class Pending:
    """The copies a batch needs, by destination key, and the folders still to expand."""

    copies: dict[tuple[str, str], Copy] = field(default_factory=dict)
    folders: dict[tuple[str, str], Copy] = field(default_factory=dict)  # a folder object
    # Each document is rewritten once per batch: by its text (MySQL) or by the object
    # itself (PostgreSQL hands out dicts), kept here so its identity stays unique.
    memo: dict[Any, tuple[Any, dict[str, Any], Copy | None, bool]] = field(default_factory=dict)

    def has(self, store: str, key: str) -> bool:
        """Return whether the copy to ``key`` in destination ``store`` is part of this batch."""
        return (store, key) in self.copies or (store, key) in self.folders


class Adapter:
    """Carries one column's values from the source server's spelling to the destination's.

    ``kind`` is ``"json"``, ``"bool"``, ``"uuid"``, ``"datetime"`` (whole seconds on
    MySQL) or ``""`` (passed through).
    """

    def __init__(self, kind: str, src: SqlDialect, dst: SqlDialect) -> None:
        self.kind, self.src, self.dst = kind, src, dst

    def value(self, raw: Any) -> Any:
        """Return the canonical Python value of a fetched ``raw`` value."""
        if raw is None:
            return None
        if self.kind == "json":
            return self.src.read_json(raw)
        if self.kind == "bool":
            return bool(raw)
        if self.kind == "uuid":
            return raw if isinstance(raw, uuid.UUID) else uuid.UUID(bytes=bytes(raw))
        if isinstance(raw, memoryview):
            return bytes(raw)
        return raw

    def param(self, value: Any) -> Any:
        """Return a canonical ``value`` as a parameter for the destination server."""
        if value is None:
            return None
        if self.kind == "json":
            return self.dst.json_param(value)
        if self.kind == "uuid" and self.dst.name == "mysql":
            return value.bytes
        if self.kind == "datetime" and self.dst.name == "mysql" and value.microsecond:
            raise LinkError(
                f"the datetime {value.isoformat()} has fractions of a second, which a MySQL "
                "datetime cannot hold; the row was not copied (declare the source column "
                "datetime(6) to link it exactly)"
            )
        return value


def adapters(table: SourceTable, kinds: Mapping[str, str], src: SqlDialect,
             dst: SqlDialect) -> list[Adapter]:  # fmt: skip
    """Return one :class:`Adapter` per column of ``table`` (``kinds``: column -> kind)."""
    return [
        Adapter(kinds.get(c.name) or ("json" if c.store is not None else ""), src, dst)
        for c in table.columns
    ]


class JsonReferences:
    """DataJoint 2.x: references are JSON documents in the rows themselves.

    ``stores`` maps each source store to its :class:`Sides`; ``kinds`` gives, per
    table name, the value kind of every column that needs one (see :class:`Adapter`).
    """

    def __init__(self, source_schema: str, local_schema: str, stores: Mapping[str, Sides],
                 kinds: Mapping[str, Mapping[str, str]]) -> None:  # fmt: skip
        self.source_schema = source_schema
        self.local_schema = local_schema
        self.stores = dict(stores)
        self.kinds = kinds
        self._adapters: dict[str, list[Adapter]] = {}

    # ---- rewriting one document ----------------------------------------------------------
    def relocate(self, sides: Sides, path: str) -> str:
        """Return the destination key of a schema-addressed ``path`` (object@, npy@).

        ``{schema_prefix}/[partitions/]{schema}/{rest}`` becomes the destination
        prefix, the same partitions, the local schema and the same ``rest``.

        Raises
        ------
        LinkError
            If ``path`` is not under the source store's ``schema_prefix`` and schema.
        """
        parts = path.split("/")
        prefix = sides.src.schema_prefix.split("/") if sides.src.schema_prefix else []
        if parts[: len(prefix)] == prefix and self.source_schema in parts[len(prefix) : -1]:
            at = parts.index(self.source_schema, len(prefix))
            head = [sides.dst.schema_prefix] if sides.dst.schema_prefix else []
            return "/".join([*head, *parts[len(prefix) : at], self.local_schema, *parts[at + 1 :]])
        raise LinkError(
            f"object path {path!r} in store {sides.src.name!r} is not under "
            f"{sides.src.schema_prefix}/{self.source_schema}/, where DataJoint 2.x keeps this "
            "schema's objects; the link cannot tell where it belongs locally"
        )

    def rewrite(self, codec: str, doc: dict[str, Any]) -> tuple[dict[str, Any], Copy | None, bool]:
        """Return the local document, the copy it needs, and whether that copy is a folder.

        Raises
        ------
        LinkError
            If the document names a store the link does not map, or lacks ``path``.
        """
        store = doc.get("store")
        sides = self.stores.get(str(store))
        if sides is None or "path" not in doc:
            raise LinkError(
                f"a <{codec}@> value names store {store!r}, which the link does not map "
                f"(mapped: {sorted(self.stores)})"
                if "path" in doc
                else f"a <{codec}@> value has no 'path': {json.dumps(doc)[:200]}"
            )
        path = str(doc["path"])
        size = doc.get("size")
        out = dict(doc, store=sides.dst.name)
        md5 = None
        if codec in HASHED:
            digest = str(doc["hash"])
            dst = dj2_hash_key(self.local_schema, digest, sides.dst.subfolding,
                               sides.dst.hash_prefix)  # fmt: skip
            out["path"] = dst
            if "schema" in doc:
                out["schema"] = self.local_schema
            md5 = hash_digest(digest)
        elif codec in SCHEMA_ADDRESSED:
            dst = self.relocate(sides, path)
            out["path"] = dst
            out.pop("url", None)  # names the source's location; never read on fetch
        else:  # filepath@: the same relative path in the destination store
            dst = path
        folder = bool(doc.get("is_dir"))
        known = None if folder or not isinstance(size, int) else size
        copy = Copy(sides.src.store, path, sides.dst.store, dst, known, md5=md5,
                    record="the row's JSON records")  # fmt: skip
        same = sides.src.store.root_id == sides.dst.store.root_id and path == dst
        return out, None if same else copy, folder

    # ---- the References interface ----------------------------------------------------------
    def preflight(self, linked: Linked, keys: Sequence[Key]) -> None:
        """Refuse source datetimes with fractions of a second when the local side is MySQL.

        DataJoint 2.x declares ``datetime`` as PostgreSQL's ``timestamp`` (microseconds)
        and as MySQL's ``datetime`` (whole seconds): such a value cannot arrive exactly.
        One query per table per 1,000 keys finds them before anything is written.

        Raises
        ------
        LinkError
            Naming the table, the column and the first keys found.
        """
        src, dst = linked.source_db.dialect, linked.local_db.dialect
        if src.name != "postgresql" or dst.name != "mysql":
            return
        from djbridge.mysql import chunks

        for table in [linked.master, *linked.parts.values()]:
            kinds = self.kinds.get(table.name, {})
            columns = [c.name for c in table.columns if kinds.get(c.name) == "datetime"]
            if not columns:
                continue
            fraction = " OR ".join(
                f"{src.quote(c)} <> date_trunc('second', {src.quote(c)})" for c in columns
            )
            names = ", ".join(src.quote(c) for c in linked.key_columns)
            for chunk in chunks(keys, 1000):
                where, params = src.key_filter(linked.key_columns, chunk)
                found = linked.source_db.query(
                    f"SELECT {names} FROM {src.quote(table.schema, table.name)} "
                    f"WHERE {where} AND ({fraction}) LIMIT 5",
                    params,
                )
                if found:
                    keys_found = [dict(zip(linked.key_columns, r, strict=True)) for r in found]
                    raise LinkError(
                        f"{table.schema}.{table.name}: {', '.join(columns)} holds fractions of "
                        f"a second in rows {keys_found}, which a MySQL datetime cannot hold; "
                        "nothing was pulled. Restrict the pull to other rows, or declare the "
                        "source column datetime(6) to link it exactly"
                    )

    def _columns(self, table: SourceTable) -> list[tuple[int, str]]:
        return [(i, str(c.kind)) for i, c in enumerate(table.columns) if c.store is not None]

    def rewrite_once(
        self, pending: Pending, codec: str, raw: Any, read: Callable[[Any], Any], *, keep: bool
    ) -> tuple[dict[str, Any], Copy | None, bool]:
        """Return :meth:`rewrite` of the raw value ``raw``, computed once per batch.

        Only the batch's fetched rows are kept (``keep``); a row that streams in is
        rewritten on its own, so the memo never grows with the rows of a heavy key.
        """
        key = (codec, raw if isinstance(raw, str | bytes) else id(raw))
        hit = pending.memo.get(key)
        if hit is not None and (hit[0] is raw or isinstance(raw, str | bytes)):
            return hit[1], hit[2], hit[3]
        out, copy, folder = self.rewrite(codec, read(raw))
        if keep:
            pending.memo[key] = (raw, out, copy, folder)
        return out, copy, folder

    def _add(self, pending: Pending, codec: str, doc: dict[str, Any], raw: Any = None,
             read: Callable[[Any], Any] | None = None) -> None:  # fmt: skip
        if raw is not None and read is not None:
            out, copy, folder = self.rewrite_once(pending, codec, raw, read, keep=True)
        else:
            out, copy, folder = self.rewrite(codec, doc)
        if copy is not None:
            (pending.folders if folder else pending.copies)[(out["store"], copy.dst_key)] = copy

    def collect(self, linked: Linked, fetched: Fetched) -> Pending:
        """Return the copies the fetched rows' documents need."""
        pending = Pending()
        read = linked.source_db.dialect.read_json
        for table, rows in fetched:
            columns = self._columns(table)
            for row in rows:
                for index, codec in columns:
                    if row[index] is not None:
                        self._add(pending, codec, {}, row[index], read)
        return pending

    def collect_streamed(self, linked: Linked, table: SourceTable, keys: Sequence[Key],
                         pending: Pending) -> None:  # fmt: skip
        """Add the copies of ``table``'s rows of ``keys``, reading only their documents."""
        from djbridge.link.transfer import stream_references

        codecs = [kind for _, kind in self._columns(table)]
        read = linked.source_db.dialect.read_json
        for row in stream_references(linked, table, keys):
            for value, codec in zip(row, codecs, strict=True):
                if value is not None:
                    self._add(pending, codec, read(value))

    def folder_copies(self, folder: Copy) -> list[Copy]:
        """Return the copies of a folder object: each file its manifest lists, then the manifest.

        Raises
        ------
        LinkError
            If the folder has no readable manifest.
        """
        try:
            manifest = json.loads(folder.src.get(folder.src_key + MANIFEST))
        except ObjectNotFound as err:
            raise LinkError(
                f"folder object {folder.src.description}/{folder.src_key} has no {MANIFEST}; "
                "the link copies a folder by its manifest"
            ) from err
        copies = [
            Copy(
                folder.src,
                f"{folder.src_key}/{item['path']}",
                folder.dst,
                f"{folder.dst_key}/{item['path']}",
                int(item["size"]),
                record=f"the manifest of {folder.src_key} records",
            )  # fmt: skip
            for item in manifest.get("files", [])
        ]
        copies.append(Copy(folder.src, folder.src_key + MANIFEST, folder.dst,
                           folder.dst_key + MANIFEST, None))  # fmt: skip
        return copies

    def copy(self, linked: Linked, pending: Pending, pool: Executor,
             on_bytes: Callable[[int], None]) -> tuple[int, int, None]:  # fmt: skip
        """Copy and verify every object of ``pending``; manifests go after their folders' files."""
        copies = list(pending.copies.values())
        manifests = []
        for folder in pending.folders.values():
            *files, manifest = self.folder_copies(folder)
            copies.extend(files)
            manifests.append(manifest)
        size = copy_all(copies, pool, on_bytes)
        size += copy_all(manifests, pool, on_bytes)
        return len(copies) + len(manifests), size, None

    def write_tracking(self, linked: Linked, db: Any, tracking: None) -> None:
        """Write nothing: a 2.x row is its own reference."""

    def local_rows(self, linked: Linked, table: SourceTable, rows: Sequence[tuple[Any, ...]],
                   pending: Pending) -> list[tuple[Any, ...]]:  # fmt: skip
        """Return ``rows`` with rewritten documents, spelt for the destination server."""
        convert = self._adapters.get(table.name)
        if convert is None:
            convert = adapters(table, self.kinds.get(table.name, {}),
                               linked.source_db.dialect, linked.local_db.dialect)  # fmt: skip
            self._adapters[table.name] = convert
        refs = dict(self._columns(table))
        read = linked.source_db.dialect.read_json
        out = []
        for row in rows:
            values = [a.value(v) if i not in refs else v
                      for i, (a, v) in enumerate(zip(convert, row, strict=True))]  # fmt: skip
            for index, codec in refs.items():
                if values[index] is None:
                    continue
                values[index], copy, _ = self.rewrite_once(
                    pending, codec, row[index], read, keep=False
                )
                if copy is not None and not pending.has(values[index]["store"], copy.dst_key):
                    from djbridge.link.transfer import changed_on_source

                    raise changed_on_source(table)
            out.append(tuple(a.param(v) for a, v in zip(convert, values, strict=True)))
        return out


def value_kinds(attributes: Sequence[Any]) -> dict[str, str]:
    """Return the :class:`Adapter` kind of each 2.x heading attribute that needs one."""
    kinds = {}
    for attr in attributes:
        declared = attr.original_type or attr.type
        if attr.json or attr.store is not None:
            kinds[attr.name] = "json"
        elif declared == "bool" or attr.type == "boolean":
            kinds[attr.name] = "bool"
        elif declared == "uuid" or attr.uuid:
            kinds[attr.name] = "uuid"
        elif declared == "datetime":
            kinds[attr.name] = "datetime"
    return kinds


__all__ = ["Dj2Store", "JsonReferences", "Pending", "Sides", "reference_columns", "value_kinds"]


# ---- verify ---------------------------------------------------------------------------------
def _canonical(rows: list[tuple[Any, ...]]) -> list[str]:
    """Return rows as sorted, comparable text (JSON documents compare by content)."""
    return sorted(json.dumps(row, sort_keys=True, default=repr) for row in rows)


class JsonVerify:
    """Verify for 2.x: rows compared value by value, objects by their documents.

    A source row is compared as the link would have written it (its documents
    rewritten); a local row as DataJoint 2.x stores it. The objects checked are the
    ones the *local* documents name: present, of the recorded size, a folder's
    files against its manifest. A repair copies an object again from the source
    document that leads to it, verified as in a pull.
    """

    def __init__(self, linked: Linked, refs: JsonReferences) -> None:
        self.linked = linked
        self.refs = refs
        self.seen: set[tuple[str, str]] = set()

    def _rows(self, db: Any, table: SourceTable, name: str,
              keys: Sequence[Key]) -> list[tuple[Any, ...]]:  # fmt: skip
        q = db.dialect
        where, params = q.key_filter(self.linked.key_columns, keys)
        names = ", ".join(q.quote(c.name) for c in table.columns)
        return list(db.query(f"SELECT {names} FROM {name} WHERE {where}", params))

    def tables(self) -> list[tuple[SourceTable, str]]:
        """Return each source table with its quoted local table."""
        ln = self.linked
        return [(ln.master, ln.local_master),
                *((part, ln.local_parts[s]) for s, part in ln.parts.items())]  # fmt: skip

    def batch(self, keys: Sequence[Key], repair: bool, pool: Executor,
              report: Any) -> list[Key]:  # fmt: skip
        """Compare the rows of ``keys``, check their objects; return the keys that differ."""
        ln = self.linked
        n = len(ln.key_columns)
        src_q = ln.source_db.dialect
        differ: set[Key] = set()
        expected: dict[tuple[str, str], tuple[Copy, bool]] = {}
        local_docs: list[tuple[str, dict[str, Any]]] = []
        for table, local_name in self.tables():
            kinds = self.refs.kinds.get(table.name, {})
            codecs = dict(self.refs._columns(table))
            source_read = adapters(table, kinds, src_q, src_q)
            local_read = adapters(table, kinds, ln.local_db.dialect, ln.local_db.dialect)
            theirs: dict[Key, list[tuple[Any, ...]]] = {}
            for row in self._rows(ln.source_db, table, src_q.quote(table.schema, table.name),
                                  keys):  # fmt: skip
                values = [a.value(v) for a, v in zip(source_read, row, strict=True)]
                for index, codec in codecs.items():
                    if values[index] is not None:
                        values[index], copy, folder = self.refs.rewrite(codec, values[index])
                        if copy is not None:
                            expected[(values[index]["store"], copy.dst_key)] = (copy, folder)
                theirs.setdefault(tuple(values[:n]), []).append(tuple(values))
            ours: dict[Key, list[tuple[Any, ...]]] = {}
            for row in self._rows(ln.local_db, table, local_name, keys):
                values = [a.value(v) for a, v in zip(local_read, row, strict=True)]
                for index in codecs:
                    if values[index] is not None:
                        local_docs.append((str(codecs[index]), values[index]))
                ours.setdefault(tuple(values[:n]), []).append(tuple(values))
            differ |= {
                k for k in keys if _canonical(theirs.get(k, [])) != _canonical(ours.get(k, []))
            }
        self.check_objects(local_docs, expected, repair, pool, report)
        return [k for k in keys if k in differ]

    def stores_by_name(self) -> dict[str, Dj2Store]:
        """Return the destination stores by name."""
        return {s.dst.name: s.dst for s in self.refs.stores.values()}

    def problems(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """Return what is wrong with the object(s) one local document names."""
        store = self.stores_by_name().get(str(doc.get("store")))
        if store is None:
            return []
        path = str(doc["path"])
        if doc.get("is_dir"):
            try:
                manifest = json.loads(store.store.get(path + MANIFEST))
            except ObjectNotFound:
                return [{"store": store.name, "key": path + MANIFEST, "size": None, "found": None}]
            items: list[tuple[str, int | None]] = [
                (f"{path}/{i['path']}", int(i["size"])) for i in manifest.get("files", [])
            ]
        else:
            size = doc.get("size")
            items = [(path, size if isinstance(size, int) else None)]
        found = []
        for key, size in items:
            try:
                have: int | None = store.store.stat(key).size
            except ObjectNotFound:
                have = None
            if have is None or (size is not None and have != size):
                found.append({"store": store.name, "key": key, "size": size, "found": have})
        return found

    def check_objects(self, docs: list[tuple[str, dict[str, Any]]],
                      expected: Mapping[tuple[str, str], tuple[Copy, bool]],
                      repair: bool, pool: Executor, report: Any) -> None:  # fmt: skip
        """Check each local document's objects once; with ``repair``, copy bad ones again."""
        todo = []
        for _, doc in docs:
            mark = (str(doc.get("store")), str(doc.get("path")))
            if mark not in self.seen:
                self.seen.add(mark)
                todo.append(doc)
        for doc, found in zip(todo, pool.map(self.problems, todo), strict=True):
            for problem in found:
                kind = report.objects_missing if problem["found"] is None else (
                    report.objects_wrong_size)  # fmt: skip
                kind.append(problem)
            if found and repair:
                self.fix(doc, found, expected, pool, report)

    def fix(self, doc: dict[str, Any], found: list[dict[str, Any]],
            expected: Mapping[tuple[str, str], tuple[Copy, bool]],
            pool: Executor, report: Any) -> None:  # fmt: skip
        """Copy one document's objects again from the source, verified."""
        target = expected.get((str(doc["store"]), str(doc["path"])))
        try:
            if target is None:
                raise LinkError("the source row no longer leads to this object (the row differs)")
            copy, folder = target
            copies = self.refs.folder_copies(copy) if folder else [copy]
            copy_all(copies, pool)
        except (LinkError, StoreError, IntegrityError) as err:
            for problem in found:
                problem["error"] = str(err)
            log.error("verify: cannot repair %s/%s: %s", doc["store"], doc["path"], err)
            return
        report.repaired += [dict(p, found=p["size"]) for p in found]
