"""The web API through FastAPI's TestClient, against a database filled here and a real run
control (daq.control.runcontrol.RunControl serving its ZeroMQ socket in a thread, no DAQ
processes)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import zmq
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from daq.control.transitions import ControlClient
from daq.core.config import Config
from daq.store.models import (
    Alarm,
    AnalysisHistory,
    Exposure,
    LogbookEntry,
    ReactorInterval,
    Run,
    SlowControlReading,
    SpectrumBin,
)
from daq.store.runs import add_logbook, create_run, end_run, set_quality
from daq.store.session import session_scope
from online.web.app import create_app
from online.web.auth import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from online.web.status import SqlView, compose_status

TOKEN = "correct horse battery staple"
DAY_NS = 86_400 * 10**9
BIN_KEV = 0.2
# run number -> (reactor, live ns, quality, {(category, bin): counts})
RUNS = {
    1: ("on", DAY_NS, "good", {("candidate", 60): 12, ("candidate", 61): 7, ("all", 60): 40}),
    2: ("off", DAY_NS // 2, "good", {("candidate", 60): 3, ("candidate", 62): 5, ("all", 60): 9}),
    3: ("on", DAY_NS // 10, "bad", {("candidate", 60): 2, ("rt", 0): 8}),
}


def fill(engine, config: Config) -> None:
    """Three ended runs with spectra and exposure, analysis history, slow control, alarms."""
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        for number, (reactor, live_ns, quality, bins) in RUNS.items():
            run = create_run(session, number, config, comment=f"test run {number}")
            end_run(session, number)
            set_quality(session, number, quality, "" if quality == "good" else "HV spikes")
            session.add(
                Exposure(
                    run_id=run.id,
                    tag="",
                    reactor=reactor,
                    elapsed_ns=live_ns,
                    live_ns=live_ns,
                    events_candidate=sum(c for (cat, _), c in bins.items() if cat == "candidate"),
                )
            )
            session.add(
                ReactorInterval(
                    run_id=run.id,
                    reactor=reactor,
                    start_ns=0,
                    end_ns=live_ns,
                    power_MW=2900.0 if reactor == "on" else 0.0,
                )
            )
            for (category, index), counts in bins.items():
                session.add(
                    SpectrumBin(
                        run_id=run.id,
                        tag="",
                        reactor=reactor,
                        category=category,
                        bin=index,
                        counts=counts,
                    )
                )
        for i in range(3):
            session.add(
                AnalysisHistory(
                    time_utc=now - timedelta(minutes=30 - 10 * i),
                    run_number=1,
                    exposure_on_kg_day=1.0 + i,
                    exposure_off_kg_day=0.5 + i,
                    background_cpd=1.1 - 0.05 * i,
                    background_cpd_error=0.1,
                    mu_nu2_1e20=2.0 - i,
                    mu_nu2_1e20_error=3.0,
                    limit_90_muB=(8.0 - i) * 1e-10,
                    expected_limit_90_muB=(9.0 - i) * 1e-10,
                )
            )
        for minute in range(60):
            t = now - timedelta(minutes=60 - minute)
            session.add(
                SlowControlReading(
                    time_utc=t, clock_ns=minute, quantity="power_MW", value=2900.0, unit="MW"
                )
            )
            session.add(
                SlowControlReading(
                    time_utc=t, clock_ns=minute, quantity="hv_V", value=3000.0 + minute, unit="V"
                )
            )
        session.add(Alarm(name="ln2_low", severity="warning", message="LN2 level 15.0 % < 20 %"))
        session.add(
            Alarm(
                name="disk_low",
                severity="warning",
                message="old disk alarm",
                raised_utc=now - timedelta(hours=2),
                cleared_utc=now - timedelta(hours=1),
            )
        )
        add_logbook(session, "alice", "calibrated the ADC with 100% care", 1)
        add_logbook(session, "run control", "run 1 started", 1, automatic=True)


@pytest.fixture
def client(db_engine, data_dir, run_control):
    config = Config()
    fill(db_engine, config)
    app = create_app(config, data_dir, db_engine, TOKEN, poll_s=0.1)
    with TestClient(app) as c:
        wait_for(lambda: (s := c.get("/api/status").json())["reachable"] and s["database_ok"])
        yield c


def wait_for(condition, timeout_s: float = 5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def login(client: TestClient, name: str = "alice") -> dict:
    """Log in; returns the headers a state-changing request needs."""
    reply = client.post("/api/login", json={"token": TOKEN, "name": name})
    assert reply.status_code == 200, reply.text
    return {CSRF_HEADER: reply.json()["csrf_token"]}


def count(engine, model) -> int:
    with session_scope(engine, readonly=True) as session:
        return session.scalar(select(func.count()).select_from(model))


# -- reading ------------------------------------------------------------------------------------
def test_pages_static_files_and_docs_are_served(client):
    for path in ("/", "/spectra", "/trends", "/alarms", "/quality", "/logbook", "/control"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "/static/uPlot.iife.min.js" in page.text and "/static/nudaq.js" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "<script>" not in page.text  # no inline scripts: the CSP forbids them
    assert client.get("/static/uPlot.iife.min.js").text.startswith(
        "/*! https://github.com/leeoniya/uPlot"
    )
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/status",
        "/api/events",
        "/api/spectra",
        "/api/residual",
        "/api/analysis",
        "/api/history",
        "/api/alarms",
        "/api/alarms/{alarm_id}/ack",
        "/api/logbook",
        "/api/runs",
        "/api/runs/{number}/quality",
        "/api/run/start",
        "/api/run/stop",
        "/api/login",
    ):
        assert path in paths, path


def test_status_combines_run_control_and_sql(client):
    status = client.get("/api/status").json()
    assert status["reachable"] is True
    assert status["state"] == "idle"
    assert [s["name"] for s in status["streams"]] == ["hpge", "acv", "crv"]
    assert [a["name"] for a in status["alarms"]] == ["ln2_low"]  # open alarms only
    assert status["power_MW"] == 2900.0  # the newest slow-control reading


def utc(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def test_status_times_every_part_and_says_stale_without_a_builder(client):
    before = datetime.now(UTC)
    status = client.get("/api/status").json()
    assert abs(utc(status["time_utc"]) - before) < timedelta(seconds=2)
    assert abs(utc(status["run_control_utc"]) - before) < timedelta(seconds=2)
    assert abs(utc(status["database_utc"]) - before) < timedelta(seconds=2)
    # the power is the newest slow-control reading, a minute old: its own time, not now's
    with session_scope(client.app.state.engine, readonly=True) as session:
        newest = session.scalar(select(func.max(SlowControlReading.time_utc)))
    assert utc(status["power_utc"]) == newest.replace(tzinfo=UTC)
    assert before - utc(status["power_utc"]) > timedelta(seconds=50)
    # no builder: no snapshot, stale, and the newest data known is that reading
    assert status["snapshot_utc"] is None and status["stale"] is True
    assert status["stale_after_s"] == Config().web.stale_after_s
    assert status["last_data_utc"] == status["power_utc"]


def test_alarm_state_is_unknown_until_the_monitor_is_connected(client, data_dir):
    status = client.get("/api/status").json()
    assert status["monitor_up"] is False and status["alarms_known"] is False
    assert "monitor is not connected" in status["alarms_note"]
    assert [a["name"] for a in status["alarms"]] == ["ln2_low"]  # as last recorded
    monitor = ControlClient(
        zmq.Context.instance(), Config().endpoint("transitions", data_dir), "monitor"
    )
    try:
        wait_for(lambda: client.get("/api/status").json()["monitor_up"])
        status = client.get("/api/status").json()
        assert status["alarms_known"] is True and status["alarms_note"] == ""
    finally:
        monitor.close()


def test_a_fresh_builder_snapshot_is_live_and_an_old_one_stale(db_engine, data_dir, run_control):
    config = Config()
    config.web.stale_after_s = 1.5
    fill(db_engine, config)
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(config.endpoint("monitor", data_dir))
    snapshot = {"time": time.time(), "state": "running", "reactor": "off", "power_MW": 12.5}
    snapshot |= {"rates_hz": {"hpge": 0.2, "acv": 1000.0, "crv": 300.0}}
    app = create_app(config, data_dir, db_engine, TOKEN, poll_s=0.1)
    try:
        with TestClient(app) as c:

            def live() -> bool:
                pub.send_json({**snapshot, "time": time.time()})
                return not c.get("/api/status").json()["stale"]

            wait_for(live)
            sent = datetime.now(UTC)
            status = c.get("/api/status").json()
            assert abs(utc(status["snapshot_utc"]) - sent) < timedelta(seconds=1)
            assert status["power_MW"] == 12.5 and status["reactor"] == "off"
            assert status["power_utc"] == status["snapshot_utc"]  # the builder's, not SQL's
            assert status["streams"][0]["rate_hz"] == 0.2
            wait_for(lambda: c.get("/api/status").json()["stale"])  # the builder went quiet
            status = c.get("/api/status").json()
            assert status["snapshot_age_s"] > config.web.stale_after_s
            assert status["last_data_utc"] == status["snapshot_utc"]
            assert utc(status["snapshot_utc"]) - sent < timedelta(seconds=1)
    finally:
        pub.close(0)


def test_events_stream_pushes_status(client):
    with client.stream("GET", "/api/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines) == "event: status"
        data = next(lines)
    status = json.loads(data.removeprefix("data: "))
    assert status["state"] == "idle" and status["reachable"] is True


def expected_rate(counts: int, live_ns: int, width_keV: float = BIN_KEV) -> float:
    days = live_ns / DAY_NS
    return counts / (Config().detector.mass_kg * width_keV * days)


def test_spectra_sum_runs_and_normalise_by_exposure(client):
    on = client.get("/api/spectra", params={"reactor": "on", "category": "candidate"}).json()
    assert on["runs"] == [1, 3]
    assert on["counts"][60] == 12 + 2 and on["counts"][61] == 7 and sum(on["counts"]) == 21
    live = DAY_NS + DAY_NS // 10
    assert on["live_time_s"] == pytest.approx(live / 1e9)
    assert on["rate_cpd"][60] == pytest.approx(expected_rate(14, live))
    assert on["rate_cpd_error"][60] == pytest.approx(expected_rate(14, live) / np.sqrt(14))
    assert on["bin_edges_keV"][60] == pytest.approx(12.0)
    good = client.get(
        "/api/spectra", params={"reactor": "on", "category": "candidate", "exclude_bad": True}
    ).json()
    assert good["runs"] == [1] and good["counts"][60] == 12
    off = client.get(
        "/api/spectra",
        params={"reactor": "off", "category": "candidate", "max_keV": 20, "rebin": 5},
    ).json()
    assert len(off["counts"]) == 20 and off["bin_edges_keV"][-1] == pytest.approx(20.0)
    assert off["counts"][12] == 8  # 12.0-12.4 keV: bins 60 and 62
    assert off["rate_cpd"][12] == pytest.approx(expected_rate(8, DAY_NS // 2, 1.0))
    rt = client.get("/api/spectra", params={"category": "rt"}).json()
    assert rt["reactor"] is None and sum(rt["counts"]) == 8
    assert client.get("/api/spectra", params={"runs": "99"}).status_code == 400
    assert client.get("/api/spectra", params={"category": "nonsense"}).status_code == 422


def test_residual_is_on_minus_off_with_mm_curves(client):
    res = client.get("/api/residual", params={"category": "candidate", "max_keV": 30}).json()
    assert res["runs_on"] == [1, 3] and res["runs_off"] == [2]
    bin12 = 12  # 1 keV bins: 12-13 keV
    on = expected_rate(21, DAY_NS + DAY_NS // 10, 1.0)
    off = expected_rate(8, DAY_NS // 2, 1.0)
    assert res["rate_cpd"][bin12] == pytest.approx(on - off)
    assert res["rate_cpd_error"][bin12] == pytest.approx(
        np.hypot(on / np.sqrt(21), off / np.sqrt(8))
    )
    fit, limit = res["curves"]
    assert fit["mu_nu2_1e20"] == pytest.approx(0.0)  # the latest history row
    assert limit["mu_nu2_1e20"] == pytest.approx(36.0)  # (6e-10 / 1e-10)^2
    rates = np.array(limit["rate_cpd"])
    assert rates[:5].sum() == 0  # below the 5 keV threshold nothing is drawn
    assert rates[12] > rates[25] > 0  # the 1/T shape falls with energy


def test_analysis_history_and_runs(client):
    analysis = client.get("/api/analysis").json()
    assert analysis["latest"]["expected_limit_90_muB"] == pytest.approx(7e-10)
    assert analysis["runs"] == [1, 2]  # run 3 is bad
    history = client.get("/api/history", params={"hours": 2}).json()
    assert [p["exposure_on_kg_day"] for p in history["analysis"]] == [1.0, 2.0, 3.0]
    series = {s["name"]: s for s in history["slow_control"]}
    assert set(series) == {"power_MW", "hv_V"}
    assert series["hv_V"]["unit"] == "V" and len(series["hv_V"]["values"]) == 60
    assert series["hv_V"]["values"][-1] == 3059.0
    assert [s["name"] for s in history["rates"]] == ["hpge", "acv", "crv"]
    runs = {r["number"]: r for r in client.get("/api/runs").json()}
    assert runs[1]["live_time_on_s"] == pytest.approx(86400) and runs[1]["in_analysis"]
    assert runs[2]["live_time_off_s"] == pytest.approx(43200)
    assert runs[3]["quality"] == "bad" and not runs[3]["in_analysis"]
    assert runs[1]["events_candidate"] == 19


def test_alarms_list_open_first_with_conditions(client):
    data = client.get("/api/alarms").json()
    assert [a["name"] for a in data["alarms"]] == ["ln2_low", "disk_low"]
    thresholds = {c["name"]: c["threshold"] for c in data["conditions"]}
    assert thresholds["hv_low"] == "< 2500 V" and thresholds["ln2_low"] == "< 20 %"


def test_logbook_search_is_literal_and_case_insensitive(client):
    assert [e["author"] for e in client.get("/api/logbook").json()] == ["run control", "alice"]
    found = client.get("/api/logbook", params={"q": "100%"}).json()
    assert [e["author"] for e in found] == ["alice"]
    assert client.get("/api/logbook", params={"q": "0_c"}).json() == []  # '_' is no wildcard
    assert len(client.get("/api/logbook", params={"q": "RUN 1"}).json()) == 1
    assert len(client.get("/api/logbook", params={"run": 2}).json()) == 0


# -- authentication -----------------------------------------------------------------------------
def test_login_sets_httponly_strict_session(client):
    assert client.post("/api/login", json={"token": "wrong", "name": "eve"}).status_code == 401
    assert client.get("/api/session").json()["logged_in"] is False
    reply = client.post("/api/login", json={"token": TOKEN, "name": "alice"})
    cookies = reply.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookies if c.startswith(SESSION_COOKIE + "="))
    csrf_cookie = next(c for c in cookies if c.startswith(CSRF_COOKIE + "="))
    assert "HttpOnly" in session_cookie and "SameSite=strict" in session_cookie
    assert "HttpOnly" not in csrf_cookie and "SameSite=strict" in csrf_cookie
    assert reply.json()["csrf_token"] in csrf_cookie
    me = client.get("/api/session").json()
    assert me["logged_in"] and me["name"] == "alice"
    client.post("/api/logout", headers={CSRF_HEADER: me["csrf_token"]})
    assert client.get("/api/session").json()["logged_in"] is False


def snapshot(engine) -> dict:
    """Everything a state-changing request could change."""
    with session_scope(engine, readonly=True) as session:
        return {
            "logbook": session.scalar(select(func.count()).select_from(LogbookEntry)),
            "acked": session.scalars(select(Alarm.acked_utc).order_by(Alarm.id)).all(),
            "quality": session.scalars(select(Run.quality).order_by(Run.number)).all(),
            "runs": session.scalar(select(func.count()).select_from(Run)),
        }


WRITES = [
    ("/api/logbook", {"text": "sneaky"}),
    ("/api/alarms/1/ack", None),
    ("/api/runs/1/quality", {"quality": "bad", "reason": "no"}),
    ("/api/run/start", {"comment": "x"}),
    ("/api/run/stop", None),
]


@pytest.mark.parametrize("path,body", WRITES)
def test_writes_without_login_are_401_and_change_nothing(
    client, db_engine, run_control, path, body
):
    before = snapshot(db_engine)
    reply = client.post(path, json=body)
    assert reply.status_code == 401
    assert snapshot(db_engine) == before
    assert run_control.machine.state.value == "idle"


@pytest.mark.parametrize("path,body", WRITES)
def test_writes_without_csrf_token_or_from_another_origin_are_403(
    client, db_engine, run_control, path, body
):
    headers = login(client)
    before = snapshot(db_engine)
    assert client.post(path, json=body).status_code == 403
    assert client.post(path, json=body, headers={CSRF_HEADER: "forged"}).status_code == 403
    foreign = {**headers, "Origin": "http://evil.example"}
    assert client.post(path, json=body, headers=foreign).status_code == 403
    assert snapshot(db_engine) == before
    assert run_control.machine.state.value == "idle"


def test_login_from_another_origin_is_refused(client):
    reply = client.post(
        "/api/login", json={"token": TOKEN}, headers={"Origin": "http://evil.example"}
    )
    assert reply.status_code == 403


# -- shifter actions ----------------------------------------------------------------------------
def test_logbook_entry_is_stored_verbatim_and_returned_as_json_text(client, db_engine):
    headers = login(client, "bob")
    text = "<script>alert('x')</script> & <b>bold</b>"
    reply = client.post("/api/logbook", json={"text": text, "run_number": 2}, headers=headers)
    assert reply.status_code == 200
    entry = reply.json()
    assert entry["author"] == "bob" and entry["run_number"] == 2 and not entry["automatic"]
    assert client.get("/api/logbook", params={"q": "<script>"}).json()[0]["text"] == text
    page = client.get("/logbook").text
    assert "<script>alert" not in page  # entries never enter the HTML, only JSON
    assert client.post("/api/logbook", json={"text": ""}, headers=headers).status_code == 422


def test_acknowledge_alarm(client, db_engine):
    headers = login(client, "carol")
    logbook_before = count(db_engine, LogbookEntry)
    alarm = client.get("/api/alarms").json()["alarms"][0]
    reply = client.post(f"/api/alarms/{alarm['id']}/ack", headers=headers)
    assert reply.status_code == 200
    acked = reply.json()
    assert acked["acked_by"] == "carol" and acked["acked_utc"] and acked["cleared_utc"] is None
    again = client.post(f"/api/alarms/{alarm['id']}/ack", headers=headers).json()
    assert again["acked_utc"] == acked["acked_utc"]  # the first acknowledgement stands
    assert count(db_engine, LogbookEntry) == logbook_before + 1
    status_alarm = client.get("/api/status").json()["alarms"][0]
    wait_for(lambda: client.get("/api/status").json()["alarms"][0]["acked_by"] == "carol")
    assert status_alarm["name"] == "ln2_low"
    assert client.post("/api/alarms/999/ack", headers=headers).status_code == 404


def test_run_quality_changes_the_analysis_selection(client):
    headers = login(client)
    reply = client.post(
        "/api/runs/1/quality", json={"quality": "bad", "reason": "LN2 refill"}, headers=headers
    )
    assert reply.status_code == 200
    assert reply.json()["quality"] == "bad" and reply.json()["quality_reason"] == "LN2 refill"
    assert client.get("/api/analysis").json()["runs"] == [2]
    assert "LN2 refill" in client.get("/api/logbook", params={"q": "marked bad"}).text
    bad = {"quality": "excellent", "reason": ""}
    assert client.post("/api/runs/1/quality", json=bad, headers=headers).status_code == 422
    missing = {"quality": "good", "reason": ""}
    assert client.post("/api/runs/42/quality", json=missing, headers=headers).status_code == 404


def test_run_start_and_stop_through_run_control(client, db_engine, run_control):
    headers = login(client, "dave")
    reply = client.post("/api/run/start", json={"comment": "after LN2 fill"}, headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"ok": True, "error": "", "run": 4, "summary": None}
    assert run_control.machine.state.value == "running"
    wait_for(lambda: client.get("/api/status").json()["state"] == "running")
    assert client.get("/api/status").json()["run"] == 4
    refused = client.post("/api/run/start", json={}, headers=headers)
    assert refused.status_code == 409 and refused.json()["ok"] is False
    assert refused.json()["error"]
    assert client.post("/api/run/stop", headers=headers).status_code == 200
    assert run_control.machine.state.value == "idle"
    with session_scope(db_engine, readonly=True) as session:
        run = session.scalar(select(Run).where(Run.number == 4))
        assert run.comment == "after LN2 fill" and run.state == "ended"
        authors = session.scalars(
            select(LogbookEntry.author).where(LogbookEntry.run_number == 4)
        ).all()
    assert authors.count("dave") == 2 and "run control" in authors


# -- the live status, composed --------------------------------------------------------------------
def test_compose_status_times_staleness_and_alarm_state():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    hour_ago = now - timedelta(hours=1)
    sql = SqlView(ok=True, error="", read_utc=now, power_MW=2900.0, power_utc=hour_ago)
    alone = compose_status(now, None, None, {}, None, sql, 5.0)
    assert alone.stale and alone.last_data_utc == hour_ago
    assert alone.power_MW == 2900.0 and alone.power_utc == hour_ago
    assert not alone.alarms_known and "run control does not answer" in alone.alarms_note
    rc = {"state": "running", "run": 7, "processes": ["builder", "monitor"]}
    snapshot = {"power_MW": 2914.0, "reactor": "on", "rates_hz": {"hpge": 0.2}}
    fresh = compose_status(now, rc, now, snapshot, now - timedelta(seconds=4), sql, 5.0)
    assert not fresh.stale and fresh.snapshot_age_s == 4.0
    assert fresh.power_MW == 2914.0 and fresh.power_utc == now - timedelta(seconds=4)
    assert fresh.alarms_known and fresh.monitor_up and fresh.alarms_note == ""
    old = compose_status(now, rc, now, snapshot, now - timedelta(seconds=6), sql, 5.0)
    assert old.stale and old.last_data_utc == now - timedelta(seconds=6)
    no_monitor = compose_status(now, {**rc, "processes": ["builder"]}, now, {}, None, sql, 5.0)
    assert not no_monitor.alarms_known and "monitor is not connected" in no_monitor.alarms_note
    down = SqlView(ok=False, error="database is locked", read_utc=hour_ago)
    blind = compose_status(now, rc, now, snapshot, now, down, 5.0)
    assert not blind.database_ok and blind.database_utc == hour_ago
    assert blind.alarms_note == "database unavailable: database is locked"


def test_slow_control_history_is_averaged_in_the_database(db_engine):
    """Hours of readings come back as about a thousand averaged points, in time order."""
    from online.web import queries

    now = datetime.now(UTC)
    with session_scope(db_engine) as session:
        session.add_all(
            SlowControlReading(
                time_utc=now - timedelta(seconds=3000 - i),
                clock_ns=i * 10**9,
                quantity="ln2_pct",
                value=float(i),
                unit="%",
            )
            for i in range(3000)
        )
    with session_scope(db_engine, readonly=True) as session:
        (series,) = queries.slow_control(session, hours=2)
    assert series.name == "ln2_pct" and series.unit == "%"
    assert 900 < len(series.values) <= queries.SLOW_CONTROL_POINTS + 1
    assert series.values[:2] == [1.0, 4.0]  # readings 0-2 and 3-5, averaged
    assert series.time_utc == sorted(series.time_utc)
    assert sum(series.values) / len(series.values) == pytest.approx(1499.5, rel=1e-3)
