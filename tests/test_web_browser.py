"""The web view in a real browser: Debian's chromium, headless, driven through chromium-driver by
selenium, on a real run over a real clip. The page shows a live frame and a decision; an action
typed into the page reaches the run's decisions (the run's own output names it) and the page's
top-k; a refused entry shows its reason; an action event appears with its snapshot loaded; the
screenshot is not blank. One page load for all of it."""

from __future__ import annotations

import json
import shutil
import sqlite3
import urllib.error
import urllib.parse
import urllib.request

import cv2
import numpy as np
import pytest

from froster_edge.bundle import manifest as mf

from .helpers import CLIPS
from .trained import CAMERAS
from .web_run import CLIP, WebRun, fire_event, names_in_top

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900"]


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # no Selenium Manager download
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait(driver, script: str, timeout: float, what: str):
    """Until the JavaScript expression `script` is truthy; its value. Write it null-safe (`?.`): the
    page builds a camera's card only after its first poll, and a throwing script fails the wait at once."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: d.execute_script("return " + script))
    except TimeoutException:
        raise AssertionError(f"the page showed no {what} within {timeout} s") from None


def test_the_page_shows_the_run_and_takes_a_new_action(browser, tiny_bundle, tmp_path):
    labels, events, clips = tmp_path / "labels.npz", tmp_path / "events.jsonl", tmp_path / "clips"
    shutil.copy(tiny_bundle / mf.LABELS_FILE, labels)
    clips.mkdir()
    # events with the default hysteresis; the camera is named by its source path ('/' in its event ids)
    run = WebRun(tiny_bundle, labels, "--events", str(events), "--clips", str(clips))
    try:
        browser.get(run.url)
        wait(browser, "document.querySelector('.camera img')?.naturalWidth", 120, "live frame")
        wait(browser, "document.querySelectorAll('.camera .topk li').length", 120, "decision")
        shown = browser.execute_script("return [...document.querySelectorAll('#vocab-list li')].map(li => li.dataset.name)")
        assert "yoga" in shown and "Juggling" not in shown
        before = len(run.decisions)
        browser.find_element("id", "vocab-input").send_keys("Juggling: a person keeps three balls in the air")
        browser.find_element("id", "vocab-add").click()
        wait(browser, "document.querySelector('#vocab-list li[data-name=\"Juggling\"]')", 600, "new action in the list")
        # the run's own output: the next decisions are made with the new table
        decision = run.wait_decision(lambda d: "Juggling" in names_in_top(d), after=before)
        assert len(decision["top"]) == 13
        wait(browser, "document.querySelector('.topk li[data-label=\"Juggling\"]')", 60, "new action in the top-k")
        uses = wait(browser, "document.querySelector('.camera .uses')?.dataset.classes === '13' && "
                    "document.querySelector('.camera .uses').textContent", 60, "camera's vocabulary")
        assert uses == "all 13 actions"
        status = wait(browser, "document.querySelector('#vocab-status').textContent.includes('is in use') && "
                      "document.querySelector('#vocab-status').textContent", 60, "swap confirmation")
        assert "Juggling" in status
        # a refused entry: the reason is on the page, the table unchanged
        browser.find_element("id", "vocab-input").send_keys("YOGA")
        browser.find_element("id", "vocab-add").click()
        error = wait(browser, "document.querySelector('#vocab-error').textContent", 60, "refusal")
        assert "already in the table" in error
        # an action event: its row on the page, with the peak snapshot loaded from the API
        end, _ = fire_event(run, labels, events)
        row = f'.camera .events li[data-id="{end["id"]}"][data-phase="end"]'
        wait(browser, f"document.querySelector('{row} img') && document.querySelector('{row} img').complete && "
             f"document.querySelector('{row} img').naturalWidth", 120, "event snapshot")
        assert end["label"] in browser.find_element("css selector", row).text
        png = np.frombuffer(browser.get_screenshot_as_png(), np.uint8)
        gray = cv2.imdecode(png, cv2.IMREAD_GRAYSCALE)
        assert gray.shape[0] > 100 and gray.var() > 100, gray.var()  # a blank page has variance 0
        view = cv2.imdecode(np.frombuffer(browser.find_element("css selector", ".camera img").screenshot_as_png,
                                          np.uint8), cv2.IMREAD_GRAYSCALE)
        assert view.var() > 100, view.var()  # the live view shows the clip, not a blank box
        # without a token the server answers only to its loopback name (no DNS rebinding)
        req = urllib.request.Request(run.url + "api/stats", headers={"Host": "attacker.example:80"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=30)
        assert refused.value.code == 403
    finally:
        log = run.stop()
    assert "Traceback" not in log, log


def test_the_search_box_finds_the_archived_run(browser, tiny_bundle, tmp_path):
    """A run with --archive: an action typed into the page's search box lists the camera's time
    ranges, best first, as the API answers the same query, with thumbnails loaded."""

    labels, db = tmp_path / "labels.npz", tmp_path / "site.db"
    shutil.copy(tiny_bundle / mf.LABELS_FILE, labels)
    run = WebRun(tiny_bundle, labels, "--archive", str(db))
    try:
        def archived() -> int:
            conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
            try:
                return conn.execute("SELECT COUNT(*) FROM thumbs").fetchone()[0]
            except sqlite3.Error:
                return 0
            finally:
                conn.close()

        run._wait(lambda: archived() >= 1 and len(run.decisions) >= 4, 180, "archived decisions")
        browser.get(run.url)
        browser.find_element("id", "search-input").send_keys("clean and jerk")
        browser.find_element("id", "search-go").click()
        shown = wait(browser, "document.querySelectorAll('#search-results li').length && "
                     "[...document.querySelectorAll('#search-results li')].map(li => [li.dataset.camera, "
                     "Number(li.dataset.score)])", 120, "search results")
        assert all(camera == str(CLIP) for camera, _ in shown)
        scores = [score for _, score in shown]
        assert scores == sorted(scores, reverse=True)  # best first
        with urllib.request.urlopen(run.url + "api/search?q=clean%20and%20jerk", timeout=60) as r:
            answer = json.loads(r.read())  # the same route the page used: the same kind of answer
        assert answer["queries"][0]["ranges"][0]["camera"] == str(CLIP)
        wait(browser, "[...document.querySelectorAll('#search-results img')].some(i => i.naturalWidth > 0)", 60,
             "thumbnail")
        browser.find_element("id", "search-input").clear()
        browser.find_element("id", "search-go").click()
        error = wait(browser, "document.querySelector('#search-error').textContent", 60, "refusal of an empty query")
        assert "give a query" in error
    finally:
        run.stop()


def test_the_search_box_finds_each_clip_s_camera_with_a_trained_bundle(browser, trained_bundle, tmp_path):
    """Issue 30's "done when" in the browser, with the tiny student trained on the clips (tests/trained.py).
    One camera per clip, read at full speed, archived; a fourth camera loops another clip in real time
    with one decision only, so the run and its web view stay up with the archive unchanged once the
    three have ended. Each clip's action typed into the search box lists that clip's camera first,
    and the page lists exactly the ranges the API answers."""
    bundle, counts = trained_bundle
    labels, db = tmp_path / "labels.npz", tmp_path / "site.db"
    shutil.copy(bundle / mf.LABELS_FILE, labels)
    cameras = [{"name": name, "source": str(CLIPS / clip)} for name, (clip, _) in CAMERAS.items()]
    cameras.append({"name": "idle", "source": str(CLIPS / "mmaction2_test_v_ApplyEyeMakeup.avi"), "realtime": True,
                    "loop": True, "hop": 1_000_000})
    site = tmp_path / "site.yaml"
    site.write_text(json.dumps({"cameras": cameras, "archive": {"file": str(db), "commit_s": 0.2},
                                "http": {"host": "127.0.0.1", "port": 0}}))

    def archived() -> dict[str, list[float]]:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        times: dict[str, list[float]] = {}
        try:
            for camera, t in conn.execute("SELECT camera, time FROM decisions ORDER BY id"):
                times.setdefault(camera, []).append(t)
        except sqlite3.Error:
            pass
        finally:
            conn.close()
        return times

    run = WebRun(bundle, labels, site=site)
    try:
        want = {**counts, "idle": 1}  # every decision the three cameras make (a plain run's count), and idle's one
        times = run._wait(lambda: (t := archived()) and {c: len(v) for c, v in t.items()} == want and t, 180,
                          "archive of every camera's decisions")
        browser.get(run.url)
        for camera, (_, action) in CAMERAS.items():
            browser.execute_script("document.getElementById('search-results').replaceChildren()")
            box = browser.find_element("id", "search-input")
            box.clear()
            box.send_keys(action)
            browser.find_element("id", "search-go").click()
            shown = wait(browser, "document.querySelectorAll('#search-results li').length && "
                         "[...document.querySelectorAll('#search-results li')].map(li => [li.dataset.camera, "
                         "Number(li.dataset.start), Number(li.dataset.end)])", 120, f"search results for {action!r}")
            assert shown[0][0] == camera, (action, shown)
            first_start, first_end = shown[0][1:]
            assert times[camera][0] <= first_start <= first_end <= times[camera][-1]
            with urllib.request.urlopen(run.url + "api/search?q=" + urllib.parse.quote(action), timeout=60) as r:
                answer = json.loads(r.read())
            assert [list(x) for x in shown] == [[r["camera"], r["start"], r["end"]] for r in answer["queries"][0]["ranges"]]
            wait(browser, "document.querySelector('#search-results li img')?.naturalWidth", 60, f"thumbnail of {camera}")
    finally:
        log = run.stop()
    assert "Traceback" not in log, log
