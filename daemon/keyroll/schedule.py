"""Schedules, windows, durations and due times, with no heavy imports.

A schedule is a calendar word (`daily`, `weekly`, `monthly`, `quarterly`,
`yearly`), a cron expression (`cron:MIN HOUR DOM MON DOW`), or an interval
(`90d`, `12h`).  A secret's next due time counts from its last rotation; an
optional window (`Sun 02:00-05:00`) moves it to the next time inside the
window, and jitter adds a random delay that stays the same across restarts.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

from keyroll.records import record

_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
CALENDAR_MONTHS = {"monthly": 1, "quarterly": 3, "yearly": 12}
CALENDAR_DAYS = {"daily": 1, "weekly": 7}
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


class ScheduleError(ValueError):
    """A schedule, window or duration that cannot be parsed (message says why)."""


_durations: dict[str, timedelta] = {}


LONGEST_DURATION = 36525 * 86400  # 100 years: far beyond any policy, and far from datetime's limits


def parse_duration(text: str) -> timedelta:
    """`<number><s|m|h|d>` as a timedelta; `0s` is allowed."""
    if text in _durations:
        return _durations[text]
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ScheduleError(f"{text!r} is not a duration like 30s, 10m, 12h or 90d")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > LONGEST_DURATION:
        raise ScheduleError(f"{text!r} is longer than 100 years")
    _durations[text] = timedelta(seconds=seconds)
    return _durations[text]


def format_duration(delta: timedelta) -> str:
    """A short human form: 3d, 5h, 12m, 40s (negative values get a leading '-')."""
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{sign}{seconds // size}{unit}"
    return f"{sign}{seconds}s"


def days_in_month(year: int, month: int) -> int:
    """28 to 31, as the Gregorian calendar says (without importing `calendar`, which loads `locale`)."""
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` plus whole calendar months, clamping the day (Jan 31 + 1 month = Feb 28/29)."""
    month_index = moment.month - 1 + months
    year = moment.year + month_index // 12
    month = month_index % 12 + 1
    day = min(moment.day, days_in_month(year, month))
    return moment.replace(year=year, month=month, day=day)


# --- cron ---------------------------------------------------------------------------


_MONTH_NUMBERS = {name: i + 1 for i, name in enumerate(MONTH_NAMES)}
_WEEKDAY_NUMBERS = {name: i + 1 for i, name in enumerate(DAY_NAMES)}  # mon=1 ... sun=7


def _cron_field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    """The set of values a cron field (`*`, `*/n`, `a-b`, `a,b`, `a-b/n`, names) matches."""

    def number(token: str) -> int:
        if names and token in names:
            return names[token]
        if not token.isdigit():
            raise ScheduleError(f"{token!r} is not a number")
        return int(token)

    values: set[int] = set()
    for part in text.lower().split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"bad step {step_text!r}")
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = number(first), number(last)
        else:
            start = number(part)
            end = high if step > 1 else start
        if not (low <= start <= end <= high):
            raise ScheduleError(f"{part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@record(frozen=True)
class Cron:
    """A five-field cron expression: minute hour day-of-month month day-of-week."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 1 = Monday ... 7 = Sunday (0 is accepted as Sunday)
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        fields = text.split()
        if len(fields) != 5:
            raise ScheduleError(f"cron {text!r} needs 5 fields (minute hour day month weekday)")
        minute, hour, day, month, weekday = fields
        weekdays = {7 if d == 0 else d for d in _cron_field(weekday, 0, 7, _WEEKDAY_NUMBERS)}
        return cls(
            _cron_field(minute, 0, 59),
            _cron_field(hour, 0, 23),
            _cron_field(day, 1, 31),
            _cron_field(month, 1, 12, _MONTH_NUMBERS),
            frozenset(weekdays),
            day == "*",
            weekday == "*",
        )

    def _day_matches(self, moment: datetime) -> bool:
        day_ok = moment.day in self.days
        weekday_ok = moment.isoweekday() in self.weekdays
        if self.any_day or self.any_weekday:
            return day_ok and weekday_ok
        return day_ok or weekday_ok  # classic cron: either restriction matches

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after `moment` (within 5 years)."""
        candidate = (moment + timedelta(minutes=1)).replace(second=0, microsecond=0)
        limit = moment + timedelta(days=366 * 5)
        while candidate <= limit:
            if candidate.month not in self.months:
                candidate = add_months(candidate.replace(day=1, hour=0, minute=0), 1)
                continue
            if not self._day_matches(candidate):
                candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if candidate.hour not in self.hours:
                candidate = (candidate + timedelta(hours=1)).replace(minute=0)
                continue
            if candidate.minute not in self.minutes:
                candidate += timedelta(minutes=1)
                continue
            return candidate
        raise ScheduleError("cron expression never matches")


# --- schedules and windows ---------------------------------------------------------


@record(frozen=True)
class Schedule:
    """When a secret is due again after its last rotation."""

    text: str
    months: int = 0
    interval: timedelta | None = None
    cron: Cron | None = None

    @classmethod
    def parse(cls, text: str) -> Schedule:
        if text not in _schedules:
            _schedules[text] = cls._parse(text)
        return _schedules[text]

    @classmethod
    def _parse(cls, text: str) -> Schedule:
        word = text.strip().lower()
        if word in CALENDAR_MONTHS:
            return cls(text, months=CALENDAR_MONTHS[word])
        if word in CALENDAR_DAYS:
            return cls(text, interval=timedelta(days=CALENDAR_DAYS[word]))
        if word.startswith("cron:"):
            return cls(text, cron=Cron.parse(word.removeprefix("cron:")))
        try:
            interval = parse_duration(word)
        except ScheduleError as exc:
            if _DURATION.fullmatch(word):  # a duration, but too long: say so
                raise exc from None
            raise ScheduleError(
                f"{text!r} is not a schedule: use daily, weekly, monthly, quarterly, yearly, "
                "'cron:MIN HOUR DAY MONTH WEEKDAY' or an interval like 90d"
            ) from None
        if interval.total_seconds() <= 0:
            raise ScheduleError(f"{text!r}: an interval must be longer than 0s")
        return cls(text, interval=interval)

    def next_after(self, last: datetime) -> datetime:
        if self.cron is not None:
            return self.cron.next_after(last)
        if self.months:
            return add_months(last, self.months)
        assert self.interval is not None
        return last + self.interval


_schedules: dict[str, Schedule] = {}


@record(frozen=True)
class Window:
    """Days of the week and a time range (UTC) in which scheduled rotations may start."""

    text: str
    weekdays: frozenset[int]  # 0 = Monday
    start: time
    end: time

    _PATTERN = re.compile(r"^(?:(?P<days>[A-Za-z,\-]+)\s+)?(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})$")

    @classmethod
    def parse(cls, text: str) -> Window | None:
        if not text.strip():
            return None
        match = cls._PATTERN.match(text.strip())
        if not match:
            raise ScheduleError(f"{text!r} is not a window like 'Sun 02:00-05:00' or 'Mon-Fri 01:00-04:00'")
        days: set[int] = set()
        for part in (match.group("days") or "mon-sun").lower().split(","):
            ends = part.split("-")
            try:
                indexes = [DAY_NAMES.index(e[:3]) for e in ends]
            except ValueError:
                raise ScheduleError(f"{text!r}: {part!r} is not a day (Mon..Sun)") from None
            if len(indexes) == 1:
                days.add(indexes[0])
            else:
                first, last = indexes[0], indexes[-1]
                day = first
                while True:
                    days.add(day)
                    if day == last:
                        break
                    day = (day + 1) % 7

        def clock(value: str) -> time:
            hour, minute = (int(x) for x in value.split(":"))
            if hour > 24 or minute > 59 or (hour == 24 and minute):
                raise ScheduleError(f"{text!r}: {value} is not a time of day")
            return time(0, 0) if hour == 24 else time(hour, minute)

        start, end = clock(match.group("start")), clock(match.group("end"))
        if start == end:
            raise ScheduleError(f"{text!r}: the window is empty")
        return cls(text, frozenset(days), start, end)

    def contains(self, moment: datetime) -> bool:
        now = moment.time().replace(tzinfo=None)
        if self.start < self.end:
            return moment.weekday() in self.weekdays and self.start <= now < self.end
        # Crosses midnight: the part after midnight belongs to the previous day.
        if now >= self.start:
            return moment.weekday() in self.weekdays
        return now < self.end and (moment.weekday() - 1) % 7 in self.weekdays

    def remaining(self, moment: datetime) -> timedelta:
        """How long the window stays open after `moment` (zero if it is closed)."""
        if not self.contains(moment):
            return timedelta(0)
        end = datetime.combine(moment.date(), self.end, tzinfo=moment.tzinfo)
        if end <= moment:
            end += timedelta(days=1)
        return end - moment - timedelta(seconds=1)

    def next_open(self, moment: datetime) -> datetime:
        """`moment` if it lies in the window, else the next start of the window."""
        if self.contains(moment):
            return moment
        for offset in range(0, 8):
            day = (moment + timedelta(days=offset)).date()
            start = datetime.combine(day, self.start, tzinfo=moment.tzinfo)
            if start > moment and start.weekday() in self.weekdays:
                return start
        raise ScheduleError("window never opens")  # unreachable: at least one day is set


def jitter_offset(name: str, last: datetime, jitter: timedelta) -> timedelta:
    """A delay in [0, jitter) that depends only on the secret and its last rotation,
    so a restarted daemon computes the same due time."""
    if jitter.total_seconds() <= 0:
        return timedelta(0)
    from keyroll.digest import sha256

    digest = sha256(f"{name}|{last.isoformat()}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return timedelta(seconds=int(jitter.total_seconds() * fraction))


def next_due(
    name: str,
    last: datetime,
    schedule: Schedule,
    window: Window | None = None,
    jitter: timedelta = timedelta(0),
) -> datetime:
    """When `name`, last rotated at `last`, is next due: the schedule's time plus its
    jitter; with a window, the first moment inside it plus the jitter, kept inside
    the window (so many secrets due at once still spread over it)."""
    due = schedule.next_after(last)
    if window is None:
        return due + jitter_offset(name, last, jitter)
    opens = window.next_open(due)
    room = window.remaining(opens)
    return opens + jitter_offset(name, last, min(jitter, room))


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    """UTC ISO-8601 with a Z, to the second: the one time format keyroll writes."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text: str) -> datetime:
    """Parse what `to_iso` wrote (and other ISO-8601 forms); naive times are UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
