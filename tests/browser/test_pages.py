"""The web pages in chromium against a live simulated system (``nudaq up --sim``).

The tests run in file order on one system: the overview goes live, a visitor without login
finds the controls disabled, a shifter logs in and acts, then the spectra (by then with
reactor-OFF data), trends and run quality pages. Screenshots go to test-output/browser/.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SCRIPT_ENTRY = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"> fill LN2'


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_overview_shows_the_running_system_and_updates_within_2s(live_system, page, screenshot):
    page.goto(live_system.url)
    status = live_system.api("/api/status")
    expect(page.locator("#run-number")).to_have_text(f"run {status['run']}")
    expect(page.locator("#run-state")).to_have_text("running")
    pulses = page.locator("#pulses-acv")
    expect(pulses).not_to_have_text("0")
    before = pulses.text_content()
    started = time.monotonic()
    page.wait_for_function(
        "old => document.querySelector('#pulses-acv').textContent !== old", arg=before, timeout=2000
    )
    assert time.monotonic() - started < 2.0
    # the builder catches up a backlog in the first seconds of a run; then the shown rates
    # (median of three updates) are the simulated singles rates
    live_system.wait("8 s of run", lambda: live_system.api("/api/status")["elapsed_s"] > 8, 20)
    shown = {"acv": [], "crv": []}
    for _ in range(3):
        for stream, values in shown.items():
            values.append(number(page.locator(f"#rate-{stream}").text_content()))
        time.sleep(1.0)
    sim = live_system.config.sim
    for stream, true_hz in (("acv", sim.acv_singles_hz), ("crv", sim.crv_singles_hz)):
        rate = sorted(shown[stream])[1]
        assert 0.8 * true_hz < rate < 1.25 * true_hz, (stream, shown[stream])
    expect(page.locator("#lost-hpge")).to_have_text("0")
    expect(page.locator("#uncovered-hpge")).to_have_text(re.compile(r"^0(\.0+)?$"))  # dead s
    expect(page.locator("#alarm-list")).to_contain_text("free disk space")
    # live: no stale banner, every value with its age, the monitor's alarms known
    expect(page.locator("#stale-banner")).to_be_hidden()
    expect(page.locator("#live-dot")).to_have_class(re.compile(r"\blive\b"))
    expect(page.locator("#bar-alarms .pill")).not_to_have_text("alarms unknown")
    for age in ("#reactor-power-age", "#streams-age", "#run-age", "#alarms-age"):
        expect(page.locator(age)).to_have_text(re.compile(r"^· (read )?\d s ago$"))
    elapsed = page.locator("#elapsed").text_content()
    page.wait_for_function(
        "old => document.querySelector('#elapsed').textContent !== old", arg=elapsed, timeout=2000
    )
    screenshot(page, "overview")


def test_actions_without_login_are_disabled_and_refused(live_system, page, screenshot):
    run = live_system.api("/api/status")["run"]
    page.goto(live_system.url + "control")
    expect(page.locator("#readonly-note")).to_be_visible()
    for button in ("#start", "#stop", "#new-run"):
        expect(page.locator(button)).to_be_disabled()
    screenshot(page, "control-logged-out")
    assert page.request.post(live_system.url + "api/run/stop").status == 401
    status = live_system.api("/api/status")
    assert status["state"] == "running" and status["run"] == run

    page.goto(live_system.url + "logbook")
    expect(page.locator("#entry-submit")).to_be_disabled()
    reply = page.request.post(live_system.url + "api/logbook", data={"text": "without login"})
    assert reply.status == 401
    assert live_system.api("/api/logbook", q="without login") == []

    page.goto(live_system.url + "alarms")
    expect(page.locator("button.ack").first).to_be_disabled()
    assert all(a["acked_utc"] is None for a in live_system.api("/api/alarms")["alarms"])


def test_token_line_names_the_configuration_key(live_system):
    line = next(x for x in live_system.stderr if "nudaq web:" in x)
    assert line.rstrip().endswith("(shifter token from the configuration key web.shifter_token)")
    assert "$" not in line


def test_shifter_logs_in_acknowledges_writes_and_controls_runs(
    live_system, page, screenshot, shifter_token
):
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(live_system.url + "alarms")
    page.fill("#login-name", "Alice")
    page.fill("#login-token", "wrong")
    page.click("#login")
    expect(page.locator("#login-error")).to_have_text("wrong token")
    page.fill("#login-token", shifter_token)
    page.click("#login")
    expect(page.locator("#shifter-name")).to_have_text("Alice")
    expect(page.locator("#readonly-note")).to_be_hidden()

    alarm = next(a for a in live_system.api("/api/alarms")["alarms"] if a["name"] == "disk_low")
    page.click(f"button.ack[data-alarm='{alarm['id']}']")
    expect(page.locator(f"#alarm-{alarm['id']}")).to_contain_text("by Alice")
    acked = next(a for a in live_system.api("/api/alarms")["alarms"] if a["id"] == alarm["id"])
    assert acked["acked_by"] == "Alice"
    screenshot(page, "alarms-acknowledged")

    page.goto(live_system.url + "logbook")
    page.fill("#entry-text", SCRIPT_ENTRY)
    page.click("#entry-submit")
    expect(page.locator("#entry-message")).to_have_text("written")
    entry = page.locator(".entry", has_text="fill LN2").first
    expect(entry.locator(".text")).to_have_text(SCRIPT_ENTRY)
    assert page.locator("#entries script, #entries img").count() == 0
    assert page.evaluate("window.pwned") is None
    stored = live_system.api("/api/logbook", q="fill LN2")[0]
    assert stored["author"] == "Alice" and stored["text"] == SCRIPT_ENTRY
    screenshot(page, "logbook")

    run = live_system.api("/api/status")["run"]
    page.goto(live_system.url + "control")
    page.click("#stop")
    expect(page.locator("#answer")).to_contain_text(f"stop: ok, run {run} stopped", timeout=60_000)
    assert live_system.api("/api/status")["state"] == "idle"
    page.fill("#comment", "after the LN2 fill")
    page.click("#start")
    expect(page.locator("#answer")).to_contain_text(f"run {run + 1} started", timeout=30_000)
    expect(page.locator("#run-number")).to_have_text(f"run {run + 1}")
    expect(page.locator("#run-state")).to_have_text("running")
    newest = live_system.api("/api/runs")[0]
    assert newest["number"] == run + 1 and newest["comment"] == "after the LN2 fill"
    screenshot(page, "control")


def test_spectra_page_shows_reactor_on_and_off(live_system, page, screenshot):
    live_system.wait(
        "reactor-OFF candidate spectrum has counts",
        lambda: (
            sum(live_system.api("/api/spectra", reactor="off", category="candidate")["counts"]) > 0
        ),
        60,
    )
    page.goto(live_system.url + "spectra")
    info = page.locator("#onoff-info")
    expect(info).to_contain_text("OFF: runs")
    on = live_system.api("/api/spectra", reactor="on", category="candidate")
    off = live_system.api("/api/spectra", reactor="off", category="candidate")
    text = info.text_content()
    on_counts = int(text.split("counts")[0].rsplit(" ", 2)[-2])
    off_counts = int(text.split("OFF:")[1].split("counts")[0].rsplit(" ", 2)[-2])
    assert 0 < on_counts <= sum(on["counts"]) and 0 < off_counts <= sum(off["counts"])
    legend = page.locator("#onoff-plot .u-legend")
    expect(legend).to_contain_text("reactor ON")
    expect(legend).to_contain_text("reactor OFF")
    expect(page.locator("#residual-plot .u-legend")).to_contain_text("ON − OFF")
    assert page.locator("#onoff-plot canvas").count() == 1
    screenshot(page, "spectra")
    page.select_option("#category", "all")
    page.select_option("#yscale", "linear")
    page.select_option("#range", "30")
    expect(page.locator("#onoff-plot")).to_have_attribute("data-shown", "all,30,5,linear")
    expect(info).to_contain_text("OFF: runs")
    screenshot(page, "spectra-all-linear")


def test_trends_and_run_quality_pages(live_system, page, screenshot, shifter_token):
    live_system.wait(
        "the live analysis recorded history",
        lambda: live_system.api("/api/history")["analysis"],
        30,
    )
    page.goto(live_system.url + "trends")
    expect(page.locator("#slow-plots h2").first).to_be_visible()
    expect(page.locator("#background-plot canvas")).to_have_count(1)
    screenshot(page, "trends")

    page.goto(live_system.url)
    page.fill("#login-name", "Bob")
    page.fill("#login-token", shifter_token)
    page.click("#login")
    expect(page.locator("#shifter-name")).to_have_text("Bob")
    page.goto(live_system.url + "quality")
    row = page.locator("#run-1")
    expect(row).to_be_visible()
    row.locator("select").select_option("bad")
    row.locator("input").fill("test pulses")
    row.locator("button").click()
    expect(page.locator("#quality-message")).to_have_text("run 1 marked bad")
    expect(page.locator("#run-1")).to_contain_text("test pulses")
    assert "1" not in page.locator("#analysis-runs").text_content().split(", ")
    run = next(r for r in live_system.api("/api/runs") if r["number"] == 1)
    assert run["quality"] == "bad" and not run["in_analysis"]
    screenshot(page, "quality")

    page.goto(live_system.url + "docs")
    expect(page.locator(".swagger-ui")).to_contain_text("/api/run/start")
