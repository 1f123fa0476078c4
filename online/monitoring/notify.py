"""Notifications of critical alarms: e-mail over SMTP and a webhook POST, both optional.

Configured in ``[alarms.email]`` (off while ``host`` is empty) and ``[alarms.webhook]`` (off
while ``url`` is empty). The monitor hands every raised critical alarm to ``Notifier.notify``
once, when it is raised (not again while it stays active); that only queues it. One background
thread per channel sends it, so the monitor loop never waits on a mail or web server, with at
most ``alarms.notify_attempts`` tries ``alarms.notify_retry_s`` apart, each of at most
``alarms.notify_timeout_s``; every failure is logged with its reason. Notifications need no
database, so an outage of the database is notified too.

What is sent, for an alarm raised at time T (UTC) in run R (null outside a run):

- e-mail from ``sender`` to every address in ``recipients``, subject
  ``nudaq CRITICAL <name>: <message>``, a plain-text body with the name, severity, message,
  time and run; STARTTLS first when ``starttls``, a login when ``username`` is set (password
  from the environment variable ``NUDAQ_SMTP_PASSWORD``, never in the configuration);
- a POST to ``url`` with ``Content-Type: application/json`` and the body
  ``{"name": ..., "severity": "critical", "message": ..., "time_utc": "YYYY-MM-DDTHH:MM:SS.ffffffZ",
  "run": R}``; any 2xx answer is success.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import smtplib
import ssl
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from daq.core.config import SMTP_PASSWORD_ENV, Email
from daq.core.config import Alarm as AlarmConfig
from online.monitoring.alarms import Condition

log = logging.getLogger(__name__)

QUEUE_LIMIT = 1000
"""Notifications waiting per channel; beyond, new ones are dropped (logged)."""


@dataclass(frozen=True)
class Notice:
    """One raised alarm to tell about."""

    name: str
    severity: str
    message: str
    time_utc: datetime
    run: int | None

    def as_json(self) -> dict:
        """The webhook's body."""
        return {
            "name": self.name,
            "severity": self.severity,
            "message": self.message,
            "time_utc": self.time_utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "run": self.run,
        }

    def as_text(self) -> str:
        """The e-mail's body."""
        run = "none" if self.run is None else str(self.run)
        return (
            f"alarm:    {self.name}\nseverity: {self.severity}\nmessage:  {self.message}\n"
            f"time:     {self.time_utc:%Y-%m-%d %H:%M:%S} UTC\nrun:      {run}\n"
        )


def send_email(config: Email, timeout_s: float, notice: Notice) -> None:
    """Send one notice by SMTP (raises on any failure)."""
    message = EmailMessage()
    message["From"] = config.sender
    message["To"] = ", ".join(config.recipients)
    message["Subject"] = f"nudaq {notice.severity.upper()} {notice.name}: {notice.message}"
    message.set_content(notice.as_text())
    with smtplib.SMTP(config.host, config.port, timeout=timeout_s) as smtp:
        if config.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if config.username:
            smtp.login(config.username, os.environ.get(SMTP_PASSWORD_ENV, ""))
        smtp.send_message(message)


def post_webhook(url: str, timeout_s: float, notice: Notice) -> None:
    """POST one notice as JSON (raises on any failure, or an answer that is not 2xx)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(notice.as_json()).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as answer:
        if not 200 <= answer.status < 300:
            raise OSError(f"HTTP {answer.status} {answer.reason}")


class _Channel:
    """One way of notifying, served by its own thread."""

    def __init__(
        self, label: str, send: Callable[[Notice], None], attempts: int, retry_s: float
    ) -> None:
        self.label = label
        self.send = send
        self.attempts = attempts
        self.retry_s = retry_s
        self.queue: queue.Queue[Notice | None] = queue.Queue(QUEUE_LIMIT)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name=f"notify-{label}", daemon=True)
        self.thread.start()

    def put(self, notice: Notice) -> None:
        try:
            self.queue.put_nowait(notice)
        except queue.Full:
            log.error("%s notification of alarm %s dropped: queue full", self.label, notice.name)

    def _serve(self) -> None:
        while (notice := self.queue.get()) is not None:
            self._deliver(notice)

    def _deliver(self, notice: Notice) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                self.send(notice)
            except Exception as err:  # any failure of the server or the network is retried
                log.warning(
                    "%s notification of alarm %s failed (try %d of %d): %s",
                    self.label,
                    notice.name,
                    attempt,
                    self.attempts,
                    f"{type(err).__name__}: {err}",
                )
                if attempt < self.attempts and not self.stop.wait(self.retry_s):
                    continue
                log.error("%s notification of alarm %s given up", self.label, notice.name)
                return
            log.info("%s notification of alarm %s sent", self.label, notice.name)
            return

    def close(self, timeout_s: float) -> None:
        """Send what is queued (no more waits between tries), then end the thread."""
        self.stop.set()
        self.queue.put(None)
        self.thread.join(timeout_s)


class Notifier:
    """Sends raised critical alarms through every configured channel."""

    def __init__(self, config: AlarmConfig) -> None:
        timeout = config.notify_timeout_s
        senders: dict[str, Callable[[Notice], None]] = {}
        if config.email.host:
            senders["e-mail"] = lambda n: send_email(config.email, timeout, n)
        if config.webhook.url:
            senders["webhook"] = lambda n: post_webhook(config.webhook.url, timeout, n)
        self.timeout_s = timeout
        self.channels = [
            _Channel(label, send, config.notify_attempts, config.notify_retry_s)
            for label, send in senders.items()
        ]

    def notify(self, condition: Condition, time_utc: datetime, run: int | None) -> None:
        """Queue a notice of a raised alarm if it is critical; never blocks."""
        if condition.severity != "critical":
            return
        notice = Notice(condition.name, condition.severity, condition.message, time_utc, run)
        for channel in self.channels:
            channel.put(notice)

    def close(self) -> None:
        """Give the queued notices one more try each, then end the threads."""
        for channel in self.channels:
            channel.close(2 * self.timeout_s)
