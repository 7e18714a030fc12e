"""git as keyroll runs it, for the [gitops] publisher and the leak scanner alike:
the environment (C locale, no prompt, git pointed at no other repository than
the one named) and git's own message of a failure, as one line."""

from __future__ import annotations

from collections.abc import Mapping

# Variables that would point git at another repository, index or object store than the one named.
LOCATION_VARIABLES = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_CEILING_DIRECTORIES",
)
# git's words after any failed connection: the line before them says why.
_BOILERPLATE = frozenset(
    {
        "fatal: Could not read from remote repository.",
        "Please make sure you have the correct access rights",
        "and the repository exists.",
    }
)


def git_environment(base: Mapping[str, str], *, keep_location: bool = False) -> dict[str, str]:
    """`base` for git: C locale (messages keyroll reads), never a terminal prompt and,
    without `keep_location`, none of LOCATION_VARIABLES (a pre-commit hook keeps them)."""
    env = dict(base)
    if not keep_location:
        for name in LOCATION_VARIABLES:
            env.pop(name, None)
    env.update(LC_ALL="C", LANG="C", GIT_TERMINAL_PROMPT="0")
    return env


def git_message(output: bytes | str) -> str:
    """The line of git's output that says why it failed: the first `fatal:`/`error:`
    line, else the last one that is not a hint, a remote's chatter or connection
    boilerplate.  Withheld when it holds part of a value (git quotes paths and
    branch names, and one may be a value: keyroll.outputs.safe_excerpt)."""
    from keyroll.outputs import safe_excerpt

    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("hint:", "To ", "remote: ")) and line not in _BOILERPLATE]
    chosen = next((line for line in useful if line.startswith(("fatal:", "error:"))), None)
    if chosen is None:
        chosen = (useful or lines or [""])[-1]
    return safe_excerpt(chosen) or "git failed"
