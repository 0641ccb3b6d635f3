"""`edge-rt dataset`: make, check, split, import and preview datasets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .common import Parser

_SPLIT_HELP = """\
Split a folder of images and YOLO labels into train/val/test lists and a data.yaml (in DIR).

Layouts: DIR/images/... with DIR/labels/... mirroring it (one .txt per image), or images with
their .txt next to them (then no folder on the way may be named 'images': Ultralytics would look
for the labels under 'labels/'). Images are not copied: DIR/train.txt, val.txt and test.txt list
them. Stratified by each image's rarest class; identical images stay in one split; the same seed
gives the same split. Class names: --names, --names-file, DIR/data.yaml, else DIR/classes.txt.
"""


def add_dataset(sub: Any) -> None:
    p = sub.add_parser("dataset", help="make, check, split, import or preview a dataset")
    dsub = p.add_subparsers(dest="action", metavar="<action>", parser_class=Parser, required=True)
    s = dsub.add_parser("synth", help="write a synthetic shapes dataset (Ultralytics format) to OUT")
    s.add_argument("out", help="folder to write images/, labels/ and data.yaml into")
    s.add_argument("--images", type=int, default=400, help="images in all, split by --val (default 400)")
    s.add_argument("--imgsz", type=int, default=320, help="square image size in pixels (default 320)")
    s.add_argument("--seed", type=int, default=0, help="same seed, same images (default 0; the demo model saw seed 0)")
    s.add_argument("--val", type=float, default=0.2, help="fraction of images in the val split: the first ones (default 0.2)")
    c = dsub.add_parser(
        "check",
        help="check a dataset YAML, its folders and labels; report class balance, empty labels, duplicates, boxes out of range",
        description="Lists problems (exit 2): missing files, bad label lines, class ids past nc, coordinates outside "
        "[0, 1]. Prints a report: images, background images and empty label files, boxes and images per class per "
        "split, duplicate images (by content, within and across splits), duplicate boxes, and boxes that reach past "
        "the image edge (warnings; --strict fails on them).",
    )
    c.add_argument("data", help="the dataset YAML")
    c.add_argument("--strict", action="store_true", help="fail (exit 2) on warnings too, e.g. an image in two splits")
    v = dsub.add_parser("clip", help="write a video (mp4) of moving shapes, or of real people with --tracks --people, for demos and benchmarks")
    v.add_argument("out", help="the .mp4 to write")
    v.add_argument("--frames", type=int, default=300, help="default 300")
    v.add_argument("--size", metavar="WxH", help="frame size (default 640x360; with --people 1280x720)")
    v.add_argument("--fps", type=int, default=30, help="default 30")
    v.add_argument("--seed", type=int, default=7, help="default 7")
    v.add_argument(
        "--tracks",
        action="store_true",
        help="objects that enter, cross, pass in front of each other and leave, with their true ids in MOTChallenge "
        "format (OUT's stem + .gt.txt, and .seqinfo.ini), for `edge-rt bench track`",
    )
    v.add_argument("--objects", type=int, help="with --tracks: objects over the clip (default: one per 30 frames)")
    v.add_argument(
        "--people",
        metavar="SCENE",
        help="with --tracks: real people (cut out of Ultralytics' bus.jpg and zidane.jpg) instead of shapes, in one of the "
        "scenes cross, groups, stopgo, line; also writes the true crossings of the middle line (OUT's stem + .lines.json)",
    )
    v.add_argument(
        "--h264",
        action="store_true",
        help="H.264 with a keyframe every 2 s, as a camera sends it (default MPEG-4 from OpenCV); needs PyAV (edge_rt[record])",
    )
    sp = dsub.add_parser(
        "split",
        help="split a folder of images + YOLO labels into a data.yaml",
        description=_SPLIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sp.add_argument("dir", help="the folder of images and labels; data.yaml and the lists are written here")
    _split_options(sp)
    sp.add_argument("--names", help="class names in id order, comma-separated: a,b,c")
    sp.add_argument("--names-file", help="a text file with one class name per line, in id order")
    im = dsub.add_parser(
        "import",
        help="convert COCO or Pascal VOC labels into a split YOLO dataset",
        description="COCO: SRC is an instances JSON (images found beside it, or --images). VOC: SRC holds Annotations/*.xml "
        "and JPEGImages/. Writes OUT/images (hard links where possible, else copies), OUT/labels and a split OUT/data.yaml.",
    )
    im.add_argument("src", help="COCO: the instances JSON; VOC: the folder holding Annotations/ and JPEGImages/")
    im.add_argument("--from", dest="fmt", required=True, choices=["coco", "voc"], help="the label format of SRC")
    im.add_argument("--out", required=True, help="an empty or new folder")
    im.add_argument("--images", help="COCO: the folder the JSON's file_names are relative to")
    im.add_argument("--skip-difficult", action="store_true", help="VOC: leave out objects marked difficult (kept by default)")
    im.add_argument("--names", help="VOC: class names in id order (default: every name found, sorted); others are skipped")
    im.add_argument("--copy", action="store_true", help="copy images instead of hard-linking them")
    _split_options(im)
    pv = dsub.add_parser(
        "preview",
        help="write a PNG grid of augmented training samples",
        description="Draws training samples through Ultralytics' training dataset with the preset's settings and "
        "transforms, boxes drawn: what the model will see.",
    )
    pv.add_argument("data", help="the dataset YAML (its train split is sampled)")
    pv.add_argument("--augment", default="default", help="preset: default, night, weather or fisheye")
    pv.add_argument("--out", required=True, help="the PNG to write")
    pv.add_argument("--n", type=int, default=16, help="samples in the grid (default 16)")
    pv.add_argument("--seed", type=int, default=0, help="same seed, same grid (default 0)")
    pv.add_argument("--imgsz", type=int, default=320, help="training image size, also the tile size (default 320)")
    p.set_defaults(handler=_cmd_dataset)


def _people_clip(args: argparse.Namespace, size: tuple[int, int]) -> int:
    from ..training.people_clips import SCENES, people_clip

    if not args.tracks:
        raise ConfigError("--people goes with --tracks: it writes a clip with ground truth for `edge-rt bench track`")
    if args.people not in SCENES:
        raise ConfigError(f"--people {args.people!r}: choose a scene from {', '.join(SCENES)}")
    if args.objects is not None:
        raise ConfigError("--objects is for shapes; a people scene has its own walkers")
    made = people_clip(Path(args.out), args.people, frames=args.frames, size=size, fps=args.fps, seed=args.seed)
    _h264(made.video, args.h264)
    print(made.video)
    print(f"gt: {made.gt} ({made.objects} people, MOTChallenge: frame,id,left,top,width,height,conf,class,visibility)")
    print(f"lines: {made.video.with_name(made.video.stem + '.lines.json')} (true crossings of the middle line, each way)")
    print(f"seqinfo: {made.seqinfo}")
    return 0


def _split_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--val", type=float, default=0.2, help="fraction of images for val (default 0.2)")
    p.add_argument("--test", type=float, default=0.0, help="fraction of images for test (default 0: no test split)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same split (default 0)")


def _names(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    names = [n.strip() for n in raw.split(",")]
    if not all(names):
        raise ConfigError(f"--names {raw!r}: empty name; write them comma-separated, e.g. person,car")
    return names


def _h264(path: Path, wanted: bool) -> Path:
    """OpenCV's pip wheels cannot write H.264: the clip is written as MPEG-4, then re-encoded with PyAV."""
    if not wanted:
        return path
    from ..recording.clip import encode_h264

    mpeg4 = path.with_name(f".{path.name}.mpeg4.mp4")
    path.replace(mpeg4)
    try:
        return encode_h264(mpeg4, path)
    finally:
        mpeg4.unlink(missing_ok=True)


def _cmd_dataset(args: argparse.Namespace) -> int:
    try:
        return _action(args)
    except BrokenPipeError:
        raise
    except OSError as exc:  # a folder that cannot be written (a file on the way, no permission, a full disk)
        target = str(args.dir if args.action == "split" else getattr(args, "out", "") or "")
        name = str(exc.filename or "")
        detail = f"{exc.strerror or exc}: {name}" if name else str(exc.strerror or exc)
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            blocking = next((p for p in (Path(name or target), *Path(name or target).parents) if p.is_file()), None)
            detail = f"{blocking} is a file, not a folder" if blocking else detail
        if target and (not name or name.startswith(target) or target.startswith(name)):
            raise ConfigError(f"cannot write {target} ({detail}); choose a folder you can write to") from None
        raise ConfigError(f"cannot read {name or 'an input'} ({exc.strerror or exc})") from None


def _action(args: argparse.Namespace) -> int:
    if args.action == "clip":
        from ..training.synth_video import synth_clip

        size = args.size or ("1280x720" if args.people else "640x360")
        try:
            w, h = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--size {size!r}: expected WIDTHxHEIGHT, e.g. 640x360") from None
        if args.frames < 1 or args.fps < 1 or w < 32 or h < 32:
            raise ConfigError("--frames and --fps must be >= 1, the size at least 32x32")
        if args.objects is not None and (not args.tracks or args.objects < 1):
            raise ConfigError("--objects goes with --tracks and must be >= 1")
        if args.h264:
            try:
                import av  # noqa: F401
            except ImportError:
                raise ConfigError("--h264 needs PyAV, which is not installed: pip install 'edge_rt[record]'") from None
        if args.people is not None:
            return _people_clip(args, (w, h))
        if args.tracks:
            from ..training.synth_tracks import synth_track_clip

            made = synth_track_clip(
                Path(args.out), frames=args.frames, size=(w, h), fps=args.fps, seed=args.seed, objects=args.objects
            )
            _h264(made.video, args.h264)
            print(made.video)
            print(f"gt: {made.gt} ({made.objects} ids, MOTChallenge: frame,id,left,top,width,height,conf,class,visibility)")
            print(f"seqinfo: {made.seqinfo}")
            return 0
        print(_h264(synth_clip(Path(args.out), frames=args.frames, size=(w, h), fps=args.fps, seed=args.seed), args.h264))
        return 0
    if args.action == "synth":
        from ..training.synth import synth_dataset

        if args.images < 2 or args.imgsz < 32:
            raise ConfigError("--images must be >= 2 and --imgsz >= 32")
        if not 0.0 < args.val < 1.0:
            raise ConfigError(f"--val {args.val}: must be between 0 and 1 (exclusive)")
        print(synth_dataset(Path(args.out), images=args.images, imgsz=args.imgsz, seed=args.seed, val_fraction=args.val))
        return 0
    if args.action == "split":
        from ..training.split import split_dataset

        names_file = Path(args.names_file) if args.names_file else None
        result = split_dataset(Path(args.dir), args.val, args.test, args.seed, _names(args.names), names_file)
        print(_split_line(result))
        return 0
    if args.action == "import":
        return _cmd_import(args)
    if args.action == "preview":
        from ..training.preview import preview

        print(preview(Path(args.data), args.augment, Path(args.out), n=args.n, seed=args.seed, imgsz=args.imgsz))
        return 0
    return _cmd_check(args)


def _split_line(result: Any) -> str:
    parts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    extra = f"; {result.grouped_duplicates} identical image(s) kept with their twin" if result.grouped_duplicates else ""
    return f"split {sum(result.counts.values())} images ({result.layout}, {result.background} background): {parts}{extra} -> {result.data_yaml}"


def _cmd_import(args: argparse.Namespace) -> int:
    from ..training.convert import import_coco, import_voc

    split = {"val": args.val, "test": args.test, "seed": args.seed}
    if args.fmt == "coco":
        if args.names or args.skip_difficult:
            raise ConfigError("--names and --skip-difficult are for --from voc; COCO names come from its categories")
        images = Path(args.images) if args.images else None
        result = import_coco(Path(args.src), Path(args.out), images_dir=images, copy=args.copy, **split)
    else:
        if args.images:
            raise ConfigError("--images is for --from coco; a VOC root holds JPEGImages/")
        result = import_voc(
            Path(args.src), Path(args.out), skip_difficult=args.skip_difficult, names=_names(args.names), copy=args.copy, **split
        )
    print(result.summary())
    print(_split_line(result.split))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from ..training.dataset import check_dataset
    from ..training.dataset_report import dataset_report

    problems = check_dataset(Path(args.data))
    report = dataset_report(Path(args.data))
    if report is None and len(problems) == 1:  # the YAML itself is missing or unreadable: nothing else to list
        raise ConfigError(problems[0])
    if report is not None:
        print(report.format())
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        raise ConfigError(f"dataset {args.data!r}: {len(problems)} problem(s), listed above")
    if args.strict and report is not None and report.warnings():
        raise ConfigError(f"dataset {args.data!r}: {len(report.warnings())} warning(s) and --strict; listed above")
    print(f"dataset {args.data}: OK")
    return 0
