"""djbridge: operations tooling for DataJoint labs.

Two tools stand on one shared core:

* ``dj-cleaner`` (:mod:`djbridge.cleaner`) reclaims objects in DataJoint external
  stores that no ``~external_<store>`` row references, and never deletes a live one;
* ``link`` (:mod:`djbridge.link`, importable as ``from link import link``) mirrors
  table rows from one lab's database server to another's.

The core: :mod:`djbridge.config` (server settings), :mod:`djbridge.mysql`
(connections and SQL), :mod:`djbridge.stores` (S3 and file object stores),
:mod:`djbridge.progress` (bars) and :mod:`djbridge.errors`.

    import djbridge
    djbridge.__version__
"""

from __future__ import annotations

__version__ = "0.1.0"
