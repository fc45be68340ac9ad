"""Keep Python's garbage collector off the objects a long run never frees.

A pull or a migration runs in a process that has already imported DataJoint,
NumPy and a database driver: hundreds of thousands of objects that live as long
as the process. CPython's collector examines every tracked object on each full
collection, and a batch engine allocates enough small objects (rows, JSON
documents, copy records) to start one every few thousand rows. On the 2.x link's
benchmark (1,000 rows, 3,000 small objects) those collections were a fifth of the
pull.

:func:`settled` moves everything alive when the run starts into the collector's
permanent generation (``gc.freeze``) and back into the oldest one
(``gc.unfreeze``) when it ends. Nothing is kept longer than the run: garbage the
run makes is collected as usual, and what was frozen is examined again afterwards.

    with settled():
        engine.run(keys)
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def settled() -> Iterator[None]:
    """Freeze the objects alive now for the duration of the ``with`` block."""
    gc.collect(0)  # the young generation's garbage is not worth keeping out of reach
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
