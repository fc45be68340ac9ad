"""The exceptions djbridge raises, one shallow hierarchy for both tools.

Library errors (PyMySQL, minio, the filesystem) are translated at the boundary
where they happen, with ``raise ... from err``, so the original cause stays
attached while callers only need to know these classes. Every message names
the thing that is wrong: the TOML key, the server, the schema, the store.

Secrets never enter a message that djbridge writes itself. Text that comes from
a library (an exception's message, a server's reply) may echo one, so it passes
through :func:`redact` where it is translated; :func:`redact` masks only whole
occurrences, so a name such as ``lab_djx`` survives a password ``dj``.

The command-line tools map them to exit codes: :class:`ConfigError` is a usage
error (exit 2); everything else under :class:`DjBridgeError` is a failed run.

    from djbridge.errors import ConfigError
    try:
        load_config(path)
    except ConfigError as err:
        print(f"configuration error: {err}")
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NAME_CHARACTER = "A-Za-z0-9_$-"  # what schema, store, bucket and table names are made of


def redact(text: str, secrets: Iterable[str]) -> str:
    """Mask every whole occurrence of a secret in library text with ``***``.

    An occurrence counts only when no name character (letter, digit, ``_``, ``$``
    or ``-``) touches it on either side, so the secret ``dj`` is masked in
    ``password 'dj'`` but not in ``lab_djx`` or ``dj-cleaner``.

    Parameters
    ----------
    text
        A message that came from a library or a server.
    secrets
        Passwords and secret keys; empty strings are ignored.

    Returns
    -------
    str
        ``text`` with the secrets masked, otherwise unchanged.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        pattern = rf"(?<![{_NAME_CHARACTER}]){re.escape(secret)}(?![{_NAME_CHARACTER}])"
        text = re.sub(pattern, "***", text)
    return text


class DjBridgeError(Exception):
    """Base class of every error that djbridge raises on purpose."""


class ConfigError(DjBridgeError):
    """The configuration, an argument or an environment variable is invalid."""


class DatabaseError(DjBridgeError):
    """A database server could not be reached or refused a statement."""


class StoreError(DjBridgeError):
    """An object store could not be reached or refused an operation."""


class ObjectNotFound(StoreError, FileNotFoundError):
    """An object that should exist in a store is absent."""


class SourceMismatch(StoreError):
    """A server-side copy's condition on the source's contents failed: copy it through."""


class IntegrityError(DjBridgeError):
    """Copied data does not match what the source records (size or checksum)."""


class UnsafeToDelete(DjBridgeError):
    """A safety check failed, so nothing was deleted."""


class LinkError(DjBridgeError):
    """A link between two servers cannot be set up or cannot proceed."""


class MissingCredentials(ConfigError):
    """A required credential (for example ``LINK_USER`` or ``LINK_PASS``) is not set."""


class UnsupportedDataJoint(ConfigError):
    """The installed DataJoint is a version that this part of djbridge does not support yet."""
