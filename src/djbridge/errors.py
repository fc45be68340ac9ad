"""The exceptions djbridge raises, one shallow hierarchy for both tools.

Library errors (PyMySQL, minio, the filesystem) are translated at the boundary
where they happen, with ``raise ... from err``, so the original cause stays
attached while callers only need to know these classes. Every message names
the thing that is wrong: the TOML key, the server, the schema, the store.

The command-line tools map them to exit codes: :class:`ConfigError` is a usage
error (exit 2); everything else under :class:`DjBridgeError` is a failed run.

    from djbridge.errors import ConfigError
    try:
        load_config(path)
    except ConfigError as err:
        print(f"configuration error: {err}")
"""

from __future__ import annotations


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


class IntegrityError(DjBridgeError):
    """Copied data does not match what the source records (size or checksum)."""


class UnsafeToDelete(DjBridgeError):
    """A safety check failed, so nothing was deleted."""


class LinkError(DjBridgeError):
    """A link between two servers cannot be set up or cannot proceed."""


class MissingCredentials(ConfigError):
    """A required credential (for example ``LINK_USER`` or ``LINK_PASS``) is not set."""
