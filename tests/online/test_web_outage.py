"""The web server rides through a database outage: its SQL routes answer 503 with one clear
reason, the live status and the pages go on, and everything works again when the database
is back. Outages are real: an SQLite file locked by another connection beyond the web's
busy timeout, a PostgreSQL URL where nothing listens, and a PostgreSQL server cut off and
reconnected behind a TCP relay; the server process itself is started on a dead database."""

from __future__ import annotations

import selectors
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from daq.core.config import Config
from daq.store.models import LogbookEntry
from daq.store.session import session_scope
from online.web.app import create_app
from online.web.database import web_engine
from tests.online.test_web_api import TOKEN, fill, login, wait_for

TIMEOUT_S = 0.5
"""The web's database timeout in these tests (web.db_timeout_s)."""
READS = (
    "/api/spectra",
    "/api/residual",
    "/api/analysis",
    "/api/history",
    "/api/alarms",
    "/api/logbook",
    "/api/runs",
)
"""Every API route that reads SQL."""
WRITES = (
    ("/api/logbook", {"text": "written in an outage"}),
    ("/api/alarms/1/ack", None),
    ("/api/runs/1/quality", {"quality": "bad", "reason": "outage"}),
)
"""Every shifter route that writes SQL."""
PAGES = ("/", "/spectra", "/trends", "/alarms", "/quality", "/logbook", "/control")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def web_config() -> Config:
    config = Config()
    config.web.db_timeout_s = TIMEOUT_S
    return config


def assert_unavailable(reply) -> None:
    assert reply.status_code == 503, (reply.request.url, reply.text)
    body = reply.json()
    assert body["error"] == "database unavailable" and body["detail"], body


def assert_outage(client: TestClient, headers: dict) -> None:
    """Every SQL route 503; pages, session and live status still served."""
    for path in READS:
        assert_unavailable(client.get(path))
    for path, body in WRITES:
        assert_unavailable(client.post(path, json=body, headers=headers))
    for path in PAGES:
        assert client.get(path).status_code == 200, path
    assert client.get("/api/session").json()["logged_in"] is True
    wait_for(lambda: not client.get("/api/status").json()["database_ok"], 10)
    status = client.get("/api/status").json()
    assert status["database_error"] and status["alarms_known"] is False


def assert_working(client: TestClient, headers: dict) -> None:
    for path in READS:
        assert client.get(path).status_code == 200, path
    for path, body in WRITES:
        assert client.post(path, json=body, headers=headers).status_code == 200, path
    wait_for(lambda: client.get("/api/status").json()["database_ok"], 10)


def logbook_count(engine) -> int:
    with session_scope(engine, readonly=True) as session:
        return session.scalar(select(func.count()).select_from(LogbookEntry))


@pytest.mark.faults
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_locked_beyond_the_busy_timeout(db_engine, db_url, data_dir, run_control):
    """WAL readers go on while another connection holds the write lock: the reads answer,
    every write answers 503 after the web's busy timeout, and works again once released."""
    config = web_config()
    fill(db_engine, config)
    engine = web_engine(db_url, config.web.db_timeout_s)
    with TestClient(create_app(config, data_dir, engine, TOKEN, poll_s=0.1)) as client:
        headers = login(client)
        before = logbook_count(db_engine)
        holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            for path, body in WRITES:
                reply = client.post(path, json=body, headers=headers)
                assert_unavailable(reply)
                assert reply.json()["detail"] == "database is locked"
            for path in READS:
                assert client.get(path).status_code == 200, path
            assert client.get("/api/status").json()["database_ok"] is True
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert logbook_count(db_engine) == before
        assert_working(client, headers)
        assert logbook_count(db_engine) == before + 3  # entry, acknowledgement, quality
    engine.dispose()


def test_postgres_where_nothing_listens(data_dir):
    """Started on a dead database, the server serves its pages and the live status, and
    every SQL route is a 503 naming the refused connection."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    config = web_config()
    engine = web_engine(url, config.web.db_timeout_s)
    with TestClient(create_app(config, data_dir, engine, TOKEN, poll_s=0.1)) as client:
        headers = login(client)
        assert_outage(client, headers)
        assert "refused" in client.get("/api/runs").json()["detail"].lower()
        with client.stream("GET", "/api/events") as response:
            assert next(response.iter_lines()) == "event: status"
    engine.dispose()


class Relay:
    """A TCP relay to a server, which can be cut (listener closed, connections dropped: a
    port where nothing listens) and restored on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.restore()
        self._thread.start()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.setblocking(False)
        with self._lock:
            self._listener = listener
            self._selector.register(listener, selectors.EVENT_READ)

    def cut(self) -> None:
        with self._lock:
            self._selector.unregister(self._listener)
            self._listener.close()
            for a, b in self._pairs:
                for s in (a, b):
                    self._selector.unregister(s)
                    s.close()
            self._pairs.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                events = self._selector.select(timeout=0.02)
                for key, _ in events:
                    if key.fileobj is self._listener:
                        client, _ = self._listener.accept()
                        server = socket.create_connection(self.target)
                        self._pairs.append((client, server))
                        self._selector.register(client, selectors.EVENT_READ, server)
                        self._selector.register(server, selectors.EVENT_READ, client)
                        continue
                    data = b""
                    try:
                        data = key.fileobj.recv(65536)
                        if data:
                            key.data.sendall(data)
                    except OSError:
                        data = b""
                    if not data:
                        self._drop(key.fileobj)
            time.sleep(0)

    def _drop(self, sock: socket.socket) -> None:
        pair = next(p for p in self._pairs if sock in p)
        self._pairs.remove(pair)
        for s in pair:
            self._selector.unregister(s)
            s.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.cut()


@pytest.mark.faults
@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgres_cut_off_and_back(db_engine, db_url, data_dir, run_control):
    """Detected (status and 503s), reported (the reason), recovered (all works again on the
    same engine), nothing lost (the refused writes changed nothing, the later ones are in)."""
    config = web_config()
    fill(db_engine, config)
    relay = Relay(("127.0.0.1", 5432))
    url = db_url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
    engine = web_engine(url, config.web.db_timeout_s)
    try:
        with TestClient(create_app(config, data_dir, engine, TOKEN, poll_s=0.1)) as client:
            headers = login(client)
            wait_for(lambda: client.get("/api/status").json()["database_ok"], 10)
            before = logbook_count(db_engine)
            relay.cut()
            assert_outage(client, headers)
            assert client.get("/api/status").json()["reachable"] is True  # live goes on
            assert logbook_count(db_engine) == before
            relay.restore()
            assert_working(client, headers)
            assert logbook_count(db_engine) == before + 3  # entry, acknowledgement, quality
    finally:
        engine.dispose()
        relay.close()


def test_server_process_starts_and_serves_on_a_dead_database(data_dir):
    """``nudaq web`` on a PostgreSQL URL where nothing listens: it starts, names where its
    shifter token is, serves the live status and answers 503 for SQL."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    process = subprocess.Popen(
        [sys.executable, "-m", "daq.cli", "web", "--data-dir", str(data_dir), "--db", url]
        + ["--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = ""
        while "nudaq web:" not in line:
            line = process.stderr.readline()
            assert line, "nudaq web exited before serving"
        base = line.split()[2]
        assert f"(shifter token generated in {data_dir / 'shifter-token'})" in line
        status = httpx2.get(base + "api/status", timeout=10)
        assert status.status_code == 200 and status.json()["database_ok"] is False
        assert_unavailable(httpx2.get(base + "api/runs", timeout=10))
        assert httpx2.get(base, timeout=10).status_code == 200
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(10)
