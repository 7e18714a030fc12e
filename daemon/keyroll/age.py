"""age helpers (pyrage): recipients, identities, and encrypting bytes to them.

Used for encrypted backups (`[backup] encrypt_to`) and, under
REQUIRE_ENCRYPTED_SECRETS, for the journal's pending values.  pyrage is
imported only when something is encrypted or decrypted, so that commands on a
plain directory store never load it.

Where the identity comes from (first found wins):

1. `$SOPS_AGE_KEY_FILE` (the variable sops itself reads);
2. `[store] age_key_file` (a path relative to the config's folder, or `credential:NAME`);
3. the systemd credential `$CREDENTIALS_DIRECTORY/age-key`;
4. sops' own default, `$XDG_CONFIG_HOME/sops/age/keys.txt` (`~/.config/sops/age/keys.txt`).

The first two must exist when set; the last two are used only when present.
An identity file may hold several identities (one `AGE-SECRET-KEY-1...` a line;
`#` comments and blank lines are skipped), so an old and a new key can be held
side by side while recipients change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyroll.errors import ConfigError, StoreError
from keyroll.recipients import IDENTITY_PREFIX, recipient_problem

if TYPE_CHECKING:
    from keyroll.config.policy import Policy

# Bech32: "age1" and 58 characters of its data alphabet (no 1, b, i, o).
RECIPIENT_IN_TEXT = re.compile(r"(?<![0-9a-z])age1[02-9ac-hj-np-z]{58}(?![0-9a-z])")
CREDENTIAL_NAME = "age-key"
ENV_KEY_FILE = "SOPS_AGE_KEY_FILE"
INSTALL_HINT = "pip install 'keyroll[age]'"


def _pyrage() -> Any:
    try:
        import pyrage
    except ImportError:
        raise StoreError(f"pyrage is not installed (needed for age encryption): {INSTALL_HINT}") from None
    return pyrage


def recipients_in(text: str) -> list[str]:
    """Every age recipient written in `text`, in order, without repeats."""
    return list(dict.fromkeys(RECIPIENT_IN_TEXT.findall(text)))


def parse_recipients(values: Sequence[str], where: str) -> list[Any]:
    """pyrage recipients for `values`; ConfigError naming `where` and the bad one."""
    pyrage = _pyrage()
    parsed = []
    for value in values:
        problem = recipient_problem(value)
        if problem is None:
            try:
                parsed.append(pyrage.x25519.Recipient.from_str(value.strip()))
                continue
            except Exception:
                problem = f"{value[:12]!r}... is not a valid age recipient"
        raise ConfigError(f"{where}: {problem}")
    if not parsed:
        raise ConfigError(f"{where}: no age recipient given")
    return parsed


def identity_file(
    env: Mapping[str, str], configured: str = "", base: Path | None = None, *, required: bool = False
) -> Path | None:
    """The age identity file to use (see the module docstring for the order); None
    when there is none (StoreError then, if `required`)."""
    from keyroll.paths import resolve_config_path

    explicit = env.get(ENV_KEY_FILE, "")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.exists():
            raise ConfigError(f"{path}: age identity file not found (from ${ENV_KEY_FILE})")
        return path
    if configured:
        path = resolve_config_path(configured, base, key="store.age_key_file", env=env)
        if not path.exists():
            raise ConfigError(f"{path}: age identity file not found (from store.age_key_file)")
        return path
    candidates = []
    if env.get("CREDENTIALS_DIRECTORY"):
        candidates.append(Path(env["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME)
    config_home = env.get("XDG_CONFIG_HOME") or (str(Path(env["HOME"]) / ".config") if env.get("HOME") else "")
    if config_home:
        candidates.append(Path(config_home) / "sops" / "age" / "keys.txt")
    for path in candidates:
        if path.exists():
            return path
    if required:
        raise StoreError(no_identity_message())
    return None


def no_identity_message() -> str:
    return (
        f"no age identity found: set ${ENV_KEY_FILE}, [store] age_key_file, or the systemd credential {CREDENTIAL_NAME}"
    )


def policy_identity_file(policy: Policy, *, required: bool = False) -> Path | None:
    """`identity_file` for a policy's environment and `[store] age_key_file`."""
    return identity_file(policy.env, policy.store.age_key_file, policy.config_dir, required=required)


def identity_lines(path: Path) -> list[str]:
    """The `AGE-SECRET-KEY-1...` lines of an identity file; StoreError when it has none."""
    from keyroll.fsutil import describe_os_error

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise StoreError(f"{path}: not an age identity file (not UTF-8 text)") from None
    except OSError as exc:
        raise StoreError(describe_os_error(path, exc)) from None
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith(IDENTITY_PREFIX)]
    if not lines:
        raise StoreError(f"{path}: holds no age identity (AGE-SECRET-KEY-1...)")
    return lines


def load_identities(path: Path) -> list[Any]:
    """pyrage identities from an identity file."""
    pyrage = _pyrage()
    identities = []
    for number, line in enumerate(identity_lines(path), 1):
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except Exception:
            raise StoreError(f"{path}: identity {number} is not a valid age secret key") from None
    return identities


def public_keys(path: Path) -> set[str] | None:
    """The recipients (age1...) of the identities in `path`: derived with pyrage, or
    read from age-keygen's `# public key:` comments when pyrage is missing; None
    when neither is possible."""
    try:
        identities = load_identities(path)
    except StoreError:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        keys = {m.group(1) for m in re.finditer(r"#\s*public key:\s*(age1\S+)", text)}
        return keys or None
    return {str(identity.to_public()) for identity in identities}


def encrypt(data: bytes, recipients: Sequence[Any]) -> bytes:
    """`data` encrypted (binary age format) to every recipient."""
    pyrage = _pyrage()
    return bytes(pyrage.encrypt(data, list(recipients)))


def decrypt(data: bytes, identities: Sequence[Any], where: str) -> bytes:
    """`data` decrypted with the first identity that matches; StoreError naming `where`."""
    pyrage = _pyrage()
    try:
        return bytes(pyrage.decrypt(data, list(identities)))
    except pyrage.DecryptError as exc:
        text = str(exc).lower()
        if "no matching keys" in text or "no identity" in text or "did not match" in text:
            raise StoreError(f"{where}: encrypted to other keys; no age identity given matches it") from None
        raise StoreError(f"{where}: cannot be decrypted; the file is damaged or not age-encrypted") from None
    except Exception:
        raise StoreError(f"{where}: cannot be decrypted; the file is damaged or not age-encrypted") from None


def journal_unsealer(policy: Policy, identities: Sequence[Any] | None = None) -> Callable[[bytes], bytes] | None:
    """How the journal reads back in-flight values sealed with age
    (REQUIRE_ENCRYPTED_SECRETS): with `identities` when given, else with those of the
    policy's identity file, loaded on first use; None when there is no such file."""
    where = f"{policy.paths.journal}: an in-flight value"
    if identities is not None:
        given = identities
        return lambda blob: decrypt(blob, given, where)
    identity = policy_identity_file(policy, required=False)
    if identity is None:
        return None
    loaded: list[Any] = []

    def unseal(blob: bytes) -> bytes:
        if not loaded:
            loaded.extend(load_identities(identity))
        return decrypt(blob, loaded, where)

    return unseal
