"""The soak's verdict and plot (tests/soak.py), apart from the run so that they can be checked on rows alone.

A row is one CSV sample: a dict with at least t_s (seconds since the soak's t0), span_s, rss_mb, fds,
threads, msgs, p50_ms, p99_ms, msgs_per_s and msgs_<source>. Row 0 (t_s 0) holds only the resources.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Issue 9's pass criteria. Not to be loosened to fit a noisy run.
RSS_MB_PER_H = 2.0  # RSS slope after the warm-up must stay below this (MB = MiB)
FD_SPREAD = 4  # "flat": max - min of the post-warm-up samples
THREAD_SPREAD = 2
P99_TOLERANCE = 0.10  # the last interval's p99 no more than 10 % above the first post-warm-up interval's
WARMUP_MAX_S = 300.0
WARMUP_FRACTION = 0.2


def warmup_s(duration: float) -> float:
    """The first 5 minutes, or the first 20 % of a shorter run."""
    return min(WARMUP_MAX_S, WARMUP_FRACTION * duration)


def slope_mb_per_h(rows: list[dict]) -> float:
    """Least-squares slope of rss_mb against time, in MB per hour."""
    t = np.array([r["t_s"] for r in rows], dtype=float) / 3600
    if len(t) < 2 or np.ptp(t) == 0:
        return 0.0
    return float(np.polyfit(t, np.array([r["rss_mb"] for r in rows], dtype=float), 1)[0])


def verdict(rows: list[dict], duration: float, interval: float, exit_code: int | None,
            problems: list[str]) -> tuple[bool, list[str]]:
    """(passed, lines): one line per criterion, PASS or FAIL; every entry of `problems` is a FAIL."""
    lines, ok = [f"FAIL  {p}" for p in problems], not problems
    warm = warmup_s(duration)
    post = [r for r in rows if r["t_s"] >= warm - 1e-6]  # resource samples taken after the warm-up
    # latency intervals that start after the warm-up (a sample at t_s covers [t_s - span_s, t_s])
    post_lat = [r for r in post if r["msgs"] and r["t_s"] - r["span_s"] >= warm - 1.0]
    if len(post) < 2 or not post_lat:
        return False, [*lines, f"FAIL  too few samples after the {warm:.0f} s warm-up "
                               f"({len(post)} samples, {len(post_lat)} latency intervals): run longer"]

    def check(passed: bool, text: str) -> None:
        nonlocal ok
        ok &= passed
        lines.append(f"{'PASS' if passed else 'FAIL'}  {text}")

    slope = slope_mb_per_h(post)
    check(slope < RSS_MB_PER_H, f"RSS slope {slope:+.2f} MB/h after warm-up (< {RSS_MB_PER_H:g} MB/h; "
                                f"{post[0]['rss_mb']:.1f} -> {post[-1]['rss_mb']:.1f} MB over {len(post)} samples)")
    fds = [r["fds"] for r in post]
    check(max(fds) - min(fds) <= FD_SPREAD, f"fds {min(fds)}..{max(fds)} after warm-up (max - min <= {FD_SPREAD})")
    threads = [r["threads"] for r in post]
    check(max(threads) - min(threads) <= THREAD_SPREAD,
          f"threads {min(threads)}..{max(threads)} after warm-up (max - min <= {THREAD_SPREAD})")
    first, last = post_lat[0], rows[-1]
    if not last["msgs"]:
        check(False, "no message in the last interval")
    elif last is first:
        check(False, "the last interval is the first after the warm-up: nothing to compare; run longer")
    else:
        a, b = first["p99_ms"], last["p99_ms"]
        check(b <= (1 + P99_TOLERANCE) * a,
              f"p99 last interval (to {_at(last)}) {b:.2f} ms vs first post-warm-up (to {_at(first)}) {a:.2f} ms "
              f"({b / a - 1:+.1%}; <= +{P99_TOLERANCE:.0%})")
    check(exit_code == 0, "edge-rt exit status after SIGTERM: "
                          f"{exit_code if exit_code is not None else 'did not exit within the grace period'} (0)")
    return ok, lines


def _at(row: dict) -> str:
    return f"t={row['t_s']:.0f}s"


def plot(rows: list[dict], sources: tuple[str, ...], duration: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([r["t_s"] for r in rows], dtype=float) / 60
    fig, axes = plt.subplots(2, 2, figsize=(13, 8), sharex=True)
    (a_rss, a_res), (a_lat, a_msg) = axes
    a_rss.plot(t, [r["rss_mb"] for r in rows], "o-", label="VmRSS")
    a_rss.plot(t, [r["hwm_mb"] for r in rows], ":", color="grey", label="VmHWM (peak)")
    a_rss.set_ylabel("MB")
    a_rss.set_title("edge-rt memory")
    a_rss.legend()
    a_res.plot(t, [r["fds"] for r in rows], "o-", label="open fds")
    a_res.plot(t, [r["threads"] for r in rows], "s-", label="threads")
    a_res.set_title("open fds and threads")
    a_res.legend()
    lat = [r for r in rows if r["msgs"]]
    tl = np.array([r["t_s"] for r in lat], dtype=float) / 60
    a_lat.plot(tl, [r["p50_ms"] for r in lat], "o-", label="p50")
    a_lat.plot(tl, [r["p99_ms"] for r in lat], "s-", label="p99")
    a_lat.set_ylabel("ms")
    a_lat.set_title("capture -> long-lived subscriber, per interval (point at its end)")
    a_lat.legend()
    a_msg.plot(tl, [r["msgs_per_s"] for r in lat], "o-", label="all sources")
    for s in sources:
        a_msg.plot(tl, [r[f"msgs_{s}"] / r["span_s"] for r in lat], ".--", label=s)
    a_msg.set_ylabel("messages/s")
    a_msg.set_title("messages/s at the long-lived subscriber")
    a_msg.legend(fontsize=8)
    for ax in axes.flat:
        ax.axvspan(0, warmup_s(duration) / 60, color="grey", alpha=0.15)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("minutes (grey: warm-up)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
