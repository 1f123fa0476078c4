"""Notifications of critical alarms, received by a local SMTP server and a local HTTP server."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from daq.core.config import SMTP_PASSWORD_ENV, Config
from daq.core.config import Alarm as AlarmConfig
from online.monitoring.alarms import Condition
from online.monitoring.monitor import Monitor
from online.monitoring.notify import Notifier
from tests.servers import free_port, wait_for

RAISED = datetime(2026, 3, 1, 3, 0, 7, 250000, tzinfo=UTC)
DEAD_VETO = Condition(
    "rate_low:acv", "critical", "acv low: 0 counts in 12 s, expected >= 10800.0 at 1000 Hz -10%"
)


def alarm_config(**fields) -> AlarmConfig:
    """Alarm settings with quick retries."""
    return AlarmConfig(notify_retry_s=0.05, notify_timeout_s=5.0, **fields)


def test_email_and_webhook_carry_the_alarm(smtp_server, webhook_server, monkeypatch):
    """A raised critical alarm reaches the SMTP server (login with the password from the
    environment) and the webhook with exactly its name, severity, message, time and run."""
    monkeypatch.setenv(SMTP_PASSWORD_ENV, "s3cret")
    config = alarm_config()
    config.email = {
        "host": "127.0.0.1",
        "port": smtp_server.port,
        "sender": "daq@kuosheng.example",
        "recipients": ["shift@kuosheng.example", "expert@kuosheng.example"],
        "username": "shift",
    }
    config.webhook.url = webhook_server.url
    notifier = Notifier(config)
    try:
        notifier.notify(DEAD_VETO, RAISED, 42)
        wait_for(lambda: smtp_server.messages and webhook_server.requests, what="both notices")
    finally:
        notifier.close()
    assert webhook_server.requests == [
        {
            "method": "POST",
            "path": "/hooks/nudaq",
            "content_type": "application/json",
            "body": webhook_server.requests[0]["body"],
        }
    ]
    assert json.loads(webhook_server.requests[0]["body"]) == {
        "name": "rate_low:acv",
        "severity": "critical",
        "message": DEAD_VETO.message,
        "time_utc": "2026-03-01T03:00:07.250000Z",
        "run": 42,
    }
    assert smtp_server.logins == [("shift", "s3cret")]
    (mail,) = smtp_server.messages
    assert mail["from"] == "daq@kuosheng.example"
    assert mail["to"] == ["shift@kuosheng.example", "expert@kuosheng.example"]
    message = mail["message"]
    assert message["From"] == "daq@kuosheng.example"
    assert message["To"] == "shift@kuosheng.example, expert@kuosheng.example"
    assert message["Subject"] == f"nudaq CRITICAL rate_low:acv: {DEAD_VETO.message}"
    assert message.get_content().replace("\r\n", "\n") == (  # SMTP sends CRLF lines
        "alarm:    rate_low:acv\n"
        "severity: critical\n"
        f"message:  {DEAD_VETO.message}\n"
        "time:     2026-03-01 03:00:07 UTC\n"
        "run:      42\n"
    )


def test_warnings_are_not_notified_and_nothing_is_sent_when_off(webhook_server):
    config = alarm_config()
    config.webhook.url = webhook_server.url
    notifier = Notifier(config)
    notifier.notify(Condition("ln2_low", "warning", "LN2 level 19.0 % < 20 %"), RAISED, 1)
    notifier.close()
    assert webhook_server.requests == []
    off = Notifier(alarm_config())
    assert off.channels == []
    off.notify(DEAD_VETO, RAISED, 1)
    off.close()


def test_a_failing_webhook_is_retried_a_bounded_number_of_times(webhook_server, caplog):
    """Answers 500, 503, then 200: three POSTs, each failure logged with its reason. With two
    tries and a server that always fails: two POSTs, then the notice is given up (logged)."""
    caplog.set_level(logging.INFO, logger="online.monitoring.notify")
    config = alarm_config(notify_attempts=3)
    config.webhook.url = webhook_server.url
    webhook_server.answers = [500, 503]
    notifier = Notifier(config)
    notifier.notify(DEAD_VETO, RAISED, None)
    wait_for(lambda: "sent" in caplog.text, what="the notice to be sent")
    notifier.close()
    assert len(webhook_server.requests) == 3
    assert [b["run"] for b in webhook_server.bodies()] == [None, None, None]
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 2
    assert "(try 1 of 3): HTTPError: HTTP Error 500" in failures[0]
    assert "(try 2 of 3): HTTPError: HTTP Error 503" in failures[1]

    caplog.clear()
    webhook_server.requests.clear()
    webhook_server.answers = [500] * 10
    config.notify_attempts = 2
    notifier = Notifier(config)
    notifier.notify(DEAD_VETO, RAISED, 3)
    wait_for(lambda: "given up" in caplog.text, what="the notice to be given up")
    notifier.close()
    assert len(webhook_server.requests) == 2


def test_an_unreachable_mail_server_is_logged_with_the_reason(caplog):
    config = alarm_config(notify_attempts=2)
    config.email = {"host": "127.0.0.1", "port": free_port(), "recipients": ["shift@example.org"]}
    notifier = Notifier(config)
    notifier.notify(DEAD_VETO, RAISED, 7)
    wait_for(lambda: "given up" in caplog.text, what="the notice to be given up")
    notifier.close()
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 2 and all("ConnectionRefusedError" in f for f in failures)
    assert failures[0].startswith("e-mail notification of alarm rate_low:acv failed (try 1 of 2)")


def test_the_monitor_notifies_once_per_raised_alarm(
    db_engine, data_dir, run_control, webhook_server
):
    """A critical condition that stays active for several seconds is notified once; raised
    again after it cleared, once more. A warning is never notified."""
    config = Config()
    config.alarms.disk_low_GB = 1e9  # a warning, always active here
    config.alarms.disk_critical_GB = 1e8  # critical, always active here
    config.alarms.webhook.url = webhook_server.url
    monitor = Monitor(config, data_dir, db_engine)
    try:
        for _ in range(4):
            monitor.step()
        monitor.config.alarms.disk_critical_GB = 0.0  # cleared
        monitor.step()
        monitor.config.alarms.disk_critical_GB = 1e8  # raised again
        for _ in range(3):
            monitor.step()
        wait_for(lambda: len(webhook_server.requests) >= 2, what="two notices")
    finally:
        monitor.close()
    bodies = webhook_server.bodies()
    assert [(b["name"], b["severity"], b["run"]) for b in bodies] == [
        ("disk_critical", "critical", None),
        ("disk_critical", "critical", None),
    ]
    assert bodies[0]["message"].startswith("free disk space ")
    assert bodies[0]["message"].endswith(" GB < 1e+08 GB")
    assert bodies[0]["time_utc"] < bodies[1]["time_utc"]
