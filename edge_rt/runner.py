"""The factory for `edge-rt run`: builds every stage from one RunConfig and runs the pipeline."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from .camera.capture import SourceGroup
from .camera.reconnect import CaptureSettings
from .camera.sources import SourceKind
from .config import RunConfig
from .detect.collect import CollectSettings, CollectStage, make_collector
from .detect.model_info import ModelInfo
from .detect.postprocess import Postprocessor, PostprocessSettings
from .detect.preprocess import make_preprocessor
from .engines import Engine, load_engine
from .errors import ConfigError
from .ops.memory import cap_malloc_arenas
from .ops.metrics import Metrics
from .ops.prometheus import CountersFn, LinkFn, ObjectsFn, PrometheusMetrics, StatesFn
from .ops.redact import redact_url
from .ops.systemd import Notifier, ServiceWatch
from .pipeline import Pipeline
from .recording.recorder import Recorder
from .recording.settings import RECORDABLE
from .stream.inference import in_flight
from .tracking.settings import SourceTracking
from .tracking.stage import ObjectStage
from .wire.publish import Publisher
from .wire.schema import check_encoding, events_topic
from .wire.security import ClientKeys, ServerKeys, check_exposure, is_local_endpoint, split_publish

log = logging.getLogger("edge_rt.run")


def planned_batch(requested: int | None, n_sources: int) -> int:
    """The largest batch a run asks for, known before the model loads (its engine is built for it);
    `resolve_batch` then holds it to what the model takes, which never makes it larger."""
    return requested or max(n_sources, 1)


def resolve_batch(engine: Engine, requested: int | None, n_sources: int) -> int:
    """A fixed-batch model dictates the batch; a dynamic one takes --max-batch or one per source."""
    fixed = engine.info.batch
    if fixed is not None:
        if requested is not None and requested != fixed:
            raise ConfigError(
                f"--max-batch {requested}: this model has a fixed batch of {fixed}; export it with dynamic=True to change it"
            )
        return fixed
    limit = engine.info.max_batch
    if limit is not None and requested is not None and requested > limit:
        raise ConfigError(
            f"--max-batch {requested}: this model's in-graph NMS handles batches up to {limit}; export it with --max-batch {requested}"
        )
    wanted = requested or n_sources
    return min(wanted, limit) if limit is not None else wanted


def resolve_imgsz(engine: Engine, requested: int | None) -> tuple[int, int]:
    if requested is None:
        return engine.info.imgsz
    if not engine.info.dynamic_shape:
        raise ConfigError(
            f"--imgsz {requested}: this model has a fixed input {engine.info.imgsz}; only dynamic-shape exports take --imgsz"
        )
    stride = engine.info.stride
    if requested % stride:
        raise ConfigError(f"--imgsz {requested}: must be a multiple of the model stride {stride}")
    return (requested, requested)


def engine_hint(config: RunConfig) -> str:
    """OpenVINO's hint: files read at full speed want every frame soonest (throughput: a request per stream,
    overlapped); a camera wants each frame's own latency (one request on every core)."""
    if config.engine_hint != "auto":
        return config.engine_hint
    files = all(s.kind is SourceKind.FILE and s.fps is None for s in config.sources)
    return "throughput" if files else "latency"


def check_graph_nms(info: ModelInfo, conf: float, iou: float, agnostic: bool) -> None:
    """NMS exported inside the graph fixed its thresholds: a run may filter harder, never looser."""
    if info.graph_nms is None:
        return
    baked_conf, baked_iou = info.graph_nms
    if conf < baked_conf:
        raise ConfigError(
            f"--conf {conf:g}: this model's NMS runs inside its graph and keeps only boxes above {baked_conf:g}; "
            f"run with --conf >= {baked_conf:g} or export again with --nms-conf {conf:g}"
        )
    if abs(iou - baked_iou) > 1e-6:
        raise ConfigError(
            f"--iou {iou:g}: this model's NMS runs inside its graph with IoU {baked_iou:g}; export again with --nms-iou {iou:g}"
        )
    if agnostic:
        raise ConfigError(
            "--agnostic-nms: this model's NMS runs inside its graph, per class; export it without --nms to choose at run time"
        )


def collect_settings(config: RunConfig) -> CollectSettings | None:
    """What --collect asked for, or None when it is off."""
    if config.collect is None or config.collect_conf is None:
        return None
    lo, hi = config.collect_conf
    return CollectSettings(Path(config.collect).expanduser(), lo, hi, config.collect_interval, config.collect_max)


def detection_stages(
    config: RunConfig, info: ModelInfo, tracking: Sequence[SourceTracking] | None = None
) -> tuple[Postprocessor, ObjectStage]:
    """Postprocess and the objects stage for this model, checked against it (--classes, graph NMS, the
    classes zones and lines filter on) before any camera opens. `tracking` defaults to the config's."""
    if config.classes is not None:
        bad = [c for c in config.classes if c not in info.names]
        if bad:
            raise ConfigError(f"--classes {bad[0]}: the model has classes 0..{info.num_classes - 1}")
    check_graph_nms(info, config.conf, config.iou, config.agnostic_nms)
    objects = ObjectStage(config.tracking if tracking is None else tracking, info.names, config.conf)
    # With tracking, postprocess keeps the weak boxes ByteTrack's second pass may use; NMS inside the graph
    # already dropped what is under its own threshold.
    post_conf = max(objects.detection_conf(), info.graph_nms[0]) if info.graph_nms else objects.detection_conf()
    settings = PostprocessSettings(post_conf, config.iou, config.max_det, config.classes, config.agnostic_nms)
    return Postprocessor(info.num_classes, info.end2end, settings), objects


def build_pipeline(
    config: RunConfig, engine: Engine, sink: object, metrics: Metrics, collector: CollectStage | None = None
) -> Pipeline:
    info = engine.info
    postprocessor, objects = detection_stages(config, info)
    max_batch = resolve_batch(engine, config.max_batch, len(config.sources))
    settings = CaptureSettings(
        open_timeout_s=config.open_timeout,
        stall_timeout_s=config.stall_timeout,
        backoff_max_s=config.reconnect_max,
    )
    return Pipeline(
        sources=SourceGroup(list(config.sources), settings),
        engine=engine,
        # the ring outlives the batches in flight: one being formed, one queued, the engine's
        preprocessor=make_preprocessor(info, resolve_imgsz(engine, config.imgsz), ring=max(4, in_flight(engine) + 2)),
        postprocessor=postprocessor,
        sink=sink,  # type: ignore[arg-type]
        max_batch=max_batch,
        max_wait_s=config.max_wait_ms / 1000,
        model_name=Path(config.model).name,
        metrics=metrics,
        stats_interval_s=config.stats_interval,
        engine_timeout_s=config.engine_timeout,
        collector=collector,
        box=config.box,
        box_topics=config.box_topics,
        objects=objects,
        recorder=Recorder(config.sources, config.recording),  # an unwritable folder fails here, before any camera opens
    )


def open_publisher(config: RunConfig) -> Publisher:
    """The publisher, with CURVE when configured (bound: a server with an allow-list; connecting to a
    broker: its client); says once when it is exposed in the clear."""
    address, connect = split_publish(config.publish)
    curve: ServerKeys | ClientKeys | None = None
    if connect and config.curve_secret_key is not None and config.curve_server_key is not None:
        curve = ClientKeys.load(config.curve_server_key, config.curve_secret_key)
    elif not connect and config.curve_secret_key is not None and config.curve_allow is not None:
        curve = ServerKeys.load(config.curve_secret_key, config.curve_allow)
    check_exposure(config.publish, curve=curve is not None, insecure=config.insecure)  # also for a RunConfig built by hand
    publisher = Publisher(config.publish, config.encoding, curve=curve)
    if isinstance(curve, ServerKeys):
        log.info("CURVE on: admitting the %d client key(s) in %s", len(curve.allowed), curve.allow_dir)
    elif isinstance(curve, ClientKeys):
        log.info("CURVE on: this box's public key %s must be in the broker's allow-list", curve.pair.public.decode())
    elif not is_local_endpoint(address):
        log.warning(
            "--insecure: publishing %s %s unencrypted, %s",
            "to the broker at" if connect else "on",
            address,
            "readable on the way" if connect else "to anyone who can reach it",
        )
    return publisher


def run(config: RunConfig, install_signals: Callable[[Callable[[], None]], None] | None = None) -> int:
    cap_malloc_arenas()  # before any thread starts: a flapping camera must not step RSS up arena by arena
    check_encoding(config.encoding)
    publisher = open_publisher(config)  # first: a busy port or a bad key fails fast
    try:
        engine = load_engine(
            config.model,
            config.device,
            config.threads,
            max_batch=planned_batch(config.max_batch, len(config.sources)),
            imgsz=config.imgsz,
            hint=engine_hint(config),
            precision=None if config.engine_precision == "auto" else config.engine_precision,
        )
    except BaseException:
        publisher.close()
        raise
    pipeline: Pipeline | None = None  # scrapes read it once built
    watch: ServiceWatch | None = None
    collector: CollectStage | None = None
    metrics = Metrics()
    try:
        link = publisher.link
        metrics = make_metrics(
            config,
            lambda: pipeline.counters() if pipeline else {},
            lambda: pipeline.health.states() if pipeline else {},
            (lambda: (link.connected, link.dropped, link.connects)) if link is not None else None,
            (lambda: pipeline.objects.counts() if pipeline else None) if config.tracking else None,
        )
        collector = make_collector(collect_settings(config), engine.info.names, config.conf)  # an unwritable DIR fails here
        pipeline = build_pipeline(config, engine, publisher, metrics, collector)
        if isinstance(metrics, PrometheusMetrics):
            port = metrics.serve(config.metrics_port or 0, config.metrics_addr)
            log.info("metrics on http://%s:%d/metrics", config.metrics_addr, port)
        info = engine.info
        log.info(
            "model %s: %d classes, input %s%s, batch %s, %s head, on %s",
            Path(config.model).name,
            info.num_classes,
            resolve_imgsz(engine, config.imgsz),  # what frames are letterboxed to: --imgsz on a dynamic model
            f" (dynamic; exported at {info.imgsz})" if info.dynamic_shape and config.imgsz else " (dynamic)" if info.dynamic_shape else "",
            info.batch or f"dynamic (max {pipeline.batcher.max_batch})",
            "end-to-end" if info.end2end else "NMS",
            engine.device,
        )
        for spec in config.sources:
            log.info("source %s: %s (%s)", spec.name, redact_url(spec.uri), spec.kind.value)
        for t in config.tracking:
            if t.track is not None:
                log.info(
                    "source %s: tracking (lost after %gs)%s; events on %s",
                    t.source,
                    t.track.lost_s,
                    "".join(f", zone {z.name}" for z in t.zones) + "".join(f", line {ln.name}" for ln in t.lines),
                    events_topic(f"{pipeline.box}/{t.source}" if config.box_topics else t.source),
                )
        _log_recording(config)
        log.info(
            "publishing on %s (%s), box %s, topics %s, session %s",
            config.publish,
            config.encoding,
            pipeline.box,
            f"{pipeline.box}/SOURCE" if config.box_topics else "SOURCE",
            pipeline.session,
        )
        watch = service_watch(pipeline)
        if install_signals is not None:
            install_signals(partial(_stop, pipeline, watch))
        if config.await_subscribers:
            log.info("waiting up to %.0fs for %d subscriber(s)", config.await_timeout, config.await_subscribers)
            publisher.await_subscribers(config.await_subscribers, config.await_timeout, cancelled=lambda: pipeline.stopping)
        collector.start()
        pipeline.run()
        collector.close()  # what is queued is written before the summary counts it
        log.info("done\n%s", metrics.summary(pipeline.counters()))
        publisher.poll_subscriptions()
        published = sum(pipeline.published.values())
        if published and not publisher.ever_subscribed:
            log.warning(
                "no subscriber was connected: nobody received the %d message(s) published (a file ends in seconds: "
                "give run --await-subscribers 1 to wait for one, or --fps 30 to pace it like a camera)",
                published,
            )
        if pipeline.sink_refused:
            log.warning("%d message(s) could not be handed to ZeroMQ", pipeline.sink_refused)
        if publisher.link is not None and publisher.link.dropped:
            log.warning(
                "%d message(s) dropped while no broker was connected at %s (%s)",
                publisher.link.dropped,
                publisher.link.address,
                f"connected {publisher.link.connects} time(s)" if publisher.link.connects else "never reached",
            )
    finally:
        if collector is not None:
            collector.close(timeout_s=0.5 if pipeline is not None and pipeline.engine_hung else 2.0)  # no-op when closed
            if collector.summary():
                log.info("%s", collector.summary())
        if pipeline is not None:
            pipeline.recorder.close(timeout_s=2.0 if pipeline.engine_hung else 10.0)  # the clips still open end here
        if watch is not None:
            watch.stopping()
            watch.notifier.close()
        if isinstance(metrics, PrometheusMetrics):
            metrics.close()
        publisher.close()
        if pipeline is None or not pipeline.engine_hung:  # closing a session stuck in a call could hang too
            engine.close()
    return 0


def _log_recording(config: RunConfig) -> None:
    recorded = {r.source: r.record for r in config.recording}
    for spec in config.sources:
        r = recorded.get(spec.name)
        if r is not None:
            log.info(
                "source %s: clips of %s to %s (%gs before, %gs after; kept %g days, %g MB)",
                spec.name,
                "/".join(r.events),
                Path(r.dir) / spec.name,
                r.pre_s,
                r.post_s,
                r.keep_days,
                r.keep_mb,
            )
        elif recorded and spec.kind not in RECORDABLE:
            log.warning("source %s: not recorded (a %s source cannot be opened twice)", spec.name, spec.kind.value)


def service_watch(pipeline: Pipeline) -> ServiceWatch | None:
    """sd_notify when systemd started us (Type=notify, WatchdogSec=): ticks on the publishing thread."""
    notifier = Notifier.from_env()
    if notifier is None:
        return None
    # READY once publishing, as for bind: with connect: that need not wait for the broker (a box whose broker
    # is down must not be failed and restarted by systemd; it publishes, drops and counts until it is back).
    watch = ServiceWatch(notifier, lambda: sum(pipeline.published.values()), pipeline.health.states, pipeline.engine_busy_s)
    pipeline.tickers.append(watch.tick)
    every = f", watchdog every {notifier.watchdog_s / 2:g}s" if notifier.watchdog_s else ""
    log.info("systemd notify socket: READY once publishing%s", every)
    return watch


def _stop(pipeline: Pipeline, watch: ServiceWatch | None) -> None:
    if watch is not None:
        watch.stopping()  # from the signal handler: STOPPING=1 before the drain, so systemd waits for it
    pipeline.stop()


def make_metrics(
    config: RunConfig, counters: CountersFn, states: StatesFn, link: LinkFn | None = None, objects: ObjectsFn | None = None
) -> Metrics:
    """Prometheus-exported metrics with --metrics-port, else the in-process summary only."""
    if config.metrics_port is None:
        return Metrics()
    if not is_local_endpoint(f"tcp://{config.metrics_addr}:0"):
        log.warning(
            "metrics on %s:%d: reachable from other machines, without authentication", config.metrics_addr, config.metrics_port
        )
    return PrometheusMetrics(counters, states, link=link, objects=objects)
