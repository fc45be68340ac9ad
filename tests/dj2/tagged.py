"""Fetched DataJoint values as tagged JSON, the same way in both interpreters.

DataJoint 0.14 (the test interpreter) and DataJoint 2.x (``.venv-dj2``, through
``tests/dj2/driver.py``) fetch values of many Python types. To compare them, both
sides turn each value into plain JSON with :func:`encode`, which keeps everything a
comparison needs and nothing else:

* numbers: ``int`` as it is (any size), ``float`` as it is (``repr`` round-trips),
  ``Decimal`` as ``{"$decimal": "12.500"}``; ``bool`` as it is;
* text as it is; ``bytes`` (and memoryviews) as ``{"$bytes": base64}``;
* numpy arrays as ``{"$array": [dtype, shape, base64 of the C-order bytes]}``, or
  ``{"$objects": [dtype, shape, [items...]]}`` for object arrays (element by element);
  numpy scalars as ``{"$scalar": [dtype, base64]}``;
* ``dict``, ``list``, ``tuple`` and ``set`` as ``{"$dict": [[k, v], ...]}``,
  ``{"$list": [...]}``, ``{"$tuple": [...]}``, ``{"$set": [sorted items]}``;
* ``datetime`` as ``{"$datetime": iso}``, ``date`` as ``{"$date": iso}``, ``time``
  as ``{"$time": iso}`` and ``timedelta`` as ``{"$timedelta": seconds}`` (a float);
* ``UUID`` as ``{"$uuid": "..."}``;
* a file (an attachment or a filepath) as ``{"$file": [name, base64 of its bytes]}``,
  built by the caller with :func:`file_value`, since only it knows that a string is a
  downloaded path.

This module needs only the standard library and numpy, so the driver imports it as
its sibling and the tests as ``tests.dj2.tagged``.

    from tests.dj2.tagged import encode
    encode(np.arange(3, dtype="int16"))   # {"$array": ["int16", [3], "AAABAAIA"]}
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import uuid
from typing import Any

import numpy as np


def b64(data: bytes) -> str:
    """Return ``data`` as base64 text."""
    return base64.b64encode(bytes(data)).decode("ascii")


def unb64(text: str) -> bytes:
    """Return the bytes of base64 ``text``."""
    return base64.b64decode(text.encode("ascii"))


def file_value(name: str, data: bytes) -> dict[str, Any]:
    """Return the tagged form of a file: its name (or relative path) and its bytes."""
    return {"$file": [name, b64(data)]}


def encode(value: Any) -> Any:
    """Return the tagged JSON form of a fetched value (see the module docstring)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int) and not isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float) and not isinstance(value, np.floating):
        return float(value)
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": b64(bytes(value))}
    if isinstance(value, np.ndarray):
        return _array(value)
    if isinstance(value, np.generic):
        return {"$scalar": [str(value.dtype), b64(np.asarray(value).tobytes())]}
    if isinstance(value, dict):
        return {"$dict": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, list):
        return {"$list": [encode(v) for v in value]}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, set | frozenset):
        return {"$set": sorted((encode(v) for v in value), key=json.dumps)}
    if isinstance(value, datetime.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"$date": value.isoformat()}
    if isinstance(value, datetime.time):
        return {"$time": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {"$timedelta": value.total_seconds()}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    raise TypeError(f"no tagged form for a value of type {type(value).__name__}: {value!r:.80}")


def _array(value: np.ndarray) -> dict[str, Any]:
    shape = list(value.shape)
    if value.dtype.hasobject:
        items = [encode(item) for item in value.ravel(order="C")]
        return {"$objects": [str(value.dtype), shape, items]}
    data = np.ascontiguousarray(value).tobytes()
    return {"$array": [value.dtype.str, shape, b64(data)]}
