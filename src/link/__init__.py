"""The import name of datajoint-link, kept so existing code runs unchanged.

``from link import link`` gives :func:`djbridge.link.link`, the same decorator
with the same arguments; see that module for how it works. Importing it needs no
DataJoint, so it imports beside DataJoint 2.x as well; there, decorating a class
raises :class:`djbridge.errors.UnsupportedDataJoint` until the link supports 2.x.

    from link import link
"""

from djbridge.link import link

__all__ = ["link"]
