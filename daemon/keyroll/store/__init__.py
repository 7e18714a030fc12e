"""Where secret values live, behind one interface: a folder of files, or a SOPS bundle."""

from __future__ import annotations

from keyroll.store.base import EntryInfo as EntryInfo  # (the interface lives in store.base)

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from keyroll.config.policy import Policy
    from keyroll.store.base import Store as Store


def open_store(policy: Policy) -> Store:
    """The store the policy names."""
    if policy.store.kind == "sops":
        from keyroll.store.sops import SopsStore

        return SopsStore(policy)
    from keyroll.store.directory import DirectoryStore

    return DirectoryStore(policy.paths.secrets_dir)
