"""Every ```toml block of README.md and docs/*.md is accepted by `keyroll config validate --static`.

A newcomer copies these snippets into a config: an option name the schema does not know, or a required key the
snippet leaves out, must fail here rather than on their machine.  A block that is a fragment (it names a target
or a store declared elsewhere in the text) is validated with the least context the surrounding prose gives it,
declared in CONTEXT; every other block is validated exactly as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```toml\n(.*?)^```", re.S | re.M)

# A distinctive line of a fragment -> (TOML before it, TOML after it), from the prose around it.
CONTEXT: dict[str, tuple[str, str]] = {
    # README "Strategies": the two targets, and the secrets that use them.
    'alternate_user = "aidb_clone"': (
        "",
        '\n[secrets.aidb_db_user]\nkind = "username"\n\n[secrets.postgres_password]\ntarget = "pg_aidb"\n'
        '\n[secrets.app_db_password]\ntarget = "maria"\n',
    ),
    # README "GitOps": the bundle needs the SOPS store, as the comment says.
    "the SOPS bundle as stored": ('[store]\nkind = "sops"\n\n', ""),
    # docs/gitops.md "Configuration": the target [targets.pg] of README "Live services".
    "the fleet has it: health-check syntax": ("", '\n[targets.pg]\ntype = "postgres"\nuser = "stack"\n'),
    # docs/kubernetes.md "Login names": the alternating target of README "Strategies".
    'kubernetes = ["aidb-db/username"]': (
        '[targets.pg_aidb]\ntype = "postgres"\nuser = "aidb"\nadmin_user = "keyroll_admin"\n'
        'strategy = "alternating"\nusername_secret = "aidb_db_user"\n\n',
        "",
    ),
    # docs/recipes.md: the apply/verify pair of a Grafana user changing its own password, inside its target.
    'oldPassword = "{old}"': (
        '[targets.grafana_self]\ntype = "http"\nbase_url = "http://127.0.0.1:3000"\n',
        '\n[secrets.grafana_app_password]\ntarget = "grafana_self"\n',
    ),
}


def snippets() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in BLOCK.finditer(text):
            line = text[: match.start()].count("\n") + 1
            found.append((f"{doc.relative_to(ROOT)}:{line}", match.group(1)))
    return found


def with_context(snippet: str) -> str:
    for marker, (before, after) in CONTEXT.items():
        if marker in snippet:
            return before + snippet + after
    return snippet


def test_the_docs_have_toml_snippets() -> None:
    found = snippets()
    assert len(found) >= 15
    assert all(any(marker in text for _, text in found) for marker in CONTEXT), "a CONTEXT marker matches no block"


@pytest.mark.parametrize(("where", "snippet"), snippets(), ids=[where for where, _ in snippets()])
def test_every_toml_snippet_passes_static_validation(where: str, snippet: str, home, kr) -> None:  # type: ignore[no-untyped-def]
    config = home.write_config(with_context(snippet))
    result = kr("--config", str(config), "config", "validate", "--static")
    assert result.code == 0, f"{where}: {result.both}"
