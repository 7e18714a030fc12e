"""keyroll: keeps the credentials of a self-hosted stack fresh, and never loses one.

Its modules form layers (cli -> daemon -> actions -> rotation -> services -> config ->
helpers -> base), written down once in `keyroll.layers` and held by a test.
"""

from __future__ import annotations

__version__ = "0.1.0"
