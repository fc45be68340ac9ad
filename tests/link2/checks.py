"""What a link2 test checks after a pull: the same values, objects of its own, the same tables.

* :func:`row_problems` compares what plain 2.x fetches from the source and the local
  table (:meth:`TwoLabs.read_source`, :meth:`TwoLabs.read_local`), row by row:
  exactly (the tagged JSON of every value, so also the type of every value) between
  servers of one kind, and by value between PostgreSQL and MySQL (``loose``), where
  a ``bool`` comes back as 0/1 on MySQL and JSON keys come back in another order.
* :func:`layout_problems` checks that every pulled value lives in the local store
  under the local schema: hash-addressed values at ``_hash/{local}/{hash}`` with the
  source's hash, ``<object@>``/``<npy@>`` under ``_schema/{local}/recording/...``,
  ``<filepath@>`` at the source's relative path, each JSON naming the local store,
  and every object the JSON names present in that store.
* :func:`structure_problems` compares plain 2.x's view of the two schemas (the
  driver's ``dump``): tables, tiers, attributes, defaults, nullability, comments,
  indexes, and foreign keys, the one to the absent ``subject`` dropped.

Each returns a list of problems, one line each; the tests assert it is empty.

    source, local = labs.read_source(), labs.read_local()
    assert not row_problems(source, local), row_problems(source, local)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tests.link2.twolabs import LOCAL_STORE, SOURCE_STORE, TwoLabs
from tests.migrate.compare import comparable, same_value

HASH_CODECS = {"ext", "att", "h", "trace"}
"""The hash-addressed columns of the source pipeline (``<blob@>``, ``<attach@>``, ``<hash@>``)."""
SCHEMA_CODECS = {"obj", "npy", "spikes"}
"""The schema-addressed columns (``<object@>``, ``<npy@>``): their objects are named after them."""


def _by_key(table: dict[str, Any]) -> dict[str, dict[str, Any]]:
    pk = table["primary_key"]
    return {json.dumps([row.get(k) for k in pk]): row for row in table["rows"]}


def _loose(value: Any) -> Any:
    """A comparable value, with ``bool`` as ``int`` (MySQL keeps a bool as tinyint)."""
    value = comparable(value)
    return int(value) if isinstance(value, bool) else value


def _table_problems(
    where: str, ours: dict[str, Any], theirs: dict[str, Any], loose: bool
) -> list[str]:
    problems = []
    a, b = _by_key(ours), _by_key(theirs)
    for key in sorted(set(a) ^ set(b)):
        problems.append(f"{where} {key}: {'missing locally' if key in a else 'extra locally'}")
    for key in sorted(set(a) & set(b)):
        if "$error" in b[key] or "$error" in a[key]:
            problems.append(f"{where} {key}: unreadable: {b[key].get('$error') or a[key]}")
            continue
        if set(a[key]) != set(b[key]):
            problems.append(f"{where} {key}: columns {sorted(a[key])} != {sorted(b[key])}")
        for column in sorted(set(a[key]) & set(b[key])):
            x, y = a[key][column], b[key][column]
            same = same_value(_loose(x), _loose(y), "") if loose else x == y
            if not same:
                problems.append(f"{where}.{column} {key}: {_show(x)} != {_show(y)}")
    return problems


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) < 200 else text[:200] + "..."


def row_problems(
    source: dict[str, Any], local: dict[str, Any], *, loose: bool = False
) -> list[str]:
    """Return every row and value that differs between the source and the local read."""
    problems = _table_problems("Recording", source["master"], local["master"], loose)
    for name, part in source["parts"].items():
        problems += _table_problems(f"Recording.{name}", part, local["parts"][name], loose)
    return problems


# ---- where the objects live -----------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """Where a DataJoint 2.x store keeps its sections: prefixes and subfolding."""

    hash_prefix: str = "_hash"
    schema_prefix: str = "_schema"
    subfolding: tuple[int, ...] = ()

    @classmethod
    def of(cls, spec: dict[str, Any]) -> Layout:
        """Return the layout a ``stores`` entry asks for (DataJoint's defaults otherwise)."""
        return cls(
            str(spec.get("hash_prefix", "_hash")).strip("/"),
            str(spec.get("schema_prefix", "_schema")).strip("/"),
            tuple(spec.get("subfolding") or ()),
        )

    def hash_section(self, schema: str) -> str:
        """Return the folder of ``schema``'s hash-addressed values, with a slash."""
        return "/".join(p for p in (self.hash_prefix, schema) if p) + "/"

    def hash_path(self, schema: str, content_hash: str) -> str:
        """Return where a hash-addressed value of ``schema`` lives (``[folds/]hash``)."""
        folds, rest = [], content_hash
        for width in self.subfolding:
            folds.append(rest[:width])
            rest = rest[width:]
        return self.hash_section(schema) + "/".join([*folds, content_hash])

    def schema_section(self, schema: str) -> str:
        """Return the folder of ``schema``'s schema-addressed values, with a slash."""
        return "/".join(p for p in (self.schema_prefix, schema) if p) + "/"


def _value_problems(
    labs: TwoLabs, where: str, column: str, src: dict[str, Any] | None, loc: dict[str, Any] | None
) -> list[str]:
    if src is None or loc is None:
        return [] if src is loc else [f"{where}.{column}: {_show(src)} became {_show(loc)}"]
    ours, theirs = Layout.of(labs.stores[SOURCE_STORE]), Layout.of(labs.stores[LOCAL_STORE])
    problems = []
    if loc.get("store") != LOCAL_STORE:
        problems.append(f"{where}.{column}: store {loc.get('store')!r}, not {LOCAL_STORE!r}")
    path = str(loc.get("path"))
    if column in HASH_CODECS:
        if loc.get("hash") != src.get("hash"):
            problems.append(f"{where}.{column}: hash {loc.get('hash')} != {src.get('hash')}")
        wanted = theirs.hash_path(labs.local_schema, str(src.get("hash")))
        if path != wanted:
            problems.append(f"{where}.{column}: path {path}, not {wanted}")
    elif column in SCHEMA_CODECS:
        # {section}/{table}/{key=value...}/ as at the source, then {field}_{token}{ext}
        folder = str(src["path"]).removeprefix(ours.schema_section(labs.src_schema))
        folder = theirs.schema_section(labs.local_schema) + folder.rpartition("/")[0]
        ext = re.escape(src.get("ext") or "") if column == "obj" else r"\.npy"
        if not re.fullmatch(rf"{re.escape(folder)}/{column}_[\w-]+{ext}", path):
            shown = src.get("ext") or "" if column == "obj" else ".npy"
            problems.append(f"{where}.{column}: path {path}, not {folder}/{column}_<token>{shown}")
        if column == "obj" and bool(loc.get("is_dir")) != bool(src.get("is_dir")):
            problems.append(f"{where}.{column}: is_dir {loc.get('is_dir')} != {src.get('is_dir')}")
    elif path != src.get("path"):
        problems.append(f"{where}.{column}: filepath {path} != {src.get('path')}")
    return problems


def referenced(loc: dict[str, Any], stored: set[str]) -> bool:
    """Return whether the object a JSON value names is in the store (a folder: its files)."""
    path = str(loc["path"])
    if loc.get("is_dir"):
        return any(key.startswith(path + "/") for key in stored)
    return path in stored


def layout_problems(labs: TwoLabs, source: dict[str, Any], local: dict[str, Any]) -> list[str]:
    """Return every pulled value whose JSON or object is not the local side's own."""
    problems = []
    stored = set(labs.objects(LOCAL_STORE))
    tables = [("Recording", source["master"], local["master"])]
    tables += [(f"Recording.{n}", p, local["parts"][n]) for n, p in source["parts"].items()]
    for where, src_table, loc_table in tables:
        for key, values in src_table["json"].items():
            theirs = loc_table["json"].get(key, {})
            for column, src in values.items():
                loc = theirs.get(column)
                problems += _value_problems(labs, f"{where} {key}", column, src, loc)
                if loc is not None and not referenced(loc, stored):
                    problems.append(f"{where} {key}.{column}: {loc['path']} not in the local store")
    layout = Layout.of(labs.stores[LOCAL_STORE])
    local = labs.local_schema
    allowed = (layout.hash_section(local), layout.schema_section(local), "user/")
    problems += [f"local store holds {k}" for k in sorted(stored) if not k.startswith(allowed)]
    return problems


# ---- the tables as plain 2.x sees them ---------------------------------------------------------
def _mapped(text: Any) -> Any:
    return text.replace(f"@{SOURCE_STORE}>", f"@{LOCAL_STORE}>") if isinstance(text, str) else text


def _attribute_problems(
    where: str, src: dict[str, Any], loc: dict[str, Any], fk: set[str]
) -> list[str]:
    problems = []
    names = [a["name"] for a in src["attributes"]]
    theirs = {a["name"]: a for a in loc["attributes"]}
    if names != list(theirs):
        return [f"{where}: attributes {names} != {list(theirs)}"]
    for attr in src["attributes"]:
        them = theirs[attr["name"]]
        fields = ["in_key", "nullable", "default", "codec", "autoincrement"]
        if attr["name"] not in fk:  # PostgreSQL: a foreign key's column has no type comment
            fields += ["type", "original_type", "comment"]
        for field in fields:
            if _mapped(attr[field]) != them[field]:
                problems.append(
                    f"{where}.{attr['name']}: {field} {them[field]!r}, source {attr[field]!r}"
                )
        store = LOCAL_STORE if attr["store"] == SOURCE_STORE else attr["store"]
        if store != them["store"]:
            problems.append(f"{where}.{attr['name']}: store {them['store']!r}, not {store!r}")
    return problems


def structure_problems(labs: TwoLabs, source: dict[str, Any], local: dict[str, Any]) -> list[str]:
    """Return every way the local tables differ from the source tables they mirror."""
    problems = []
    mirrored = {"recording", "recording__channel"}
    if set(local) - {"~lineage"} != mirrored:
        problems.append(f"local tables {sorted(local)}, expected {sorted(mirrored)}")
    for name in sorted(mirrored & set(local)):
        src, loc = source[name], local[name]
        for field in ("tier", "comment", "primary_key"):
            if src[field] != loc[field]:
                problems.append(f"{name}: {field} {loc[field]!r}, source {src[field]!r}")
        fk = {a for _, attr_map in src["parents"] for a in attr_map}
        problems += _attribute_problems(name, src, loc, fk)
        wanted = {(tuple(i["columns"]), i["unique"]) for i in src["indexes"]}
        wanted -= {((a,), False) for a in fk}  # PostgreSQL's index for the foreign key
        found = {(tuple(i["columns"]), i["unique"]) for i in loc["indexes"]}
        if not wanted <= found:
            problems.append(f"{name}: indexes {sorted(found)} lack {sorted(wanted - found)}")
    parents = {n: [[re.sub(r'[`"]', "", p), m] for p, m in t["parents"]] for n, t in local.items()
               if n in mirrored}  # fmt: skip
    expected = {
        "recording": [],
        "recording__channel": [[f"{labs.local_schema}.recording", {"rec_id": "rec_id"}]],
    }
    if parents != expected:
        problems.append(f"local foreign keys {parents}, expected {expected}")
    return problems
