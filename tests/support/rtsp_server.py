#!/usr/bin/python3
"""A real RTSP camera for tests: a moving test pattern served over RTSP (H.264).

Run with the *system* python (it needs PyGObject + GstRtspServer, which the
project's venv does not have)::

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 --mount /cam \
        --width 320 --height 240 --fps 15

and open ``rtsp://127.0.0.1:8554/cam``.  Tests normally drive it through
``tests/support/rtsp.py`` (``RtspServer``) rather than directly.

Control (from the test process):

* ``SIGUSR1`` -- freeze: the RTSP/TCP session stays open (RTSP requests are
  still answered, RTCP still flows) but no more video frames are sent, like a
  camera whose encoder has hung.  Prints ``FROZEN`` on stdout.
* ``SIGUSR2`` -- resume sending frames.  Prints ``RESUMED``.
* ``SIGTERM`` / ``SIGINT`` -- exit cleanly (status 0).  Prints ``STOPPED``.
* A camera that dies: kill the process (SIGKILL or SIGTERM); a camera that comes
  back: start a new server on the same port (the listening socket uses
  SO_REUSEADDR, so re-binding right away works).
* A camera that hangs completely (nothing answered at all, TCP still open):
  SIGSTOP the process, SIGCONT to wake it.

``--check`` only verifies that GStreamer, the RTSP server library and the
elements are present (prints ``OK encoder=<name>``, exit 0; else exit 2).

Stdout protocol (one line each, flushed): ``READY <url> encoder=<name>`` once
the server is listening; ``FROZEN`` / ``RESUMED`` acknowledging a signal;
``STOPPED`` on a clean exit.  Errors go to stderr with a non-zero exit status
(2: bad setup such as a missing encoder or a port already in use).

The pattern is ``videotestsrc pattern=ball`` (a ball that moves every frame),
so consecutive frames differ; the shared media factory means every client sees
the same live stream, as with a real camera.
"""

from __future__ import annotations

import argparse
import signal
import sys

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer
except (ImportError, ValueError) as exc:  # pragma: no cover - depends on the host
    print(f"rtsp_server: PyGObject/GStreamer RTSP server unavailable: {exc}", file=sys.stderr)
    sys.exit(2)

# Encoders tried in order for --encoder auto, with the options that make them
# behave like an IP camera: low latency, no B-frames, a key frame every second.
ENCODERS = ("x264enc", "openh264enc")
# Everything else the launch line uses (all in gstreamer1.0-plugins-base/-good).
REQUIRED_ELEMENTS = ("videotestsrc", "videoconvert", "valve", "rtph264pay")


def encoder_desc(name: str, fps: int, bitrate_kbps: int) -> str:
    if name == "x264enc":
        return (
            f"x264enc tune=zerolatency speed-preset=ultrafast bitrate={bitrate_kbps} key-int-max={fps} bframes=0 byte-stream=true"
        )
    if name == "openh264enc":
        return f"openh264enc usage-type=camera complexity=low bitrate={bitrate_kbps * 1000} gop-size={fps} rate-control=bitrate"
    raise ValueError(f"unknown encoder {name!r}")


def pick_encoder(requested: str) -> str | None:
    names = ENCODERS if requested == "auto" else (requested,)
    for name in names:
        if Gst.ElementFactory.find(name) is not None:
            return name
    return None


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class CameraFactory(GstRtspServer.RTSPMediaFactory):
    """Shared live media with a valve in front of the encoder (the freeze switch)."""

    def __init__(self, launch: str) -> None:
        super().__init__()
        self.set_launch(launch)
        self.set_shared(True)
        self.valves: list[Gst.Element] = []
        self.frozen = False
        self.connect("media-configure", self._on_media_configure)

    def _on_media_configure(self, _factory, media) -> None:
        element = media.get_element()
        valve = element.get_by_name("freeze")
        if valve is None:  # pragma: no cover - the launch line always has it
            return
        valve.set_property("drop", self.frozen)
        self.valves.append(valve)
        media.connect("unprepared", self._on_media_unprepared, valve)

    def _on_media_unprepared(self, _media, valve) -> None:
        if valve in self.valves:
            self.valves.remove(valve)

    def set_frozen(self, frozen: bool) -> None:
        self.frozen = frozen
        for valve in self.valves:
            valve.set_property("drop", frozen)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--mount", default="/cam")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--bitrate", type=int, default=512, help="kbit/s")
    ap.add_argument("--encoder", default="auto", choices=("auto",) + ENCODERS)
    ap.add_argument("--pattern", default="ball", help="videotestsrc pattern")
    ap.add_argument("--check", action="store_true", help="only check that every element is available; print 'OK encoder=NAME'")
    args = ap.parse_args(argv)

    mount = args.mount if args.mount.startswith("/") else "/" + args.mount
    Gst.init(None)

    encoder = pick_encoder(args.encoder)
    if encoder is None:
        print(
            f"rtsp_server: no H.264 encoder among {args.encoder!r} "
            f"(x264enc is in gstreamer1.0-plugins-ugly, openh264enc in -bad)",
            file=sys.stderr,
        )
        return 2
    for needed in REQUIRED_ELEMENTS:
        if Gst.ElementFactory.find(needed) is None:
            print(f"rtsp_server: GStreamer element {needed!r} missing", file=sys.stderr)
            return 2
    if args.check:
        say(f"OK encoder={encoder}")
        return 0

    # The valve named "freeze" is the freeze switch: drop=true stops frames
    # before the encoder, so the encoder's references stay consistent and the
    # stream resumes cleanly.  x264enc is pinned to baseline (no B-frames, like
    # most IP cameras); openh264enc only does baseline anyway.
    profile = "! video/x-h264,profile=constrained-baseline " if encoder == "x264enc" else ""
    launch = (
        f"( videotestsrc is-live=true pattern={args.pattern} "
        f"! video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 "
        f"! valve name=freeze drop=false "
        f"! videoconvert ! video/x-raw,format=I420 "
        f"! {encoder_desc(encoder, args.fps, args.bitrate)} {profile}"
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = CameraFactory(launch)
    server.get_mount_points().add_factory(mount, factory)

    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 2

    # Drop idle sessions regularly so killed clients don't pile up.
    def cleanup() -> bool:
        server.get_session_pool().cleanup()
        return True

    GLib.timeout_add_seconds(2, cleanup)

    def on_freeze() -> bool:
        factory.set_frozen(True)
        say("FROZEN")
        return True

    def on_resume() -> bool:
        factory.set_frozen(False)
        say("RESUMED")
        return True

    def on_stop() -> bool:
        loop.quit()
        return False

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGUSR1, on_freeze)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGUSR2, on_resume)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, on_stop)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, on_stop)

    say(f"READY rtsp://{args.host}:{args.port}{mount} encoder={encoder}")
    try:
        loop.run()
    finally:
        factory.set_frozen(True)
    say("STOPPED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
