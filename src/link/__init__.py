"""The import name of datajoint-link, kept so existing code runs unchanged.

``from link import link`` gives :func:`djbridge.link.link`, the same decorator
with the same arguments; see that module for how it works.

    from link import link
"""

from djbridge.link import link

__all__ = ["link"]
