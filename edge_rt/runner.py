"""The factory for `edge-rt run`: builds every stage from one RunConfig and runs the pipeline."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from .config import RunConfig
from .engines import Engine, load_engine
from .errors import ConfigError
from .metrics import Metrics
from .pipeline import Pipeline
from .postprocess import Postprocessor, PostprocessSettings
from .preprocess import Preprocessor
from .publish import Publisher
from .schema import check_encoding
from .sources import CaptureSettings, SourceGroup

log = logging.getLogger("edge_rt.run")


def resolve_batch(engine: Engine, requested: int | None, n_sources: int) -> int:
    """A fixed-batch model dictates the batch; a dynamic one takes --max-batch or one per source."""
    fixed = engine.info.batch
    if fixed is not None:
        if requested is not None and requested != fixed:
            raise ConfigError(f"--max-batch {requested}: this model has a fixed batch of {fixed}; export it with dynamic=True to change it")
        return fixed
    return requested or n_sources


def resolve_imgsz(engine: Engine, requested: int | None) -> tuple[int, int]:
    if requested is None:
        return engine.info.imgsz
    if not engine.info.dynamic_shape:
        raise ConfigError(f"--imgsz {requested}: this model has a fixed input {engine.info.imgsz}; only dynamic-shape exports take --imgsz")
    stride = engine.info.stride
    if requested % stride:
        raise ConfigError(f"--imgsz {requested}: must be a multiple of the model stride {stride}")
    return (requested, requested)


def build_pipeline(config: RunConfig, engine: Engine, sink: object, metrics: Metrics) -> Pipeline:
    info = engine.info
    if config.classes is not None:
        bad = [c for c in config.classes if c not in info.names]
        if bad:
            raise ConfigError(f"--classes {bad[0]}: the model has classes 0..{info.num_classes - 1}")
    max_batch = resolve_batch(engine, config.max_batch, len(config.sources))
    settings = CaptureSettings(
        open_timeout_s=config.open_timeout,
        stall_timeout_s=config.stall_timeout,
        backoff_max_s=config.reconnect_max,
    )
    return Pipeline(
        sources=SourceGroup(list(config.sources), settings),
        engine=engine,
        preprocessor=Preprocessor(
            resolve_imgsz(engine, config.imgsz), info.stride, auto=info.dynamic_shape, dtype=info.input_dtype, fixed_batch=info.batch
        ),
        postprocessor=Postprocessor(
            info.num_classes,
            info.end2end,
            PostprocessSettings(config.conf, config.iou, config.max_det, config.classes, config.agnostic_nms),
        ),
        sink=sink,  # type: ignore[arg-type]
        max_batch=max_batch,
        max_wait_s=config.max_wait_ms / 1000,
        model_name=Path(config.model).name,
        metrics=metrics,
        stats_interval_s=config.stats_interval,
    )


def run(config: RunConfig, install_signals: Callable[[Callable[[], None]], None] | None = None) -> int:
    check_encoding(config.encoding)
    publisher = Publisher(config.publish, config.encoding)  # first: a busy port fails fast
    try:
        engine = load_engine(config.model, config.device, config.threads)
    except BaseException:
        publisher.close()
        raise
    metrics = Metrics()
    try:
        pipeline = build_pipeline(config, engine, publisher, metrics)
        info = engine.info
        log.info(
            "model %s: %d classes, input %s%s, batch %s, %s head, on %s",
            Path(config.model).name, info.num_classes, info.imgsz, " (dynamic)" if info.dynamic_shape else "",
            info.batch or f"dynamic (max {pipeline.batcher.max_batch})", "end-to-end" if info.end2end else "NMS", engine.device,
        )
        log.info("publishing on %s (%s), session %s", config.publish, config.encoding, pipeline.session)
        if install_signals is not None:
            install_signals(pipeline.stop)
        if config.await_subscribers:
            log.info("waiting up to %.0fs for %d subscriber(s)", config.await_timeout, config.await_subscribers)
            publisher.await_subscribers(config.await_subscribers, config.await_timeout, cancelled=lambda: pipeline.stopping)
        pipeline.run()
        log.info("done\n%s", metrics.summary(pipeline.counters()))
        if pipeline.sink_refused:
            log.warning("%d message(s) could not be handed to ZeroMQ", pipeline.sink_refused)
    finally:
        publisher.close()
        engine.close()
    return 0
