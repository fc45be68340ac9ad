"""DataJoint's naming and object-key rules, in one place.

Both tools must agree with DataJoint on where an external value lives and which
names a server can hold; a cleaner that computed a key one way and a link that
wrote it another would delete live data. So every such rule lives here, and
nothing else in djbridge, its tests or its benchmarks spells one out again.

DataJoint 0.14 (this section) keeps every external value as one object:

* its key below the store's ``location`` is ``<schema>/<folds>/<hash hex>``, where
  the folds are the hash's own leading hex digits cut by the store's subfolding
  (default ``(2, 2)``: ``lab/18/28/18285198...``); an attachment appends
  ``.<attachment name>``; a ``filepath`` row names its object's relative path;
* while being written, an object carries a temporary suffix (``.saving`` for a
  blob, ``.copying`` for an attachment copy), so such a name is never a live one;
* each store's objects are tracked by ``<schema>.~external_<store>``; a part
  table of master ``m`` is ``m__<part>``.

The invariant: :func:`object_key` and :func:`managed_hash` are inverses on every
managed name, so a name the cleaner accepts is exactly a name DataJoint writes.
Because the folds are prefixes of the hash, keys sort in the order of their
hashes within a schema folder.

    from djbridge import layout
    key = layout.object_key("lab", digest, attachment_name="f2.bin")
    layout.managed_hash(key.partition("/")[2], (2, 2)) == digest.hex()   # True
    layout.tracking_table("raw")                      # '~external_raw'
    layout.is_schema_name("lab_ephys"), layout.is_store_name("raw")

DataJoint 2.x (the section at the end) has no tracking tables: a JSON column whose
comment names a codec (``:<blob@raw>:``) holds each value's ``path``, and a schema's
objects lie in two areas below the location, ``{hash_prefix}/{schema}/`` and
``{schema_prefix}/{schema}/`` (:func:`dj2_hash_key`, :func:`is_dj2_schema_name`,
:func:`dj2_coverers`).
"""

from __future__ import annotations

import functools
import re

MAX_IDENTIFIER = 64
"""The longest schema or table name MariaDB accepts."""

TRACKING_PREFIX = "~external_"
DEFAULT_SUBFOLDING = (2, 2)
HASH_HEX_DIGITS = 32

TEMP_SUFFIXES = (".saving", ".copying")
"""Suffixes DataJoint gives an object while it writes or copies it."""
_TEMP_NAMES = ("saving", "copying")

SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_$][A-Za-z0-9_$-]{0,63}\Z")
"""A schema name DataJoint can hold and djbridge accepts: no quotes, backticks,
semicolons, spaces, slashes or control characters, at most 64 characters."""

STORE_TOKEN = "[a-z][A-Za-z0-9_-]*"
"""The shape of a store name inside a longer text, e.g. a column comment ``:blob@raw:``."""
_STORE_TAIL = MAX_IDENTIFIER - len(TRACKING_PREFIX) - 1
STORE_NAME = re.compile(rf"^[a-z][A-Za-z0-9_-]{{0,{_STORE_TAIL}}}\Z")
"""A store name as DataJoint's ``declare`` accepts after ``@``, short enough that
``~external_<store>`` is still a valid table name."""


def is_schema_name(name: object) -> bool:
    """Return whether ``name`` is a string that matches :data:`SCHEMA_NAME` in full."""
    return isinstance(name, str) and SCHEMA_NAME.match(name) is not None


def is_store_name(name: object) -> bool:
    """Return whether ``name`` is a string that matches :data:`STORE_NAME` in full."""
    return isinstance(name, str) and STORE_NAME.match(name) is not None


def tracking_table(store: str) -> str:
    """Return the name of the table that tracks ``store``'s objects: ``~external_<store>``."""
    return f"{TRACKING_PREFIX}{store}"


def part_table(master: str, part: str) -> str:
    """Return the table name of part ``part`` of master table ``master``: ``master__part``."""
    return f"{master}__{part}"


# ---- DataJoint 0.14 object keys -----------------------------------------------------------
def folds(hexdigest: str, subfolding: tuple[int, ...] = DEFAULT_SUBFOLDING) -> list[str]:
    """Return the fold directories of a hash: its leading digits cut by ``subfolding``."""
    out, start = [], 0
    for width in subfolding:
        out.append(hexdigest[start : start + width])
        start += width
    return out


def object_key(
    schema: str,
    digest: bytes | str,
    attachment_name: str | None = None,
    *,
    filepath: str | None = None,
    subfolding: tuple[int, ...] = DEFAULT_SUBFOLDING,
) -> str:
    """Return the key, below the store location, of one tracked object (DataJoint 0.14).

    Parameters
    ----------
    schema
        The schema (database) that tracks the object.
    digest
        The tracking row's 16-byte ``hash``, or its 32 hex digits.
    attachment_name
        The row's ``attachment_name``: an attachment's key ends in ``.<name>``.
    filepath
        The row's ``filepath``: a filepath object keeps its own relative path.
    subfolding
        The store's subfolding, e.g. ``(2, 2)``.

    Returns
    -------
    str
        For example ``lab/18/28/18285198e5f67356fd7ad37635720e23``.
    """
    if filepath and not attachment_name:
        return filepath
    hexdigest = digest if isinstance(digest, str) else digest.hex()
    key = "/".join([schema, *folds(hexdigest, subfolding), hexdigest])
    return f"{key}.{attachment_name}" if attachment_name else key


def managed_hash(name: str, subfolding: tuple[int, ...]) -> str | None:
    """Return the hash of a DataJoint-managed object name, or ``None`` for anything else.

    Parameters
    ----------
    name
        The key below the schema folder, e.g. ``ab/cd/abcd...`` or ``ab/cd/abcd....notes.txt``.
    subfolding
        The store's subfolding, e.g. ``(2, 2)``.

    Returns
    -------
    str or None
        The 32 lowercase hex digits, when the name has exactly the managed shape.
        Temporary files (``<hash>.saving`` from a blob write, ``*.copying`` from an
        attachment copy) and names with control characters are not managed.
    """
    match = _shape(subfolding).fullmatch(name)
    if match is None:
        return None
    digest, attachment = match.group(len(subfolding) + 1, len(subfolding) + 2)
    if attachment is not None and (
        not attachment
        or attachment in _TEMP_NAMES
        or attachment.endswith(TEMP_SUFFIXES)
        or not attachment.isprintable()
    ):
        return None
    return str(digest)


def key_digest(key: str) -> bytes:
    """Return the 16-byte hash in a managed object key (its name before any attachment suffix)."""
    return bytes.fromhex(key.rpartition("/")[2].partition(".")[0])


@functools.lru_cache(maxsize=8)
def _shape(subfolding: tuple[int, ...]) -> re.Pattern[str]:
    """Compile the managed-name pattern; back-references tie each fold to the hash prefix."""
    fold_groups = "".join(f"([0-9a-f]{{{width}}})/" for width in subfolding)
    prefix = "".join(f"\\{number}" for number in range(1, len(subfolding) + 1))
    rest = HASH_HEX_DIGITS - sum(subfolding)
    return re.compile(f"{fold_groups}({prefix}[0-9a-f]{{{rest}}})(?:\\.([^/]*))?")


# ---- DataJoint 2.x ------------------------------------------------------------------------
# The 2.x layouts (issue "DataJoint 2.x stores") are added here, beside the 0.14 rules
# above, so that both tools keep reading one module for every naming rule.


# ----------------------------------------------------------------------------------------
# DataJoint 2.x
# ----------------------------------------------------------------------------------------

DJ2_HASH_PREFIX = "_hash"
"""The default ``hash_prefix`` of a 2.x store: ``<blob@>``, ``<attach@>``, ``<hash@>``."""
DJ2_SCHEMA_PREFIX = "_schema"
"""The default ``schema_prefix`` of a 2.x store: ``<object@>``, ``<npy@>``."""
DJ2_MANIFEST = ".manifest.json"
"""The suffix of a folder object's sidecar, written next to the folder."""
DJ2_HASH = re.compile(r"[a-z2-7]{26}")
"""A 2.x content hash: the MD5 of the stored bytes in lowercase base32, unpadded."""
DJ2_SCHEMA_NAME = re.compile(
    r"[#_]{0,2}[a-z][a-z0-9_]*"  # the table, as MySQL or PostgreSQL names it (rec, _imp, #look)
    r"(?:/[a-z_][a-z0-9_]*=[^/]*)+"  # one folder per primary-key attribute, attr=value
    r"/[a-z_][a-z0-9_]*_[A-Za-z0-9_-]{4,16}(?:\.[^/]*)?"  # field_token[.ext], .manifest.json
    r"(?:/.+)?"  # the files of a folder object
)
"""A key below ``{schema_prefix}/{schema}/`` of the shape DataJoint 2.x writes there
(``storage.build_object_path``: the token is 4 to 16 characters of ``[A-Za-z0-9_-]``)."""
DJ2_CODEC_COMMENT = re.compile(r"^:<([^>@]+)(?:@([^>]*))?>:")
"""A 2.x column comment that names a codec, e.g. ``:<blob@raw>:``; groups codec, store."""


def dj2_codec(comment: str) -> tuple[str, str | None] | None:
    """Return ``(codec, store)`` of a 2.x column comment such as ``:<blob@raw>:``, else ``None``.

    ``store`` is ``None`` for a codec without ``@``, and ``""`` for ``<blob@>``.
    """
    match = DJ2_CODEC_COMMENT.match(comment or "")
    return None if match is None else (match.group(1), match.group(2))


def dj2_hash_key(
    schema: str, content_hash: str, subfolding: tuple[int, ...] = (), prefix: str = DJ2_HASH_PREFIX
) -> str:
    """Return a 2.x hash-addressed key: ``{prefix}/{schema}/[folds/]{hash}``.

    The folds are the hash's own leading characters, cut by the store's subfolding
    (none by default in 2.x).
    """
    folds, start = [], 0
    for width in subfolding:
        folds.append(content_hash[start : start + width])
        start += width
    return "/".join([prefix.strip("/"), schema, *folds, content_hash])


def is_dj2_hash_name(rest: str, subfolding: tuple[int, ...]) -> bool:
    """Return whether ``rest``, a key below ``{prefix}/{schema}/``, is ``[folds/]hash``."""
    parts = rest.split("/")
    if len(parts) != len(subfolding) + 1 or not DJ2_HASH.fullmatch(parts[-1]):
        return False
    return rest == dj2_hash_key("x", parts[-1], subfolding, "x")[4:]


def is_dj2_schema_name(rest: str) -> bool:
    """Return whether ``rest``, a key below ``{schema_prefix}/{schema}/``, has DataJoint's shape.

    That is ``{table}/{attr=value}/.../{field}_{token}{ext}``, with at least one key
    folder, or a file inside such a folder object, or its ``.manifest.json``. A file
    directly in the schema's or a table's folder is not: DataJoint never writes one.
    """
    return DJ2_SCHEMA_NAME.fullmatch(rest) is not None


def dj2_covers(path: str, key: str) -> bool:
    """Return whether a referenced ``path`` covers a stored ``key``.

    It does when the key is the path, lies under ``path/`` (a folder object's files),
    or is ``path.manifest.json`` (its sidecar).
    """
    return key == path or key.startswith(path + "/") or key == path + DJ2_MANIFEST


def dj2_coverers(key: str) -> list[str]:
    """Return every path that would cover ``key``: itself, its manifest's base, its ancestors."""
    found = [key]
    if key.endswith(DJ2_MANIFEST):
        found.append(key[: -len(DJ2_MANIFEST)])
    index = key.rfind("/")
    while index > 0:
        found.append(key[:index])
        index = key.rfind("/", 0, index)
    return found
