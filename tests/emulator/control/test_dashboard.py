"""The dashboard in a real browser (headless Chromium driven by selenium): it lists the fleet, and what is done on
the page (schedule, approve, complete, tags, clock) is what the VMs then read on the metadata port; without the
token, or from another origin, it reads nothing."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from azimds import Emulator
from tests.support import ROOT, control, fetch

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra (make test installs it)")
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

SE = "/metadata/scheduledevents?api-version=2020-07-01"
TAGS = "/metadata/instance/compute/tagsList?api-version=2021-02-01"
FLEET = {"fleet": {"tags": {"costCenter": "42"},
                   "vms": [{"addresses": ["127.0.0.2"], "availabilitySet": "db", "compute": {"name": "db-1"}}],
                   "scaleSets": [{"name": "web", "capacity": 3, "addresses": "127.1.0.0", "faultDomains": 2,
                                  "updateDomains": 3, "tags": {"tier": "web"}}]}}
SCREENSHOT = ROOT / "docs" / "dashboard.png"  # the README's; rewritten when AZIMDS_UPDATE_SCREENSHOT=1 (or missing)
WAIT = 10


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed here (scripts/sysdeps.sh installs "
                    "them where it can)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1300", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    try:
        session = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    except WebDriverException as exc:
        pytest.skip(f"headless Chromium cannot run here: {exc.msg}")
    try:
        yield session
    finally:
        session.quit()


@pytest.fixture
def fleet() -> Iterator[Emulator]:
    with Emulator(FLEET, clock="manual") as imds:
        yield imds


def wait(browser: Any) -> WebDriverWait[Any]:
    return WebDriverWait(browser, WAIT)


def click(browser: Any, selector: str) -> None:
    """Click what ``selector`` finds once it is there; a list redrawn meanwhile is looked up again."""
    def clicked(driver: Any) -> bool:
        driver.find_element(By.CSS_SELECTOR, selector).click()
        return True

    WebDriverWait(browser, WAIT, ignored_exceptions=[NoSuchElementException, StaleElementReferenceException]
                  ).until(clicked)


def text_of(browser: Any, selector: str) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, selector).text)


def events_of(imds: Emulator, address: str) -> list[dict[str, Any]]:
    """The events document as the VM calling from ``address`` reads it."""
    reply = fetch(imds.url, SE, source=address)
    assert reply.status == 200
    events: list[dict[str, Any]] = reply.json()["Events"]
    return events


def tags_of(imds: Emulator, address: str) -> list[dict[str, str]]:
    reply = fetch(imds.url, TAGS, source=address)
    assert reply.status == 200
    tags: list[dict[str, str]] = reply.json()
    return tags


def test_the_page_lists_the_fleet_and_drives_its_events(browser: Any, fleet: Emulator, tmp_path: Path) -> None:
    browser.get(fleet.dashboard_url)
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "tr[data-vm='web_2']")))
    rows = browser.find_elements(By.CSS_SELECTOR, "#fleet-rows tr")
    assert [row.get_attribute("data-vm") for row in rows] == ["azimds-vm", "db-1", "web_0", "web_1", "web_2"]
    assert "127.1.0.1" in text_of(browser, "tr[data-vm='web_1']")
    assert "scale set of 3, 2 fault and 3 update domains" in text_of(browser, "#sets")
    assert "#" not in browser.current_url  # the token left the address bar (and the history)

    # schedule a Freeze for web_1 from the form: the VM at 127.1.0.1 sees it, and no other VM does
    click(browser, "tr[data-vm='web_1'] button")
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "vm-name"), "web_1"))
    Select(browser.find_element(By.ID, "ev-type")).select_by_visible_text("Freeze")
    browser.find_element(By.ID, "ev-duration").send_keys("5")
    browser.find_element(By.ID, "ev-description").send_keys("from the dashboard")
    browser.find_element(By.ID, "ev-submit").click()
    wait(browser).until(lambda _: events_of(fleet, "127.1.0.1"))
    [event] = events_of(fleet, "127.1.0.1")
    assert (event["EventType"], event["EventStatus"], event["Resources"], event["DurationInSeconds"],
            event["Description"]) == ("Freeze", "Scheduled", ["web_1"], 5, "from the dashboard")
    assert events_of(fleet, "127.0.0.2") == []  # db-1 is in no set with web_1
    row = f"tr[data-event='{event['EventId']}']"
    wait(browser).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, f"{row} .ev-status"), "Scheduled"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline .bar.active.scheduled")) == 1

    # the clock moves from the page (manual: nothing else moves it)
    before = control(fleet, "GET", "/v1/clock").json()["now"]
    click(browser, "button[data-advance='60']")
    wait(browser).until(lambda _: control(fleet, "GET", "/v1/clock").json()["now"] == before + 60)

    # approved by the VM it lists, a Freeze starts at once (NotBefore becomes "")
    click(browser, f"{row} button[data-action='approve']")
    wait(browser).until(lambda _: events_of(fleet, "127.1.0.1")[0]["EventStatus"] == "Started")
    assert events_of(fleet, "127.1.0.1")[0]["NotBefore"] == ""
    wait(browser).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, f"{row} .ev-status"), "Started"))
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#journal-rows tr")))

    # what changes elsewhere shows on the page by itself: a Reboot for web_2, seen by the whole scale set
    other = control(fleet, "POST", "/v1/events?vm=web_2", {"type": "Reboot", "notice": 1200}).json()["eventId"]
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, f"tr[data-event='{other}']")))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline .lane")) == 2
    _screenshot(browser, tmp_path)

    # completed: gone from the VM's document and from the page
    click(browser, f"{row} button[data-action='complete']")
    wait(browser).until(lambda _: [e["EventId"] for e in events_of(fleet, "127.1.0.1")] == [other])
    wait(browser).until(EC.invisibility_of_element_located((By.CSS_SELECTOR, row)))
    assert "/metadata/scheduledevents" in text_of(browser, "#journal-rows")


def test_tags_changed_on_the_page_are_what_the_vm_reads(browser: Any, fleet: Emulator) -> None:
    before = tags_of(fleet, "127.0.0.2")
    assert before == [{"name": "costCenter", "value": "42"}]  # inherited from the fleet: the page keeps it
    browser.get(fleet.dashboard_url)
    click(browser, "tr[data-vm='db-1'] button")
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "vm-name"), "db-1"))
    wait(browser).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#tags-rows tr")) == len(before))
    browser.find_element(By.ID, "tag-add").click()
    name, value = browser.find_elements(By.CSS_SELECTOR, "#tags-rows tr")[-1].find_elements(By.TAG_NAME, "input")
    name.send_keys("owner")
    value.send_keys("dash board;=1")
    browser.find_element(By.ID, "tags-save").click()
    wait(browser).until(lambda _: tags_of(fleet, "127.0.0.2") != before)
    assert tags_of(fleet, "127.0.0.2") == [*before, {"name": "owner", "value": "dash board;=1"}]
    assert {"name": "owner", "value": "dash board;=1"} not in tags_of(fleet, "127.1.0.0")  # another VM
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "status"), "tags of db-1 saved"))


def test_without_the_token_the_page_reads_nothing(browser: Any, fleet: Emulator) -> None:
    page = fleet.control_url + "/dashboard"
    browser.get(page)  # this origin has never seen the token (each emulator has its own port)
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "status"), "401"))
    assert browser.find_elements(By.CSS_SELECTOR, "#fleet-rows tr") == []
    assert text_of(browser, "#journal-rows") == ""
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/v1/fleet').then(r => done(r.status), e => done(String(e)));")
    assert status == 401

    # another origin (the metadata port's) cannot read the control plane even with the token: no CORS header
    browser.get(fleet.url + "/metadata/versions")
    outcome = browser.execute_async_script(
        "const [url, token, done] = arguments;"
        "fetch(url, {headers: {Authorization: 'Bearer ' + token}})"
        "  .then(r => r.text().then(t => done('read ' + t)), e => done(e.name));",
        fleet.control_url + "/v1/fleet", fleet.token)
    assert outcome == "TypeError"


def test_the_page_and_the_api_forbid_other_sites(fleet: Emulator) -> None:
    page = fetch(fleet.control_url, "/dashboard", metadata=False, headers={"Origin": "http://evil.example"})
    assert page.status == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert (page.headers["x-frame-options"], page.headers["x-content-type-options"],
            page.headers["referrer-policy"]) == ("DENY", "nosniff", "no-referrer")
    assert b"<script>" not in page.body and b"style=" not in page.body  # nothing inline for the CSP to refuse
    assert "set-cookie" not in page.headers
    for path in ("/dashboard/app.js", "/dashboard/style.css"):
        assert fetch(fleet.control_url, path, metadata=False).status == 200
    answers = [control(fleet, "GET", "/v1/fleet"), control(fleet, "GET", "/v1/fleet", token=""),
               fetch(fleet.control_url, "/v1/fleet", method="OPTIONS", metadata=False,
                     headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET",
                              "Access-Control-Request-Headers": "authorization"})]
    assert [reply.status for reply in answers] == [200, 401, 401]
    for reply in [page, *answers]:
        assert not any(name.startswith("access-control-") for name in reply.headers), reply.headers
        assert "set-cookie" not in reply.headers
    assert fetch(fleet.control_url, "/dashboard/nothing", metadata=False).status == 401  # only the page's files


def test_serve_prints_the_dashboard_link(serve: Any) -> None:
    proc = serve()
    lines = [proc.proc.stderr.readline() for _ in range(2)]
    control_url, token_dir = re.fullmatch(r"azimds: control plane (\S+) \(token in (\S+)/control-token\)\n",
                                          lines[0]).groups()  # type: ignore[union-attr]
    token = Path(token_dir, "control-token").read_text().strip()
    assert lines[1] == f"azimds: dashboard {control_url}/dashboard#token={token}\n"
    reply = fetch(control_url, "/v1/fleet", metadata=False, headers={"Authorization": f"Bearer {token}"})
    assert reply.status == 200 and reply.json()["total"] == 1


def _screenshot(browser: Any, tmp_path: Path) -> None:
    png = browser.get_screenshot_as_png()
    (tmp_path / "dashboard.png").write_bytes(png)
    if os.environ.get("AZIMDS_UPDATE_SCREENSHOT") == "1" or not SCREENSHOT.exists():
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(png)
    assert png.startswith(b"\x89PNG")
