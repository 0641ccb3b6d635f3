"""Soak run (issue 9): the real `edge-rt run` for DURATION seconds against four sources, with subscribers
that come and go; RSS, open fds, threads and latency sampled every minute; a verdict at the end.

    make soak DURATION=1800            # or: .venv/bin/python tests/soak.py --duration 1800

A script, not a test: pytest does not collect it (no test_ prefix, no test functions), and
`make test` does not run it.

What runs:

* `edge-rt run --device cpu --model models/demo/demo_dynamic.onnx --stats-interval 60`, publishing on
  tcp://127.0.0.1:<free port>, with four sources (given in a YAML config, so that only the file is
  paced): two synthetic cameras (synthetic://640x360?fps=15), a 640x360 mp4 clip looping and paced at
  15 frames/s (the per-source equivalent of --fps 15), and a real RTSP camera (tests/support's
  GStreamer RtspServer, 640x360 at 15 frames/s) that flaps: up 20 s, down 10 s (the server process is
  stopped, so the TCP connection closes, and started again on the same port), for the whole run.
* A long-lived subscriber (this process, the Python client, subscribed to the four topics by name)
  measures, per message, capture_ns (in the message) to the wall-clock time it was received.
* Every minute a short-lived subscriber connects to every topic, reads for 5 s and disconnects. The
  publisher's own topics ("$health") are not sources: neither subscriber counts them.

The flap schedule is aligned so that every sample falls 10 s into an "up" window and every minute
holds the same number of outages: samples compare like with like. The short-lived subscriber reads
between samples, never across one.

Every minute one CSV row (bench-results/soak/soak.csv): the edge-rt process's VmRSS, VmHWM, RssAnon
(RSS less mapped files), open fds, threads (from /proc/PID), its CPU use over the minute, and the long-lived subscriber's p50/p99
latency, messages and messages/s over the minute (per source too), messages lost (seq gaps) and
malformed, what the short-lived subscriber got, the size of edge-rt.log (a log flood shows) and the
machine's 1-minute load (latency on a shared machine is noisy); soak.png plots them; edge-rt.log is
the run's log, verdict.txt the verdict.

Verdict (tests/support/soak_report.py), after a warm-up (the first 5 minutes, or the first 20% of a
shorter run):
RSS grows < 2 MB/h (slope of a least-squares line through the post-warm-up samples; MB = MiB),
fds flat (max - min <= 4), threads flat (max - min <= 2), the last minute's p99 no more than 10% above
the first post-warm-up minute's (a faster last minute is not a soak failure), edge-rt alive
throughout, and after SIGTERM at the end it exits 0 within 20 s. Exit 0 on pass, 1 on fail (each
failed criterion is named), 2 when the soak could not run at all (no RTSP server here, say).

Every wait is bounded. However the soak ends (the end, an exception, Ctrl-C or SIGTERM to it), edge-rt
gets SIGTERM (SIGKILL 20 s later) and the camera is stopped; edge-rt runs in its own session, under
`setpriv --pdeathsig TERM` where there is one, so that even a SIGKILLed soak does not leave it running.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.rtsp import RtspServer, free_port, rtsp_available  # noqa: E402
from tests.support.soak_probes import Flapper, LongSubscriber, proc_sample, short_subscriber  # noqa: E402
from tests.support.soak_report import plot, verdict, warmup_s  # noqa: E402

SOURCES = ("syn0", "syn1", "clip", "rtsp")
FIELDS = [
    "t_s", "span_s", "rss_mb", "hwm_mb", "anon_mb", "fds", "threads", "cpu_pct",
    "msgs", "msgs_per_s", "p50_ms", "p99_ms", "max_ms", "lost", "malformed",
    *(f"msgs_{s}" for s in SOURCES),
    "rtsp_up", "flaps", "short_msgs", "short_topics", "log_kb", "load1",
]
STARTUP_S = 60.0  # all four sources must publish within this
EXIT_GRACE_S = 20.0  # edge-rt must exit this soon after SIGTERM


class Stop(Exception):
    """SIGTERM/SIGINT to the soak itself: clean up and say what was measured so far."""


# -- the run --------------------------------------------------------------------------------------


def edge_rt_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("edge-rt")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "edge_rt"]


def write_config(out: Path, clip: Path, rtsp_url: str, fps: int) -> Path:
    path = out / "soak.yaml"
    path.write_text(
        "sources:\n"
        f"  - syn0=synthetic://640x360?fps={fps}\n"
        f"  - syn1=synthetic://640x360?fps={fps}\n"
        f"  - {{name: clip, uri: '{clip}', fps: {fps}, loop: true}}\n"
        f"  - rtsp={rtsp_url}\n"
    )
    return path


def extras(log_path: Path) -> dict[str, float]:
    """The log's size (a log flood shows as a slope) and the machine's load (latency is noisy on a busy box)."""
    size = log_path.stat().st_size if log_path.exists() else 0
    return {"log_kb": round(size / 1024, 1), "load1": round(os.getloadavg()[0], 2)}


def fmt_row(r: dict) -> str:
    lat = f"p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} ms, {r['msgs_per_s']:.1f} msg/s" if r["msgs"] else "no messages"
    per = " ".join(f"{s}={r[f'msgs_{s}']}" for s in SOURCES)
    return (f"[soak] t={r['t_s']:>6.0f}s rss {r['rss_mb']:.1f} MB fds {r['fds']} threads {r['threads']} cpu {r['cpu_pct']:.0f}% | "
            f"{lat} ({per}) lost {r['lost']} | short sub {r['short_msgs']} msgs/{r['short_topics']} topics | "
            f"log {r['log_kb']:.0f} kB, load {r['load1']:.1f}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=1800, help="seconds (default 1800)")
    ap.add_argument("--interval", type=float, default=60, help="sampling interval, seconds (default 60)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "soak", help="output dir (default bench-results/soak)")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "demo" / "demo_dynamic.onnx")
    ap.add_argument("--fps", type=int, default=15, help="frames/s of every source (default 15)")
    ap.add_argument("--flap-up", type=float, default=20.0)
    ap.add_argument("--flap-down", type=float, default=10.0)
    ap.add_argument("--short-for", type=float, default=5.0, help="seconds the short-lived subscriber reads (default 5)")
    ap.add_argument("--threads", type=int, default=None, help="edge-rt --threads (default: edge-rt's own)")
    args = ap.parse_args(argv)
    if args.duration < args.interval:
        ap.error(f"--duration {args.duration:g} is shorter than one --interval ({args.interval:g})")
    return args


class Soak:
    """One soak run: start() the camera, edge-rt and the subscribers, sample() until the end, and
    cleanup() -- which is safe to call after a failure at any point and never waits unboundedly."""

    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.args, self.out = args, out
        self.log_path = out / "edge-rt.log"
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.cam = RtspServer(width=640, height=360, fps=args.fps)
        self.edge: subprocess.Popen[bytes] | None = None
        self.long_sub: LongSubscriber | None = None
        self.flapper: Flapper | None = None
        self.rows: list[dict] = []
        self.problems: list[str] = []
        self.exit_code: int | None = None
        self.t0 = time.monotonic()

    def edge_alive(self) -> None:
        assert self.edge is not None
        if self.edge.poll() is not None:
            self.exit_code = self.edge.returncode
            raise RuntimeError(f"edge-rt exited with status {self.edge.returncode} at t={time.monotonic() - self.t0:.0f}s; "
                               f"see {self.log_path}")
        if self.long_sub is not None and self.long_sub.error is not None:
            raise RuntimeError(f"the long-lived subscriber failed: {self.long_sub.error!r}")

    def start(self) -> None:
        args, out = self.args, self.out
        clip = out / "clip.mp4"
        subprocess.run([*edge_rt_cmd(), "dataset", "clip", str(clip), "--frames", "300", "--size", "640x360",
                        "--fps", str(args.fps)], check=True, stdout=subprocess.DEVNULL, timeout=300)
        self.cam.start()
        config = write_config(out, clip, self.cam.url, args.fps)
        cmd = [*edge_rt_cmd(), "run", "--config", str(config), "--model", str(args.model), "--device", "cpu",
               "--publish", self.endpoint, "--stats-interval", str(int(args.interval))]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        print(f"[soak] RTSP camera {self.cam.url} ({self.cam.encoder}); edge-rt publishing on {self.endpoint}; "
              f"{args.duration:g} s, a sample every {args.interval:g} s, warm-up {warmup_s(args.duration):g} s; output in {out}",
              flush=True)
        print("[soak] " + " ".join(cmd), flush=True)
        # Its own session: the soak alone stops it (SIGTERM, then its exit status is a criterion), and
        # a Ctrl-C on the terminal does not reach it first. setpriv --pdeathsig: it gets SIGTERM should
        # the soak itself be killed outright (SIGKILL), where no cleanup runs.
        if shutil.which("setpriv"):
            cmd = ["setpriv", "--pdeathsig", "TERM", *cmd]  # setpriv execs: same pid
        with open(self.log_path, "wb") as log:
            self.edge = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, YOLO_OFFLINE="1"), cwd=ROOT, start_new_session=True)
        self.long_sub = LongSubscriber(self.endpoint, SOURCES)
        self.long_sub.start()
        deadline = time.monotonic() + STARTUP_S
        while self.long_sub.seen != set(SOURCES):
            self.edge_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {sorted(self.long_sub.seen)} of {list(SOURCES)} published within "
                                   f"{STARTUP_S:g} s; see {self.log_path}")
            time.sleep(0.1)
        self.t0 = time.monotonic()
        self.long_sub.take()  # start-up messages do not count
        self.flapper = Flapper(self.cam, self.t0, args.flap_up, args.flap_down)
        self.flapper.start()

    def run(self, writer: csv.DictWriter, csv_file) -> None:
        args = self.args
        assert self.edge is not None and self.long_sub is not None and self.flapper is not None
        base = proc_sample(self.edge.pid)
        self.rows.append({**{k: "" for k in FIELDS}, "t_s": 0.0, "msgs": 0, "rtsp_up": int(self.cam.running), "flaps": 0,
                          **{k: base[k] for k in ("rss_mb", "hwm_mb", "anon_mb", "fds", "threads")}, **extras(self.log_path)})
        writer.writerow(self.rows[-1])
        csv_file.flush()
        print(f"[soak] t=     0s rss {base['rss_mb']:.1f} MB fds {base['fds']} threads {base['threads']} "
              "(all four sources publishing)", flush=True)
        cpu_last, t_last = base["cpu_s"], self.t0
        n = math.ceil(args.duration / args.interval - 1e-9)
        # The short-lived subscriber reads in the last `short_for` s of the first flap period (25-30 s into
        # the minute by default: the camera came back at 20 s and edge-rt reconnects in 2-4 s); in the
        # middle of the interval where that does not fit (a shorter --interval).
        period = args.flap_up + args.flap_down
        short_at = period - args.short_for if period + 1 < args.interval else args.interval / 2
        for k in range(1, n + 1):
            t_sample = self.t0 + min(k * args.interval, args.duration)
            t_short = self.t0 + (k - 1) * args.interval + short_at
            short = (0, 0, 0)
            while (now := time.monotonic()) < t_sample:
                self.edge_alive()
                if t_short <= now < t_sample - args.short_for - 1:
                    short = short_subscriber(self.endpoint, args.short_for)
                    t_short = math.inf
                    continue
                time.sleep(min(0.5, max(t_sample - now, 0.0)))
            self.edge_alive()
            s = proc_sample(self.edge.pid)
            window = self.long_sub.take()
            span = time.monotonic() - t_last
            lat = np.array(window.latencies)
            row = {
                "t_s": round(time.monotonic() - self.t0, 1), "span_s": round(span, 2),
                **{key: s[key] for key in ("rss_mb", "hwm_mb", "anon_mb", "fds", "threads")},
                "cpu_pct": round(100 * (s["cpu_s"] - cpu_last) / span, 1),
                "msgs": len(lat), "msgs_per_s": round(len(lat) / span, 2),
                "p50_ms": round(float(np.percentile(lat, 50)), 3) if len(lat) else "",
                "p99_ms": round(float(np.percentile(lat, 99)), 3) if len(lat) else "",
                "max_ms": round(float(lat.max()), 3) if len(lat) else "",
                "lost": window.lost, "malformed": window.malformed + short[2],
                **{f"msgs_{src}": window.per_source[src] for src in SOURCES},
                "rtsp_up": int(self.cam.running), "flaps": self.flapper.flaps,
                "short_msgs": short[0], "short_topics": short[1], **extras(self.log_path),
            }
            cpu_last, t_last = s["cpu_s"], time.monotonic()
            self.rows.append(row)
            writer.writerow(row)
            csv_file.flush()
            print(fmt_row(row), flush=True)

    def cleanup(self) -> None:
        """Stop edge-rt (SIGTERM, its exit status recorded; SIGKILL after EXIT_GRACE_S), the subscriber,
        the flapper and the camera. Every step is bounded, and one failing does not skip the rest."""
        edge = self.edge
        if edge is not None and edge.poll() is None:
            stop_t = time.monotonic()
            try:
                edge.send_signal(signal.SIGTERM)
                self.exit_code = edge.wait(EXIT_GRACE_S)
                print(f"[soak] edge-rt exited {self.exit_code} {time.monotonic() - stop_t:.1f} s after SIGTERM", flush=True)
            except subprocess.TimeoutExpired:
                print(f"[soak] edge-rt still running {EXIT_GRACE_S:g} s after SIGTERM: SIGKILL", flush=True)
                with contextlib.suppress(OSError):
                    os.killpg(edge.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    edge.wait(10)
        elif edge is not None and self.exit_code is None:
            self.exit_code = edge.returncode
        if self.long_sub is not None:
            time.sleep(0.5)  # end-of-stream messages in flight
            self.long_sub.stop()
        for step in (self.flapper.stop if self.flapper is not None else None, self.cam.stop):
            try:
                if step is not None:
                    step()
            except Exception as exc:  # noqa: BLE001 - go on cleaning up
                print(f"[soak] cleanup: {step.__qualname__} failed: {exc!r}", file=sys.stderr, flush=True)
        if self.cam.running or (self.flapper is not None and self.flapper.is_alive()):
            self.cam.kill()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ok, why = rtsp_available()
    if not ok:
        print(f"[soak] cannot run: {why}", file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("soak.csv", "soak.png", "edge-rt.log", "verdict.txt"):
        (out / stale).unlink(missing_ok=True)
    started = time.monotonic()

    def on_signal(signum: int, _frame: object) -> None:
        raise Stop(signal.Signals(signum).name)

    soak = Soak(args, out)
    with open(out / "soak.csv", "w", newline="") as csv_file:
        writer = csv.DictWriter(csv_file, fieldnames=FIELDS)
        writer.writeheader()
        try:
            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
            soak.start()
            soak.run(writer, csv_file)
        except Stop as exc:
            soak.problems.append(f"the soak was interrupted ({exc}) at t={time.monotonic() - soak.t0:.0f}s")
        except Exception as exc:  # noqa: BLE001 - any failure is a verdict line, after cleaning up
            soak.problems.append(str(exc) if type(exc) is RuntimeError else f"{type(exc).__name__}: {exc}")
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # no interruption while cleaning up...
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            soak.cleanup()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # ...and none caught after it
            signal.signal(signal.SIGINT, signal.default_int_handler)
    return report(soak, time.monotonic() - started)


def report(soak: Soak, elapsed: float) -> int:
    args, out, rows, problems = soak.args, soak.out, soak.rows, soak.problems
    if soak.flapper is not None and soak.flapper.failures:
        f = soak.flapper.failures
        problems.append(f"the RTSP camera failed to come back {len(f)} time(s), first {f[0]}")
    notes = []
    if soak.long_sub is not None and soak.exit_code == 0 and set(soak.long_sub.eos) != set(SOURCES):
        notes.append(f"end-of-stream seen for {sorted(soak.long_sub.eos)} only")
    if rows:
        try:
            plot(rows, SOURCES, args.duration, out / "soak.png",
                 f"edge-rt soak: {args.duration:g} s, 4 sources at {args.fps} fps, {args.model.name}, device cpu")
        except Exception as exc:  # noqa: BLE001 - no matplotlib, say: the CSV is still there
            notes.append(f"no plot: {type(exc).__name__}: {exc}")
    passed, lines = verdict(rows, args.duration, args.interval, soak.exit_code, problems)
    log_lines = soak.log_path.read_text(errors="replace").splitlines() if soak.log_path.exists() else []
    errors = [line for line in log_lines if "Traceback" in line or " ERROR " in line]
    if errors:
        notes.append(f"edge-rt.log holds {len(errors)} Traceback/ERROR line(s), first: {errors[0]}")
    for key in ("lost", "malformed"):
        if total := sum(r[key] or 0 for r in rows):
            notes.append(f"{total} message(s) {key} at the subscribers (see the CSV)")
    text = "\n".join([
        f"[soak] verdict: {'PASS' if passed else 'FAIL'} (warm-up {warmup_s(args.duration):g} s, {len(rows)} samples, "
        f"{elapsed:.0f} s in all)", *lines, *(f"note: {n}" for n in notes),
        f"edge-rt.log: {len(log_lines)} lines; csv {out / 'soak.csv'}" + (f", plot {out / 'soak.png'}" if (out / "soak.png").exists() else ""),
    ])
    (out / "verdict.txt").write_text(text + "\n")
    print(text, flush=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
