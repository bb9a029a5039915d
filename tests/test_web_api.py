"""The web view's JSON API through a plain HTTP client (urllib) on a real run over a real clip,
configured by a site file's `http:` section (its token checked on every route): a vocabulary
change through the API that gives the same table as `froster-edge labels --bundle` on the same
text, byte for byte, and reaches the decisions; the run's action events and their snapshots
as the --events file and the clips folder have them; the token rule off loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from froster_edge.bundle import manifest as mf

from .helpers import assert_one_line_error, cli
from .web_run import WebRun, fire_event, names_in_top, read_events, site_file

TOKEN = "k3Y-for-the-web-view-tests-0123456789"
GET_ROUTES = ["/", "/index.html", "/api/streams", "/api/streams/0.mjpg", "/api/streams/0.jpg", "/api/decisions?since=0",
              "/api/events", "/api/stats", "/api/vocabulary", "/api/search?q=yoga", "/no/such/route",
              "/../../etc/passwd"]


@pytest.fixture(scope="module")
def web(tiny_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("web_api")
    labels = root / "labels.npz"
    shutil.copy(tiny_bundle / mf.LABELS_FILE, labels)
    shutil.copy(labels, root / "original.npz")
    (root / "clips").mkdir()
    site = site_file(root, {"host": "127.0.0.1", "port": 0, "token": TOKEN}, root / "events.jsonl", root / "clips",
                     archive=root / "site.db")
    run = WebRun(tiny_bundle, labels, site=site)  # the token from the site file
    run.root, run.labels = root, labels
    run.wait_decision(lambda d: True)
    yield run
    run.stop()


def request(url: str, data: dict | bytes | None = None, headers: dict | None = None, method: str | None = None,
            read: int | None = None) -> tuple[int, bytes]:
    body = json.dumps(data).encode() if isinstance(data, dict) else data
    hdrs = {"Content-Type": "application/json"} if body is not None else {}
    req = urllib.request.Request(url, data=body, headers={**hdrs, **(headers or {})}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read(read) if read else r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_every_route_refuses_a_missing_or_wrong_token(web):
    base = web.url.rstrip("/")
    near = TOKEN[:-1] + ("x" if TOKEN[-1] != "x" else "y")  # right length, last character wrong
    for path in GET_ROUTES:
        sep = "&" if "?" in path else "?"
        for url, headers in [(base + path, None), (base + path, bearer(near)), (base + path, bearer("")),
                             (base + path + f"{sep}token={near}", None), (base + path, {"Authorization": TOKEN})]:
            status, body = request(url, headers=headers)
            assert status == 401, (url, headers, status)
            assert "token" in json.loads(body)["error"]
    for method in ("POST", "PUT", "DELETE", "HEAD"):
        status, _ = request(base + "/api/vocabulary", {"add": "juggling"}, bearer(near), method=method)
        assert status == 401, method
    status, _ = request(base + f"/api/vocabulary?token={TOKEN}", {"add": "juggling"})  # ?token= is for GET only
    assert status == 401
    for path in GET_ROUTES:  # the right token opens every route (and only the page's own routes exist)
        status, body = request(base + path, headers=bearer(TOKEN), read=4096 if path.endswith(".mjpg") else None)
        assert status == (404 if path in ("/no/such/route", "/../../etc/passwd") else 200), (path, status)
        if path.endswith(".mjpg"):
            assert body.startswith(b"--froster-edge-frame\r\nContent-Type: image/jpeg") and b"\xff\xd8" in body
    status, body = request(base + f"/api/streams/0.jpg?token={TOKEN}")  # the page's way: ?token= on images
    assert status == 200 and body[:2] == b"\xff\xd8"
    status, body = request(base + f"/?token={TOKEN}")
    assert status == 200 and b"froster-edge" in body


def test_an_action_added_through_the_api_is_the_labels_commands_table(web, tiny_bundle):
    base, text = web.url.rstrip("/"), "Juggling: a person keeps three balls in the air"
    status, body = request(base + "/api/vocabulary", {"add": text}, bearer(TOKEN))
    assert status == 200, body
    assert json.loads(body)["actions"][-1] == {"name": "Juggling", "text": text}
    # the same text through `froster-edge labels --bundle ... --append` onto the table as it was
    reference = web.root / "reference.npz"
    shutil.copy(web.root / "original.npz", reference)
    (web.root / "new.txt").write_text(text + "\n")
    proc = subprocess.run([sys.executable, "-m", "froster_edge.cli", "labels", "--bundle", str(tiny_bundle),
                           "--classes", str(web.root / "new.txt"), "--append", "-o", str(reference)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    with np.load(web.labels) as got, np.load(reference) as want:
        assert sorted(got.files) == sorted(want.files)
        for key in want.files:
            assert got[key].dtype == want[key].dtype and got[key].tobytes() == want[key].tobytes(), key
    # the run swaps the table in between decisions and names the new action in its top-k
    decision = web.wait_decision(lambda d: "Juggling" in names_in_top(d))
    assert len(decision["top"]) == 13
    status, body = request(base + "/api/decisions", headers=bearer(TOKEN))
    latest = json.loads(body)
    assert "Juggling" in latest["classes"][0] and latest["labels_versions"][0] >= 2
    status, body = request(base + "/api/stats", headers=bearer(TOKEN))
    changes = json.loads(body)["web"]["vocabulary_changes"]
    assert changes and changes[-1]["action"] == "Juggling" and changes[-1]["submit_to_decision_s"] > 0


def test_a_refused_change_says_why(web):
    base = web.url.rstrip("/")
    for data, headers, status, reason in [
        ({"add": "   "}, {}, 400, "empty"),
        ({"add": "yoga"}, {}, 400, "already in the table"),
        ({"remove": "no such action"}, {}, 400, "not in the label table"),
        ({"rename": "x"}, {}, 400, '{"add"'),
        (b"{not json", {}, 400, "not valid JSON"),
        ({"add": "x"}, {"Content-Type": "text/plain"}, 415, "application/json"),
        (json.dumps({"add": "x" * 20_000}).encode(), {}, 413, "over 16384 bytes"),
    ]:
        got, body = request(base + "/api/vocabulary", data, {**bearer(TOKEN), **headers})
        assert got == status and reason in json.loads(body)["error"], (data, got, body)


def test_events_and_their_snapshots_through_the_api(web):
    """A real event (start, end, peak JPEG) as the run's --events file and clips folder have it;
    its snapshot served by event id behind the token, never by a name or path the client gives."""
    base = web.url.rstrip("/")
    end, made = fire_event(web, web.labels, web.root / "events.jsonl")
    # the segmentation rule, independently: the event starts at the first decision made with the
    # cut table and peaks at its best score there
    assert (end["start_media"], end["start_time"]) == (made[0]["media_time"], made[0]["time"])
    assert end["peak_score"] == max(d["score"] for d in made) and not end["interrupted"]
    done = web._wait(lambda: next((e for e in read_events(web.root / "events.jsonl") if e["phase"] == "clip"
                                   and e["id"] == end["id"]), None), 60, "the event's clip record")
    assert done == {**end, "phase": "clip", "clip": done["clip"], "snapshot": done["snapshot"], "error": None}
    assert end["clip"] is None and end["snapshot"] is None  # the end names no file: none was final then
    snapshot = web.root / "clips" / done["snapshot"]
    assert snapshot.is_file() and (web.root / "clips" / done["clip"]).is_file()  # on disk when named

    def listed():
        status, body = request(base + "/api/events", headers=bearer(TOKEN))
        assert status == 200
        return next((e for e in json.loads(body)["events"].get("clip", []) if e["id"] == end["id"]
                     and e["snapshot_url"]), None)

    got = web._wait(listed, 60, "event with its snapshot in the API")
    url = got.pop("snapshot_url")
    assert got == {**done, "phase": "end"}  # the API's record: the "end" line, its files from the "clip" line
    assert [e["id"] for e in read_events(web.root / "events.jsonl")].count(end["id"]) == 3  # start, end, clip
    status, body = request(base + url, headers=bearer(TOKEN))
    assert status == 200 and body == snapshot.read_bytes() and body[:2] == b"\xff\xd8"
    assert request(base + url)[0] == 401 and request(base + url, headers=bearer(TOKEN[::-1]))[0] == 401
    for path in [f"/api/events/{snapshot.stem}.jpg", f"/api/events/..%2Fclips%2F{snapshot.stem}.jpg",
                 f"/api/events/{end['id']}x.jpg", "/api/events/%2Fetc%2Fpasswd.jpg"]:  # names, paths: not ids
        status, body = request(base + path, headers=bearer(TOKEN))
        assert status == 404 and "no snapshot" in json.loads(body)["error"], path


def test_the_archive_searched_through_the_api_behind_the_token(web):
    """The run's archive (the site file's `archive:`): a search answers ranges whose thumbnail and,
    for a decision of the event fired above, clip are served by decision id behind the token."""
    import sqlite3

    base, db = web.url.rstrip("/"), web.root / "site.db"

    def clipped():
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT id, clip FROM decisions WHERE clip IS NOT NULL LIMIT 1").fetchone()
        finally:
            conn.close()

    decision, clip = web._wait(lambda: (row := clipped()) and Path(row[1]).is_file() and row, 120, "archived clip")
    assert Path(clip).parent == web.root / "clips"
    status, body = request(base + f"/api/archive/{decision}.mp4", headers=bearer(TOKEN))
    assert status == 200 and body == Path(clip).read_bytes()
    for path in (f"/api/archive/{decision}.mp4", "/api/search?q=yoga"):
        assert request(base + path)[0] == 401
    status, body = request(base + "/api/search?q=yoga&top=100", headers=bearer(TOKEN))
    assert status == 200, body
    result = json.loads(body)
    ranges = result["queries"][0]["ranges"]
    assert result["archive_rows"] > 0 and ranges and "archive" not in result
    assert all(r["camera"] == "clip" and "clip" not in r for r in ranges)  # no path of the box in the answer
    thumbs = [r["thumb_url"] for r in ranges if r["thumb_url"]]
    assert thumbs
    status, body = request(base + thumbs[0] + f"?token={TOKEN}")  # the page's way for images
    assert status == 200 and body[:2] == b"\xff\xd8"
    assert request(base + thumbs[0])[0] == 401
    for bad in ("/api/search", "/api/search?q=yoga&since=soon"):
        status, body = request(base + bad, headers=bearer(TOKEN))
        assert status == 400 and json.loads(body)["error"], bad
    assert request(base + "/api/archive/999999999.jpg", headers=bearer(TOKEN))[0] == 404


@pytest.mark.parametrize("http, reason", [
    ({"host": "0.0.0.0", "port": 0}, "reachable from other machines"),
    ({"host": "0.0.0.0", "port": 0, "token": "short"}, "at least 16 characters"),
])
def test_a_site_file_off_loopback_needs_a_token(tiny_bundle, tmp_path, monkeypatch, http, reason):
    """The token rule for the site file's `http:` section: another address without a token (or
    with one too short to resist guessing) is refused in one line before anything is loaded."""
    site = site_file(tmp_path, http, tmp_path / "events.jsonl", tmp_path)
    monkeypatch.delenv("FROSTER_EDGE_HTTP_TOKEN", raising=False)
    assert_one_line_error(cli("run", "--bundle", str(tiny_bundle), "--config", str(site)), 1, reason)


def test_another_address_without_a_token_refuses_to_start(tiny_bundle, monkeypatch):
    monkeypatch.delenv("FROSTER_EDGE_HTTP_TOKEN", raising=False)
    proc = cli("run", "--bundle", str(tiny_bundle), "--source", "examples/clips/stgcn_clean_and_jerk.mp4", "--http", "0.0.0.0:0")
    assert_one_line_error(proc, 1, "reachable from other machines")
