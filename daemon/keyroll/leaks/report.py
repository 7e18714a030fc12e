"""What a leak scan reports: findings (never a value), the paths read, errors."""

from __future__ import annotations

from keyroll.errors import KeyrollError
from keyroll.records import field, record

LIVE, RETIRED = "live", "retired"


class LeakScanError(KeyrollError):
    """A path that cannot be scanned (unreadable, or refused by git): exit 2."""

    exit_code = 2


@record(frozen=True)
class CommitPath:
    """A commit that adds or changes a path to a blob that holds a value."""

    commit: str
    path: str
    date: str


@record
class Finding:
    """One managed value found in one place.  Never the value, never a hash of it."""

    secret: str
    status: str  # live | retired
    state: str  # current, pending, previous (not yet retired), retired
    encoding: str  # raw, base64, base64url, url, hex, HEX
    repository: str  # the repository or folder scanned
    source: str  # object | work tree | git dir | file | staged
    where: str  # refs | stash | reflog only | unreachable | index | work tree | git dir | staged | file
    object: str | None = None
    object_type: str | None = None  # blob | tree | commit | tag
    path: str | None = None
    lines: list[int] = field(default_factory=list)
    binary: bool = False
    name: bool = False  # the value is in the file's name (`path`, shown masked), not its content
    refs: list[str] = field(default_factory=list)
    commits: list[CommitPath] = field(default_factory=list)
    first_commit: str | None = None
    last_commit: str | None = None
    removed_in: list[str] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.status == LIVE


@record
class Scanned:
    """One path given to the scan, and how much was read there."""

    path: str
    kind: str  # repository | bare repository | folder | file | staged
    objects: int = 0
    files: int = 0
    bytes: int = 0


@record
class ScanReport:
    findings: list[Finding] = field(default_factory=list)
    scanned: list[Scanned] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one line each: a path or file that could not be read
    notes: list[str] = field(default_factory=list)  # one line each: what a repository cannot hold (shallow, partial)
    values: int = 0  # distinct values searched for
    patterns: int = 0  # byte patterns (values and their encodings)
    seconds: float = 0.0

    @property
    def live(self) -> list[Finding]:
        return [f for f in self.findings if f.live]

    @property
    def retired(self) -> list[Finding]:
        return [f for f in self.findings if not f.live]
