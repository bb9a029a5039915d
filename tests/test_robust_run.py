"""Attacks on `froster-edge run`'s outputs and shutdown (issue 17, classes 5 and 4): bad output
destinations fail in one line before the first frame; any number of signals, close together,
still give the stats, the --stats-json file and a playable recording; a signal while a stream is
still connecting stops the run there with its stats."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading

import cv2
import pytest

from froster_edge.bundle import manifest as mf
from froster_edge.errors import ConfigError
from froster_edge.io import Output, check_outputs
from froster_edge.runtime.command import RunRequest
from froster_edge.runtime.command import run as run_request
from froster_edge.runtime.options import RunOptions

from .helpers import CLIPS, LiveRun, assert_one_line_error, cli

CLIP = CLIPS / "stgcn_clean_and_jerk.mp4"


def refused(bundle, capsys, match: str, source=CLIP, **kw) -> None:
    """The run refuses before loading anything: ConfigError, and nothing on stdout or stderr before it."""
    req = RunRequest(bundle, RunOptions(sources=[str(source)], backend="ort-cpu"), jsonl=True, **kw)
    with pytest.raises(ConfigError, match=match):
        run_request(req)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_a_folder_as_stats_json_or_record_is_refused_before_the_first_frame(tiny_bundle, tmp_path, capsys):
    (tmp_path / "stats").mkdir()
    (tmp_path / "video.mp4").mkdir()
    refused(tiny_bundle, capsys, "--stats-json .*stats is a folder", stats_json=tmp_path / "stats")
    refused(tiny_bundle, capsys, "--record .*video.mp4 is a folder", record=tmp_path / "video.mp4")


def test_unwritable_destinations_are_refused(tiny_bundle, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    refused(tiny_bundle, capsys, r"file\.txt/stats\.json: Not a directory", stats_json=tmp_path / "file.txt" / "stats.json")
    if os.access("/proc", os.W_OK) and os.getuid() != 0:
        pytest.skip("/proc is writable here")
    refused(tiny_bundle, capsys, "cannot write in /proc", stats_json="/proc/froster-stats.json")
    refused(tiny_bundle, capsys, "is not a regular file", stats_json="/dev/null")


def test_an_input_is_never_an_output(tiny_bundle, tmp_path, capsys):
    source = tmp_path / "clip.mp4"
    shutil.copy(CLIP, source)
    os.link(source, tmp_path / "same.mp4")
    os.symlink(source, tmp_path / "link.mp4")
    video = source.read_bytes()
    for record in (source, tmp_path / "same.mp4", tmp_path / "link.mp4"):
        refused(tiny_bundle, capsys, "is the input .*clip.mp4", source=source, record=record)
    assert source.read_bytes() == video
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    for name in (mf.MANIFEST_FILE, mf.LABELS_FILE, mf.VIDEO_ONNX):
        refused(bundle, capsys, f"is the input .*{name}", stats_json=bundle / name)
    mf.verify_bundle(bundle)
    refused(tiny_bundle, capsys, "is also given to --stats-json", record=tmp_path / "a.mp4", stats_json=tmp_path / "a.mp4")


def test_the_cli_says_it_in_one_line_with_exit_1(tiny_bundle, tmp_path):
    (tmp_path / "stats").mkdir()
    proc = cli("run", "--bundle", str(tiny_bundle), "--source", str(CLIP), "--jsonl", "--stats-json", str(tmp_path / "stats"))
    assert_one_line_error(proc, 1, "--stats-json")
    assert proc.stdout == ""


def test_check_outputs_takes_registered_folders(tmp_path):
    (tmp_path / "events.jsonl").write_text("")
    check_outputs([Output(tmp_path / "clips", "--clips", folder=True), Output(tmp_path / "new" / "e.jsonl", "--events")])
    with pytest.raises(ConfigError, match="--clips .* exists and is not a folder"):
        check_outputs([Output(tmp_path / "events.jsonl", "--clips", folder=True)])


def playable_frames(path) -> int:
    """Frames OpenCV decodes from the file; ffprobe must also read it as a video."""
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_type",
                            "-of", "csv=p=0", str(path)], capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and probe.stdout.strip() == "video", probe.stderr
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


@pytest.mark.parametrize("signals", [
    (signal.SIGTERM, signal.SIGTERM),
    (signal.SIGINT, signal.SIGTERM, signal.SIGINT),
])
def test_signals_close_together_still_give_stats_json_and_a_playable_recording(tiny_bundle, tmp_path, signals):
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe is not installed (Debian's ffmpeg package has it)")
    record, stats_json = tmp_path / "out.mp4", tmp_path / "stats.json"
    live = LiveRun("--bundle", str(tiny_bundle), "--source", str(CLIP), "--realtime", "--loop", "--sample-fps", "8",
                   "--hop", "1", "--record", str(record), "--stats-json", str(stats_json))
    for _ in range(2):
        live.decision()
    for sig in signals[:-1]:
        live.proc.send_signal(sig)
    assert live.stop(signals[-1], timeout=60) == 0, live.stderr
    err = "\n".join(live.stderr)
    assert "Traceback" not in err and "froster-edge: stopped" in err and "capture_to_decision" in err
    stats = json.loads(stats_json.read_text())
    assert stats["interrupted"] and stats["signals"] >= 1 and stats["decisions"] >= 2
    assert playable_frames(record) >= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "stats.json"]  # no hidden .partial left


def test_a_signal_while_a_stream_is_still_connecting_stops_there_with_stats(tiny_bundle, tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    connected = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:  # accept, then never answer: the stream stays "connecting"
        try:
            conn, _ = server.accept()
        except OSError:
            return
        held.append(conn)
        connected.set()

    threading.Thread(target=accept, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/live.mjpg"
    live = LiveRun("--bundle", str(tiny_bundle), "--source", url, "--stats-json", str(tmp_path / "stats.json"))
    try:
        assert connected.wait(120), live.stderr
        assert live.stop(signal.SIGTERM, timeout=60) == 0, live.stderr
    finally:
        live.kill()
        server.close()
        for conn in held:
            conn.close()
    err = "\n".join(live.stderr)
    assert "Traceback" not in err and "froster-edge: stopped" in err and "cannot be opened" not in err
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["interrupted"] and stats["decisions"] == 0 and stats["streams"] == []


def test_run_and_predict_share_one_decoding_policy(tiny_bundle):
    """discard_first_keyframe.mp4 declares 30 frames and decodes cleanly to 25: both use the 25."""
    from froster_edge.video import decode_video

    from .helpers import shared_data

    path = shared_data("video_robustness/torchcodec") / "discard_first_keyframe.mp4"
    frames, info = decode_video(path)
    assert (len(frames), info.declared_frames) == (25, 30)
    proc = cli("run", "--bundle", str(tiny_bundle), "--source", str(path), "--jsonl", "--sample-fps", "25", "--hop", "1")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 25 - 4 + 1  # every frame sampled, T=4, hop 1
    assert "25 frames read" in proc.stderr and "error" not in proc.stderr


def test_a_video_file_behind_an_http_url_says_why_it_decides_nothing(tiny_bundle, tmp_path):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=96x72:rate=5",
                    "-t", "40", "-c:v", "mpeg4", str(tmp_path / "long.avi")], check=True, timeout=120)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proc = cli("run", "--bundle", str(tiny_bundle), "--source", f"http://127.0.0.1:{server.server_port}/long.avi")
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("froster-edge: error:") and "not a live stream" in last and "Traceback" not in proc.stderr
    assert "capture_to_decision" in proc.stderr or "decisions in" in proc.stderr  # the stats came first


def test_every_commands_json_file_is_checked_before_any_work(tmp_path):
    (tmp_path / "report").mkdir()
    assert_one_line_error(cli("info", "--json", str(tmp_path / "report")), 1, "--json")
    assert_one_line_error(cli("bench", "--bundle", str(tmp_path), "--json", "/proc/froster.json"), 1, "cannot write in /proc")
