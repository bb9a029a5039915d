"""A real RTSP server for tests: GStreamer's gst-rtsp-server (Debian: python3-gi,
gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good) run by the system Python as a subprocess,
serving a real clip as RTP/H.264 at its own pace, with basic or digest authentication.

ffmpeg encodes the clip once, repeated to a few minutes, small and with a key frame every second;
the server only demuxes and packetises it (the two cores stay free for the run under test). `RtspServer.pause()` stops
the server process (SIGSTOP): its sockets stay open and nothing more arrives, a network black hole.

Run as a script (by /usr/bin/python3, which has the GObject bindings) it is the server itself.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
FPS = 15


def gstreamer_missing() -> str | None:
    """Why no RTSP server can run here, or None."""
    if shutil.which("ffmpeg") is None:
        return "ffmpeg is not installed (apt-get install ffmpeg)"
    if not Path(SYSTEM_PYTHON).is_file():
        return f"{SYSTEM_PYTHON} is missing (GStreamer's Python bindings live there)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import GstRtspServer, Gst; Gst.init(None); "
                            "assert all(Gst.ElementFactory.find(e) for e in ('qtdemux', 'h264parse', 'rtph264pay'))"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return ("GStreamer's RTSP server is not installed (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 "
                "gstreamer1.0-plugins-good; .ci/run does it as root)")
    return None


def encode_clip(clip: Path, out: Path, repeat: int = 30, width: int = 320) -> Path:
    """The clip as the server's input: H.264 in MP4, `repeat` times over, FPS frames a second."""
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-stream_loop", str(repeat - 1),
                    "-i", str(clip), "-an", "-vf", f"scale={width}:-2,fps={FPS}", "-c:v", "libx264", "-preset",
                    "ultrafast", "-g", str(FPS), "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


class RtspServer:
    """gst-rtsp-server on a free 127.0.0.1 port serving `video` (encode_clip's) at rtsp://127.0.0.1:PORT/cam.

    user/password: None for an open stream; auth "basic" or "digest". `start()` again after
    `kill()` serves on the same port (with new credentials if given)."""

    def __init__(self, video: Path, user: str | None = None, password: str | None = None, auth: str = "basic",
                 port: int | None = None):
        from .helpers import free_port

        self.video, self.user, self.password, self.auth = video, user, password, auth
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.transports: list[str] = []  # the Transport header of each client's SETUP, as the server got it

    def url(self, user: str | None = None, password: str | None = None, path: str = "cam") -> str:
        cred = f"{user}:{password}@" if user is not None and password is not None else f"{user}@" if user else ""
        return f"rtsp://{cred}127.0.0.1:{self.port}/{path}"

    def start(self, password: str | None = None) -> "RtspServer":
        if password is not None:
            self.password = password
        cmd = [SYSTEM_PYTHON, __file__, str(self.port), str(self.video), self.auth, self.user or "", self.password or ""]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()  # "listening" once the server is attached
        if "listening" not in line:
            rest = self.proc.stdout.read() if self.proc.poll() is not None else ""
            raise AssertionError(f"the RTSP server did not start: {line}{rest}")
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"the RTSP server does not listen on {self.port}")

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            if line.startswith("transport "):
                self.transports.append(line.split(" ", 1)[1].strip())

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> "RtspServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()


def main(argv: list[str]) -> None:
    """The server: PORT VIDEO basic|digest USER PASSWORD (an empty USER: no authentication)."""
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer

    port, video, auth_kind, user, password = argv
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f'( filesrc location="{video}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )')
    factory.set_shared(True)
    if user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        if auth_kind == "digest":
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(user, password, token)
        else:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_role_from_structure(Gst.Structure.new_from_string(
            "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"))
        factory.set_permissions(permissions)
    def on_setup(client, ctx) -> None:  # the transport each client asked for, for the tests to read
        ok, value = ctx.request.get_header(GstRtsp.RTSPHeaderField.TRANSPORT, 0)
        print(f"transport {value}", flush=True)

    server.connect("client-connected", lambda srv, client: client.connect("setup-request", on_setup))
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {port}", flush=True)
        sys.exit(1)
    print("listening", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main(sys.argv[1:])
