"""The pages tell the truth when there is no live data: ``nudaq web`` alone (no DAQ, no
monitor) says in red that there is no data since the newest reading, shows every value with
its age, calls the alarm state unknown, and keeps the shifter's controls disabled until a
shifter logs in; on a dead database every page shows the red "database unavailable" banner.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import POWER_AGE

pytestmark = [pytest.mark.browser]
RED = "rgb(74, 28, 28)"
"""The banners' background (nudaq.css .banner)."""


def utc_text(lone_web) -> str:
    return lone_web.power_utc.strftime("%Y-%m-%d %H:%M:%S UTC")


def test_lone_web_server_says_no_data_since_and_alarms_unknown(lone_web, page, screenshot):
    page.goto(lone_web.url)
    banner = page.locator("#stale-banner")
    expect(banner).to_be_visible()
    expect(banner).to_have_text(re.compile(r"^no data since (\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d$"))
    expect(banner).to_have_attribute("title", re.compile(re.escape(utc_text(lone_web))))
    local = "iso => new Date(iso).toTimeString().slice(0, 8)"
    shown = page.evaluate(local, lone_web.power_utc.isoformat())
    assert banner.text_content().endswith(shown)  # the browser's local time of the reading
    assert banner.evaluate("b => getComputedStyle(b).backgroundColor") == RED
    expect(page.locator("#live-dot")).not_to_have_class(re.compile(r"\blive\b"))
    badge = page.locator("#bar-alarms .pill")
    expect(badge).to_have_text("alarms unknown")
    expect(badge).to_have_class(re.compile(r"\bunknown\b"))
    expect(page.locator("#alarms-unknown")).to_contain_text("alarm state unknown")
    expect(page.locator("#alarm-list")).to_contain_text("LN2 level")  # as last recorded
    expect(page.locator("#reactor-power")).to_have_text("2,900 MW")
    hours = POWER_AGE.total_seconds() / 3600
    expect(page.locator("#reactor-power-age")).to_have_text(f"· {hours:.1f} h ago")
    expect(page.locator("#reactor-power-age")).to_have_attribute("title", utc_text(lone_web))
    expect(page.locator("#snapshot-age")).to_have_text("none received")
    screenshot(page, "overview-no-data")


def test_shifter_controls_are_disabled_until_login(lone_web, page, screenshot):
    page.goto(lone_web.url + "control")
    for button in ("#start", "#stop", "#new-run"):
        expect(page.locator(button)).to_be_disabled()
    page.goto(lone_web.url + "logbook")
    expect(page.locator("#entry-submit")).to_be_disabled()
    page.goto(lone_web.url + "quality")
    expect(page.locator("#run-1 button")).to_be_disabled()
    page.goto(lone_web.url + "alarms")
    ack = page.locator("button.ack").first
    expect(ack).to_be_disabled()
    screenshot(page, "alarms-logged-out")

    page.fill("#login-name", "Erin")
    page.fill("#login-token", lone_web.token)
    page.click("#login")
    expect(page.locator("#shifter-name")).to_have_text("Erin")
    expect(ack).to_be_enabled()
    page.goto(lone_web.url + "control")  # the session holds across pages
    for button in ("#start", "#stop", "#new-run"):
        expect(page.locator(button)).to_be_enabled()
    page.goto(lone_web.url + "logbook")
    expect(page.locator("#entry-submit")).to_be_enabled()
    page.goto(lone_web.url + "quality")
    expect(page.locator("#run-1 button")).to_be_enabled()
    page.click("#logout")
    expect(page.locator("#run-1 button")).to_be_disabled()


def test_lone_web_token_line_names_the_generated_file(lone_web):
    path = lone_web.data_dir / "shifter-token"
    assert lone_web.line.rstrip().endswith(f"(shifter token generated in {path})")


def test_dead_database_shows_the_banner_and_the_live_part(dead_database_web, page, screenshot):
    page.goto(dead_database_web)
    banner = page.locator("#db-banner")
    expect(banner).to_be_visible()
    expect(banner).to_have_text("database unavailable")
    assert banner.evaluate("b => getComputedStyle(b).backgroundColor") == RED
    expect(page.locator("#run-state")).to_have_text("unreachable")  # the live part goes on
    expect(page.locator("#bar-alarms .pill")).to_have_text("alarms unknown")
    screenshot(page, "overview-database-unavailable")
    page.goto(dead_database_web + "spectra")
    expect(page.locator("#db-banner")).to_be_visible()


@pytest.mark.parametrize("path", ["alarms", "logbook", "quality", "trends"])
def test_every_page_says_database_unavailable(dead_database_web, page, path):
    """The pages that read SQL show the banner, and their failed loads raise no JavaScript
    error (the page fixture fails on one)."""
    page.goto(dead_database_web + path)
    expect(page.locator("#db-banner")).to_be_visible()
    expect(page.locator("#statusbar")).to_contain_text("run")
