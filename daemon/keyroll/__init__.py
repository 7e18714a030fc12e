"""keyroll: keeps the credentials of a self-hosted stack fresh, and never loses one.

Its modules form layers, written down once in `keyroll.layers` and held by a test.
"""

from __future__ import annotations

__version__ = "0.1.0"
