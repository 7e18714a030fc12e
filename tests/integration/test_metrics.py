"""`[metrics] textfile`: the Prometheus file node_exporter's textfile collector reads.

keyroll runs as a real command line (in-process `main`, and a real subprocess for the
daemon and the start-up check) against a `command` target: a small program standing in
for the service, which applies and verifies values, refuses them (exit 1) or is down
(exit 75) as the test says.  The file is read back with prometheus_client's own parser,
and with `promtool check metrics` (Debian's prometheus package) where installed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

SERVICE = textwrap.dedent(
    """\
    #!/bin/sh
    # A stand-in service: `mode` says ok, refuse (apply fails: exit 1) or down (exit 75).
    IFS= read -r value || exit 1
    mode=$(cat {root}/mode 2>/dev/null || echo ok)
    case "$mode" in
      refuse) [ "$KEYROLL_PHASE" = apply ] && {{ echo "refused" >&2; exit 1; }} ;;
      down) echo "service down" >&2; exit 75 ;;
    esac
    case "$KEYROLL_PHASE" in
      apply|rollback) printf '%s' "$value" > {root}/accepted ;;
      verify) [ "$(cat {root}/accepted)" = "$value" ] || exit 1 ;;
    esac
    """
)

CONFIG = """
[metrics]
textfile = "{textfile}"
{mode}

[defaults]
schedule = "90d"

[notify]
urls = ["json://notifier:NotifyPassw0rd@127.0.0.1:9/hook?token=NotifyT0ken"]  # (nobody listens: a notice fails)

[secrets.app_key]
kind = "api_key"
target = "svc"
schedule = "{app_schedule}"

[secrets.other_key]
kind = "api_key"
unattended = true

[targets.svc]
type = "command"
argv = ["{root}/svc"]
"""


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the file, keyed by name and sorted labels (parsed by prometheus_client)."""
    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return found[(name, tuple(sorted(labels.items())))]


def result(found: dict, secret: str) -> str:  # type: ignore[type-arg]
    """The one result the state set marks for `secret`."""
    marked = [
        dict(labels)["result"]
        for (name, labels), v in found.items()
        if name == "keyroll_secret_last_result" and dict(labels)["secret"] == secret and v == 1
    ]
    assert len(marked) == 1, marked
    return marked[0]


@pytest.fixture
def metrics_home(home):  # type: ignore[no-untyped-def]
    """A stand-in service, the collector's folder (node_exporter's, made by the test as
    the NixOS module would) and a config writer; returns (cfg args, textfile, mode file)."""
    (home.root / "svc").write_text(SERVICE.format(root=home.root))
    (home.root / "svc").chmod(0o755)
    collector = home.root / "node-exporter"
    collector.mkdir()
    textfile = collector / "keyroll.prom"

    def configure(mode: str = "", app_schedule: str = "90d") -> tuple[str, ...]:
        home.write_config(CONFIG.format(textfile=textfile, mode=mode, root=home.root, app_schedule=app_schedule))
        return ("--config", str(home.config))

    return configure, textfile, home.root / "mode"


def test_success_failure_and_temporary_failure(kr, home, metrics_home) -> None:  # type: ignore[no-untyped-def]
    configure, textfile, mode = metrics_home
    cfg = configure()
    before = time.time()
    assert kr(*cfg, "init").code == 0
    found = samples(textfile)
    assert value(found, "keyroll_build_info", version=__import__("keyroll").__version__) == 1
    assert value(found, "keyroll_up") == 1
    assert value(found, "keyroll_last_run_info", command="init") == 1
    assert value(found, "keyroll_last_run_exit_code") == 0
    assert value(found, "keyroll_last_run_secrets", result="success") == 2
    assert value(found, "keyroll_last_run_secrets", result="failure") == 0
    assert before - 1 <= value(found, "keyroll_last_run_start_timestamp_seconds") <= time.time()
    assert 0 < value(found, "keyroll_last_run_duration_seconds") < 60
    for name in ("app_key", "other_key"):
        assert result(found, name) == "success"
        rotated = value(found, "keyroll_secret_last_rotation_timestamp_seconds", secret=name)
        assert before - 1 <= rotated <= time.time()
        due = value(found, "keyroll_secret_next_due_timestamp_seconds", secret=name)
        assert abs(due - rotated - 90 * 86400) < 2  # schedule = "90d", no jitter
        assert 0 <= value(found, "keyroll_secret_age_seconds", secret=name) < 60
    rotated_at = value(found, "keyroll_secret_last_rotation_timestamp_seconds", secret="app_key")
    assert ("keyroll_last_scheduled_run_start_timestamp_seconds", ()) not in found  # init is not a scheduled run

    # The service refuses the new value: exit 1, and the file says so.
    mode.write_text("refuse")
    refused = kr(*cfg, "rotate", "app_key")
    assert refused.code == 1, refused.both
    found = samples(textfile)
    assert result(found, "app_key") == "failure" and result(found, "other_key") == "success"
    assert value(found, "keyroll_last_run_exit_code") == 1
    assert value(found, "keyroll_last_run_info", command="rotate") == 1
    assert value(found, "keyroll_last_run_secrets", result="failure") == 1
    assert value(found, "keyroll_secret_last_rotation_timestamp_seconds", secret="app_key") == rotated_at

    # The service is down: exit 75, a temporary failure.
    mode.write_text("down")
    down = kr(*cfg, "rotate", "app_key")
    assert down.code == 75, down.both
    found = samples(textfile)
    assert result(found, "app_key") == "temporary_failure"
    assert value(found, "keyroll_last_run_exit_code") == 75
    assert value(found, "keyroll_last_run_secrets", result="temporary_failure") == 1
    assert value(found, "keyroll_last_run_secrets", result="failure") == 0

    # Another writing command keeps what it did not see (the journal keeps the exit code).
    assert kr(*cfg, "backup").code == 0
    found = samples(textfile)
    assert value(found, "keyroll_last_run_info", command="backup") == 1
    assert value(found, "keyroll_last_run_exit_code") == 0
    assert result(found, "app_key") == "temporary_failure"

    # The service is back: success again.
    mode.write_text("ok")
    # The journal keeps whole seconds: start this rotation in a later second than the first one, so that the new
    # timestamp can only be told from the old one if it changed.
    time.sleep(max(0.0, rotated_at + 1 - time.time()))
    started = math.floor(time.time())
    assert started > rotated_at
    assert kr(*cfg, "rotate", "app_key").code == 0
    found = samples(textfile)
    assert result(found, "app_key") == "success"
    assert started <= value(found, "keyroll_secret_last_rotation_timestamp_seconds", secret="app_key") <= time.time()

    # Values, their fingerprints and hashes never appear in it.
    text = textfile.read_text()
    for name in ("app_key", "other_key"):
        assert home.value(name).strip() not in text
    with sqlite3.connect(home.state / "journal.sqlite3") as db:
        prints = [p for row in db.execute("SELECT fingerprint, previous_fingerprint FROM secrets") for p in row if p]
    assert prints and not [p for p in prints if p in text or p[:12] in text]
    # Nor a URL with credentials (the notification URL's user, password and token).
    assert not [part for part in ("NotifyPassw0rd", "NotifyT0ken", "notifier", "json://") if part in text]
    if shutil.which("promtool"):
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_a_lost_file_still_tells_a_temporary_failure_from_a_hard_one(kr, home, metrics_home) -> None:  # type: ignore[no-untyped-def]
    """The file is lost (or metrics are turned on) after a failed attempt: the journal
    keeps the exit code, so a temporary failure (75) does not come back as `failure`
    (which fires the critical alert); `status` and `history` say it was temporary."""
    configure, textfile, mode = metrics_home
    cfg = configure()
    assert kr(*cfg, "init").code == 0
    mode.write_text("down")
    assert kr(*cfg, "rotate", "app_key").code == 75
    textfile.unlink()
    assert kr(*cfg, "backup").code == 0
    assert result(samples(textfile), "app_key") == "temporary_failure"
    assert "failed at" in (shown := kr(*cfg, "status").both) and "(temporary" in shown
    assert "failed (temporary)" in kr(*cfg, "history", "app_key").out
    entry = json.loads(kr(*cfg, "history", "app_key", "--json").out)["data"]["entries"][0]
    assert (entry["outcome"], entry["exit_code"]) == ("failed", 75)

    mode.write_text("refuse")
    assert kr(*cfg, "rotate", "app_key").code == 1
    textfile.unlink()
    assert kr(*cfg, "backup").code == 0
    assert result(samples(textfile), "app_key") == "failure"
    assert "(temporary" not in kr(*cfg, "status").both

    # A journal an older keyroll wrote (no exit codes): read as before, `failed` is a failure.
    mode.write_text("down")
    assert kr(*cfg, "rotate", "app_key").code == 75
    with sqlite3.connect(home.state / "journal.sqlite3") as db:
        db.execute("ALTER TABLE history DROP COLUMN exit_code")
    listed = kr(*cfg, "history", "app_key", "--json")
    assert listed.code == 0, listed.both
    assert json.loads(listed.out)["data"]["entries"][0]["exit_code"] is None
    assert kr(*cfg, "status").code in (0, 1)
    textfile.unlink()
    assert kr(*cfg, "backup").code == 0  # (adds the column back)
    assert result(samples(textfile), "app_key") == "failure"
    with sqlite3.connect(home.state / "journal.sqlite3") as db:
        assert "exit_code" in {row[1] for row in db.execute("PRAGMA table_info(history)")}


def test_a_killed_rotation_that_recovery_undid_stays_a_temporary_failure(kr, krp, home, metrics_home) -> None:  # type: ignore[no-untyped-def]
    """keyroll is SIGKILLed after journalling a rotation, before the service changed;
    `recover` puts the old value back.  The rotation did not happen (retried later),
    nothing is broken: temporary_failure, the same in the file recovery writes and in
    every later one (read back from the journal, even with no previous file)."""
    configure, textfile, _ = metrics_home
    cfg = configure()
    assert kr(*cfg, "init").code == 0
    killed = krp(*cfg, "rotate", "app_key", env={"KEYROLL_FAILPOINT": "create"})
    assert killed.code == -signal.SIGKILL, killed.both
    recovered = kr(*cfg, "recover")
    assert recovered.code == 0 and "rolled back" in recovered.both, recovered.both
    found = samples(textfile)
    assert value(found, "keyroll_last_run_info", command="recover") == 1
    assert value(found, "keyroll_last_run_secrets", result="success") == 1  # the recovery itself succeeded
    assert result(found, "app_key") == "temporary_failure" and result(found, "other_key") == "success"
    assert kr(*cfg, "backup").code == 0
    assert result(samples(textfile), "app_key") == "temporary_failure"
    textfile.unlink()
    assert kr(*cfg, "backup").code == 0
    assert result(samples(textfile), "app_key") == "temporary_failure"
    assert kr(*cfg, "rotate", "app_key").code == 0
    assert result(samples(textfile), "app_key") == "success"


def test_status_after_recovery_of_a_creation_names_what_was_interrupted(kr, home, metrics_home) -> None:  # type: ignore[no-untyped-def]
    """init: the service refuses the value, and there is no previous value to go back
    to, so it stays in flight; `recover` finds the service without the new value and
    drops it.  status and history then say what was interrupted, why, and what recovery
    did (not only "nothing to undo")."""
    configure, _, mode = metrics_home
    cfg = configure()
    mode.write_text("refuse")
    first = kr(*cfg, "init")
    assert first.code == 1 and "left in flight" in first.both, first.both
    mode.write_text("ok")
    recovered = kr(*cfg, "recover")
    assert recovered.code == 0, recovered.both
    shown = kr(*cfg, "status").both
    line = next(x for x in shown.splitlines() if "last init failed" in x)
    assert "interrupted after" in line and "refused" in line and "rolling back failed too" in line, shown
    assert "never took the new value" in line and "nothing to undo" in line
    assert "init interrupted after" in kr(*cfg, "history", "app_key").out
    assert "failed (temporary)" in kr(*cfg, "history", "app_key").out  # (as recovery said: nothing broken)
    assert kr(*cfg, "init").code == 0


def test_scheduled_runs_and_exit_75_from_run(kr, home, metrics_home) -> None:  # type: ignore[no-untyped-def]
    configure, textfile, mode = metrics_home
    cfg = configure(app_schedule="1s")
    assert kr(*cfg, "init").code == 0
    time.sleep(1.1)
    mode.write_text("down")
    started = time.time()
    ran = kr(*cfg, "run")
    assert ran.code == 75, ran.both
    found = samples(textfile)
    assert value(found, "keyroll_last_run_info", command="run") == 1
    assert value(found, "keyroll_last_run_exit_code") == 75
    assert result(found, "app_key") == "temporary_failure"
    scheduled = value(found, "keyroll_last_scheduled_run_start_timestamp_seconds")
    assert started - 1 <= scheduled <= time.time()
    assert value(found, "keyroll_last_scheduled_run_exit_code") == 75
    # A manual command after it keeps the last scheduled run (what the "no run" alert watches).
    assert kr(*cfg, "backup").code == 0
    found = samples(textfile)
    assert value(found, "keyroll_last_run_info", command="backup") == 1
    assert value(found, "keyroll_last_scheduled_run_start_timestamp_seconds") == scheduled
    assert value(found, "keyroll_last_scheduled_run_exit_code") == 75


def test_file_mode_default_and_configured(kr, home, metrics_home) -> None:  # type: ignore[no-untyped-def]
    configure, textfile, _ = metrics_home
    cfg = configure()
    assert kr(*cfg, "init").code == 0  # (under keyroll's umask 077)
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o644
    cfg = configure(mode='mode = "0640"')
    assert kr(*cfg, "backup").code == 0
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o640
    assert not [p.name for p in textfile.parent.iterdir() if p.name != "keyroll.prom"]  # no temp file left
    bad = configure(mode='mode = "0666"')
    refused = kr(*bad, "backup")
    assert refused.code == 2 and "metrics.mode:" in refused.err


def test_a_metrics_problem_is_a_warning_not_the_exit_code(kr, home, metrics_home) -> None:  # type: ignore[no-untyped-def]
    configure, textfile, mode = metrics_home
    cfg = configure()
    textfile.parent.rmdir()  # the collector's folder is gone
    done = kr(*cfg, "init")
    assert done.code == 0, done.both
    assert "keyroll: warning: metrics:" in done.err and "not written" in done.err
    textfile.parent.mkdir()
    textfile.symlink_to(home.root / "elsewhere.prom")  # never written through
    mode.write_text("refuse")
    refused = kr(*cfg, "rotate", "app_key")
    assert refused.code == 1 and "symlink" in refused.err
    assert not (home.root / "elsewhere.prom").exists()


def test_a_full_collector_disk_keeps_the_previous_file_and_the_rotation(kr, home, metrics_home, tiny_fs) -> None:  # type: ignore[no-untyped-def]
    """The collector's folder on a full disk (a real 256 KiB tmpfs): the rotation stands
    (exit 0), one warning line says why without suggesting the rotation was undone, and
    the previous file is whole, with no temp file beside it."""
    from tests_helpers import fill_disk

    configure, _, _ = metrics_home
    collector = tiny_fs / "node-exporter"
    collector.mkdir()
    textfile = collector / "keyroll.prom"
    cfg = configure()
    home.write_config(home.config.read_text().replace(str(home.root / "node-exporter"), str(collector)))
    assert kr(*cfg, "init").code == 0
    before = textfile.read_bytes()
    fill_disk(tiny_fs / "filler")
    old = home.value("app_key")
    done = kr(*cfg, "rotate", "app_key")
    assert done.code == 0, done.both
    assert home.value("app_key") != old
    warnings = [line for line in done.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "no space left" in warnings[0], done.err
    assert "nothing was changed" not in done.err
    assert textfile.read_bytes() == before and os.listdir(collector) == ["keyroll.prom"]
    assert value(samples(textfile), "keyroll_last_run_info", command="init") == 1


def test_temp_files_a_killed_writer_left_are_removed(kr, home, metrics_home) -> None:  # type: ignore[no-untyped-def]
    """A keyroll killed between creating its temp file and the rename leaves it in the
    collector's folder; the next write removes it once it is a minute old, and nothing
    else: not a fresh one (a writer may be filling it), not a folder, not another file."""
    from keyroll.paths import TEMP_PREFIX

    configure, textfile, _ = metrics_home
    cfg = configure()
    collector = textfile.parent
    stale, fresh, folder = (
        collector / f"{TEMP_PREFIX}keyroll.prom.{suffix}" for suffix in ("0a1b2c3d4e5f", "abcdef012345", "dir")
    )
    stale.write_text("keyroll_up 1\n")
    old = time.time() - 120
    os.utime(stale, (old, old))
    fresh.write_text("keyroll_up 1\n")
    folder.mkdir()
    os.utime(folder, (old, old))
    other = collector / "node_other.prom"
    other.write_text("other 1\n")
    assert kr(*cfg, "init").code == 0
    assert sorted(os.listdir(collector)) == sorted(p.name for p in (fresh, folder, other, textfile))


def test_a_bad_textfile_name_is_a_config_error(kr, home, metrics_home) -> None:  # type: ignore[no-untyped-def]
    _, textfile, _ = metrics_home
    home.write_config(f'[metrics]\ntextfile = "{textfile.with_suffix(".txt")}"\n')
    checked = kr("--config", str(home.config), "config", "validate", "--static")
    assert checked.code == 2 and "metrics.textfile: must end in .prom" in checked.err


def test_a_writable_mode_is_a_config_error_and_nothing_is_written(kr, home, metrics_home) -> None:  # type: ignore[no-untyped-def]
    """`mode = "0666"`: exit 2 naming the key and the file it is about (not "a secret"),
    for `run` as for `config validate`; the previous file stays as it was."""
    configure, textfile, _ = metrics_home
    cfg = configure()
    assert kr(*cfg, "init").code == 0
    before = textfile.read_bytes()
    configure(mode='mode = "0666"')
    for argv in (("config", "validate", "--static"), ("run",)):
        refused = kr(*cfg, *argv)
        assert refused.code == 2, refused.both
        assert "metrics.mode: the metrics file must not be writable by group or others" in refused.err
    assert textfile.read_bytes() == before


def test_config_validate_checks_the_collector_folder(kr, home, metrics_home) -> None:  # type: ignore[no-untyped-def]
    """Every write would only warn: `config validate` is where a missing collector folder,
    or a symlink at the file's place, is said (exit 1, naming metrics.textfile)."""
    configure, textfile, _ = metrics_home
    cfg = configure()
    assert kr(*cfg, "config", "validate").code == 0
    textfile.parent.rmdir()
    missing = kr(*cfg, "config", "validate")
    assert missing.code == 1 and "metrics.textfile" in missing.out and "no such folder" in missing.out, missing.both
    assert "are in place" not in missing.out
    textfile.parent.mkdir()
    textfile.symlink_to(home.root / "elsewhere.prom")
    linked = kr(*cfg, "config", "validate")
    assert linked.code == 1 and "is a symlink" in linked.out, linked.both
    assert kr(*cfg, "config", "validate", "--static").code == 0  # (the file alone: no folders looked at)


def test_reads_import_no_prometheus_client(krp, home, metrics_home) -> None:  # type: ignore[no-untyped-def]
    """Start-up stays light with metrics on: `status` imports neither keyroll.metrics
    nor prometheus_client, and writes nothing."""
    configure, textfile, _ = metrics_home
    cfg = configure()
    assert krp(*cfg, "init").code == 0
    textfile.unlink()
    result = krp(*cfg, "status", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.code == 0, result.both
    loaded = {line.split("|")[-1].strip() for line in result.err.splitlines() if line.startswith("import time:")}
    assert "keyroll.journal" in loaded
    assert not {m for m in loaded if m.split(".")[0] == "prometheus_client" or m == "keyroll.metrics"}
    assert not textfile.exists()


def test_a_fifo_in_place_of_the_textfile_never_hangs_keyroll(krp, home, metrics_home) -> None:  # type: ignore[no-untyped-def]
    """The collector's folder is often another account's (node_exporter's): a FIFO it
    puts at the textfile's name is refused, not read (which would wait forever,
    holding the metrics lock, with the daemon stuck)."""
    configure, textfile, _ = metrics_home
    cfg = configure()
    os.mkfifo(textfile)
    done = krp(*cfg, "init", timeout=30)
    assert done.code == 0, done.both
    assert "keyroll: warning: metrics:" in done.err and "not a regular file" in done.err


def test_every_daemon_cycle_rewrites_it(kr, home, metrics_home) -> None:  # type: ignore[no-untyped-def]
    """A real `keyroll daemon` process: its recovery at start and each cycle rewrite the file."""
    configure, textfile, _ = metrics_home
    cfg = configure(app_schedule="3s")
    assert kr(*cfg, "init").code == 0
    textfile.unlink()
    log = (home.root / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "keyroll", *cfg, "daemon"], stdout=subprocess.DEVNULL, stderr=log, env=dict(os.environ)
    )
    try:
        deadline = time.monotonic() + 20
        seen: list[float] = []
        while time.monotonic() < deadline and len(set(seen)) < 2:
            if textfile.exists():
                found = samples(textfile)
                seen.append(value(found, "keyroll_last_scheduled_run_start_timestamp_seconds"))
                assert value(found, "keyroll_last_run_info", command="daemon") == 1
            time.sleep(0.1)
        assert len(set(seen)) >= 2, (home.root / "daemon.log").read_text()  # start, then the due cycle
        found = samples(textfile)
        assert result(found, "app_key") == "success" and value(found, "keyroll_last_run_exit_code") == 0
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(15)
        log.close()


DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def documented_rules() -> str:
    """The YAML block after the alert-rules marker in docs/metrics.md."""
    text = DOCS.read_text()
    after = text[text.index("<!-- alert-rules:") :]
    return after.split("```yaml\n", 1)[1].split("```", 1)[0]


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool (Debian package prometheus) is not installed")
def test_the_documented_alert_rules_fire_as_described(tmp_path: Path) -> None:
    """`promtool test rules` evaluates the rules from docs/metrics.md over series shaped
    like keyroll's: an overdue secret, a failed run, no scheduled run for two days."""
    import json

    (tmp_path / "rules.yml").write_text(documented_rules())
    check = subprocess.run(["promtool", "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    day = 86400
    series = {
        # "late" was due at time 0, "fine" is due in ten days.
        'keyroll_secret_next_due_timestamp_seconds{secret="late",instance="h"}': "0x3000",
        'keyroll_secret_next_due_timestamp_seconds{secret="fine",instance="h"}': f"{10 * day}x3000",
        'keyroll_secret_last_result{secret="late",result="failure",instance="h"}': "0x1200 1x1800",
        'keyroll_secret_last_result{secret="fine",result="failure",instance="h"}': "0x3000",
        # the last run: fine for 20 hours, then exit 1
        'keyroll_last_run_exit_code{instance="h"}': "0x1200 1x1800",
        # the last scheduled run started at time 0, and none since
        'keyroll_last_scheduled_run_start_timestamp_seconds{instance="h"}': "0x3000",
        # "g": keyroll init at time 0, but no `keyroll run` or daemon cycle ever (the timer never enabled)
        'keyroll_last_run_start_timestamp_seconds{instance="g"}': "0x3000",
        'keyroll_build_info{version="0.1.0",instance="g"}': "1x3000",
        'keyroll_build_info{version="0.1.0",instance="h"}': "1x3000",
    }
    late = {"secret": "late", "instance": "h"}
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "alert_rule_test": [
                    {"eval_time": "12h", "alertname": name, "exp_alerts": []}
                    for name in (
                        "KeyrollSecretOverdue",
                        "KeyrollLastRunFailed",
                        "KeyrollSecretFailing",
                        "KeyrollNoRecentRun",
                    )
                ]
                + [
                    {
                        "eval_time": "1d20m",
                        "alertname": "KeyrollSecretOverdue",
                        "exp_alerts": [
                            {
                                "exp_labels": {**late, "severity": "warning"},
                                "exp_annotations": {"summary": "keyroll: late on h is overdue by more than a day"},
                            }
                        ],
                    },
                    {
                        "eval_time": "1d",
                        "alertname": "KeyrollLastRunFailed",
                        "exp_alerts": [
                            {
                                "exp_labels": {"instance": "h", "severity": "critical"},
                                "exp_annotations": {
                                    "summary": "keyroll on h: the last run failed (exit 1); see journalctl -u keyroll"
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "1d",
                        "alertname": "KeyrollSecretFailing",
                        "exp_alerts": [
                            {
                                "exp_labels": {**late, "result": "failure", "severity": "critical"},
                                "exp_annotations": {"summary": "keyroll: the last attempt on late on h: failure"},
                            }
                        ],
                    },
                    {"eval_time": "1d23h", "alertname": "KeyrollNoRecentRun", "exp_alerts": []},
                    {
                        "eval_time": "2d1m",
                        "alertname": "KeyrollNoRecentRun",
                        "exp_alerts": [
                            {
                                "exp_labels": {"instance": host, "severity": "warning"},
                                "exp_annotations": {
                                    "summary": f"keyroll on {host}: no scheduled run for two days "
                                    "(is the timer or the daemon running?)"
                                },
                            }
                            for host in ("g", "h")
                        ],
                    },
                    {"eval_time": "2d", "alertname": "KeyrollMetricsMissing", "exp_alerts": []},
                ],
            }
        ],
    }
    (tmp_path / "tests.yml").write_text(json.dumps(tests))
    tested = subprocess.run(["promtool", "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
