"""keyroll: keeps the credentials of a self-hosted stack fresh, and never loses one."""

from __future__ import annotations

__version__ = "0.1.0"
