"""`python -m edge_agent <command>`: enroll, run, preview, classify, annotate, bench, build-engine, simulate."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from . import config as config_mod
from .config import Config, ConfigError


def _setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _load_config(path: str | None) -> Config:
    if not path:
        return config_mod.from_dict({})
    return config_mod.load(path)


def _loader(cfg: Config, model: str | None = None):
    from .classifier import load_model

    return load_model(model or cfg.model_path, backend=cfg.model.backend, providers=cfg.model.providers,
                      engine=cfg.model.engine or None, threads=cfg.model.threads, valence_map=cfg.valence)


# Commands ------------------------------------------------------------------------------------
def cmd_enroll(args) -> int:
    from .client import EnrollmentError, enroll

    cfg = _load_config(args.config)
    path = Path(args.credentials) if args.credentials else cfg.credentials_path
    if path.exists() and not args.force:
        print(f"error: {path} exists: this board is enrolled already (use --force to enroll it again)", file=sys.stderr)
        return 2
    try:
        creds = enroll(args.server, args.code, args.name or cfg.agent.name)
    except EnrollmentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    creds.save(path)
    print(f"enrolled as device {creds.device_id} at site {creds.site or '?'}; credentials in {path} (mode 0600)")
    return 0


def cmd_run(args) -> int:
    from .agent import Agent
    from .classifier import ModelError
    from .client import Credentials

    cfg = config_mod.load(args.config)
    _setup_logging(cfg.agent.log_level)
    if not cfg.cameras:
        print("error: invalid config: cameras: at least one [[cameras]] table is needed", file=sys.stderr)
        return 2
    creds = None
    if not args.offline:
        try:
            creds = Credentials.load(cfg.credentials_path)
        except FileNotFoundError:
            print(f"error: not enrolled: {cfg.credentials_path} does not exist. Run "
                  "`python -m edge_agent enroll --server URL --code CODE` first (or use --offline)", file=sys.stderr)
            return 2
        except (OSError, ValueError, TypeError) as exc:
            print(f"error: cannot read credentials {cfg.credentials_path}: {exc}", file=sys.stderr)
            return 2
    try:
        agent = Agent(cfg, creds)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    agent.run_forever()
    return 0


def cmd_classify(args) -> int:
    from .classifier import ModelError
    from .classify import classify_paths
    from .detectors import make_detector

    cfg = _load_config(args.config)
    if args.min_face:
        cfg.detector.min_face = args.min_face
    if args.yunet:
        cfg.detector.kind, cfg.detector.model = "yunet", args.yunet
    cfg.detector.detect_width = 0 if args.full_resolution else cfg.detector.detect_width
    try:
        clf = _loader(cfg, args.model)
        detector = make_detector(cfg.detector)
    except (ModelError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    clahe = cfg.classifier.clahe_clip if (args.clahe or cfg.classifier.clahe) else 0.0
    margin = cfg.classifier.margin if args.margin is None else args.margin
    if args.out and args.out != "-":
        with open(args.out, "w", newline="") as f:
            summary = classify_paths(args.paths, detector, clf, f, margin, clahe, args.annotate, args.whole_if_none)
    else:
        summary = classify_paths(args.paths, detector, clf, sys.stdout, margin, clahe, args.annotate,
                                 args.whole_if_none)
    print(summary, file=sys.stderr)
    return 0


def cmd_annotate(args) -> int:
    from .annotate import AnnotateError, annotate_video, outputs_for, videos_in
    from .classifier import ModelError

    cfg = _load_config(args.config)
    if args.yunet:
        cfg.detector.kind, cfg.detector.model = "yunet", args.yunet
    source = Path(args.path)
    try:
        videos = videos_in(source)
        pairs = outputs_for(videos, source, Path(args.out), Path(args.csv) if args.csv else None)
        clf = _loader(cfg, args.model)
        summaries = []
        for video, (out, timeline) in zip(videos, pairs):
            summaries.append(annotate_video(video, out, timeline, cfg, clf, progress=not args.no_progress))
            print(f"{summaries[-1].line()} -> {out}" + (f", {timeline}" if timeline else ""), file=sys.stderr)
    except (AnnotateError, ModelError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if len(summaries) > 1:
        frames, faces = sum(s.frames for s in summaries), sum(s.faces for s in summaries)
        print(f"{len(summaries)} videos: {frames} frames, {faces} face-frames", file=sys.stderr)
    return 0


def cmd_preview(args) -> int:
    from .classifier import ModelError
    from .config import CameraSection
    from .preview import PreviewError, exposure_warning, is_loopback, run_preview

    cfg = _load_config(args.config)
    _setup_logging(cfg.agent.log_level)
    if args.yunet:
        cfg.detector.kind, cfg.detector.model = "yunet", args.yunet
    if args.source:
        cam = CameraSection(name="preview", source=args.source, loop=args.loop)
    else:
        cams = [c for c in cfg.cameras if not args.camera or c.name == args.camera]
        if not cams:
            print("error: nothing to preview: give --source (a file, a device index, an RTSP URL) or a --config "
                  "with a [[cameras]] table" + (f" named {args.camera!r}" if args.camera else ""), file=sys.stderr)
            return 2
        cam = cams[0]
    if not is_loopback(args.host):
        if not args.expose:
            print(f"error: refusing to serve the preview on {args.host}: it shows every face the camera sees. "
                  "It is served on 127.0.0.1 (reach it through an SSH tunnel); add --expose to serve it on "
                  "another address anyway", file=sys.stderr)
            return 2
        print(exposure_warning(args.host, args.port), file=sys.stderr)
    try:
        clf = _loader(cfg, args.model)
        window = True if args.window else (False if args.no_window else None)
        run_preview(cfg, clf, cam, args.host, args.port, window,
                    ready=lambda server: server and print(
                        f"preview of {cam.name or cam.source} at http://{args.host}:{args.port}/ "
                        "(nothing is stored or sent; Ctrl-C stops it)", file=sys.stderr, flush=True))
    except (PreviewError, ModelError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def cmd_bench(args) -> int:
    from .benchmark import bench_model, bench_video
    from .classifier import ModelError

    cfg = _load_config(args.config)
    try:
        clf = _loader(cfg, args.model)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import onnxruntime

    from .classifier import tensorrt_available

    result = {"model": clf.version, "backend": clf.backend.name,
              "available": {"onnxruntime": onnxruntime.get_available_providers(), "tensorrt": tensorrt_available()},
              "inference": bench_model(clf, tuple(int(b) for b in args.batches.split(",")), args.repeat)}
    if args.video:
        result["video"] = {f"detect_every_{k}": bench_video(args.video, cfg, clf, k, args.frames)
                           for k in (1, cfg.detector.detect_every)}
    print(json.dumps(result, indent=2))
    return 0


def cmd_build_engine(args) -> int:
    from .classifier import ModelError
    from .engine import build_engine

    cfg = _load_config(args.config)
    try:
        out = build_engine(args.model or cfg.model_path, args.out, fp16=not args.fp32, max_batch=args.max_batch)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"engine written to {out}")
    return 0


def cmd_simulate(args) -> int:
    from .simulate import simulate

    try:
        summary = simulate(args.server, args.token, args.rate, args.duration, args.cameras,
                           outbox_path=args.outbox, batch_size=args.batch_size, seed=args.seed,
                           linger_s=args.linger, out=lambda line: print(line, file=sys.stderr))
    except Exception as exc:  # noqa: BLE001 - one line for the operator
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0 if summary["left_in_outbox"] == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edge_agent", description="Affectwatch edge agent")
    p.add_argument("--log-level", default=os.environ.get("AFFECTWATCH_LOG_LEVEL", "INFO"))
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("enroll", help="trade a one-time enrollment code for this board's credentials")
    e.add_argument("--server", required=True, help="backend URL, e.g. https://affectwatch.example.com")
    e.add_argument("--code", required=True, help="the enrollment code shown in the web UI")
    e.add_argument("--name", default="", help="board name shown in the web UI (default: hostname)")
    e.add_argument("--config", help="agent config file (for agent.name / credentials / state_dir)")
    e.add_argument("--credentials", help="where to store the token (default: <state_dir>/credentials.json)")
    e.add_argument("--force", action="store_true", help="replace existing credentials")
    e.set_defaults(func=cmd_enroll)

    r = sub.add_parser("run", help="run the agent")
    r.add_argument("--config", required=True, help="TOML config file")
    r.add_argument("--offline", action="store_true", help="run without a server; events wait in the outbox")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("classify", help="classify faces in images or folders; CSV to stdout or --out")
    c.add_argument("paths", nargs="+")
    c.add_argument("--model", help="ONNX model (default: config's or the shipped one)")
    c.add_argument("--config")
    c.add_argument("--out", help="CSV file (default: stdout)")
    c.add_argument("--annotate", metavar="DIR", help="write annotated copies of the images here")
    c.add_argument("--min-face", type=int, default=0)
    c.add_argument("--margin", type=float, default=None)
    c.add_argument("--clahe", action="store_true")
    c.add_argument("--yunet", metavar="MODEL", help="use YuNet with this model file instead of Haar")
    c.add_argument("--full-resolution", action="store_true", help="detect on full-size images (slower)")
    c.add_argument("--whole-if-none", action="store_true",
                   help="treat an image with no detected face as one face crop (data set images)")
    c.set_defaults(func=cmd_classify)

    a = sub.add_parser("annotate", help="annotated copy of a video (or a folder of videos) and a per-face timeline CSV")
    a.add_argument("path", help="a video file, or a folder of them")
    a.add_argument("--out", required=True, help="annotated video (.mp4); a folder when PATH is a folder")
    a.add_argument("--csv", help="timeline CSV, one row per face per frame; a folder when PATH is a folder")
    a.add_argument("--model", help="ONNX model (default: config's or the shipped one)")
    a.add_argument("--config", help="agent config (detector, tracker, classifier settings)")
    a.add_argument("--yunet", metavar="MODEL", help="use YuNet with this model file instead of Haar")
    a.add_argument("--no-progress", action="store_true")
    a.set_defaults(func=cmd_annotate)

    v = sub.add_parser("preview", help="live view of the pipeline: faces, tracks, labels, FPS (window or local page)")
    v.add_argument("--config", help="agent config: its cameras and detector / tracker / classifier settings")
    v.add_argument("--source", help="a camera source instead of the config's (file, device index, rtsp://...)")
    v.add_argument("--camera", help="which configured camera (default: the first)")
    v.add_argument("--loop", action="store_true", help="start a --source file again at its end")
    v.add_argument("--model", help="ONNX model (default: config's or the shipped one)")
    v.add_argument("--yunet", metavar="MODEL", help="use YuNet with this model file instead of Haar")
    v.add_argument("--host", default="127.0.0.1", help="address of the preview page (default: this board only)")
    v.add_argument("--port", type=int, default=8090)
    v.add_argument("--expose", action="store_true", help="allow a --host other than loopback (prints a warning)")
    v.add_argument("--window", action="store_true", help="a window even if no display is detected")
    v.add_argument("--no-window", action="store_true", help="the page even where a display exists")
    v.set_defaults(func=cmd_preview)

    b = sub.add_parser("bench", help="measure inference (and, with --video, the whole pipeline)")
    b.add_argument("--model")
    b.add_argument("--config")
    b.add_argument("--batches", default="1,4,16")
    b.add_argument("--repeat", type=int, default=50)
    b.add_argument("--video", help="a video file to run the full pipeline on")
    b.add_argument("--frames", type=int, default=300)
    b.set_defaults(func=cmd_bench)

    g = sub.add_parser("build-engine", help="build a TensorRT engine for this board's GPU")
    g.add_argument("--model")
    g.add_argument("--config")
    g.add_argument("--out", help="engine path (default: the model's path with .engine)")
    g.add_argument("--fp32", action="store_true", help="no FP16 even where the GPU has it")
    g.add_argument("--max-batch", type=int, default=32)
    g.set_defaults(func=cmd_build_engine)

    s = sub.add_parser("simulate", help="post plausible label streams through the ingest API")
    s.add_argument("--server", required=True)
    s.add_argument("--token", required=True, help="a device token (from enroll)")
    s.add_argument("--rate", type=float, required=True, help="events per second, all cameras together")
    s.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    s.add_argument("--cameras", type=int, default=1)
    s.add_argument("--batch-size", type=int, default=200)
    s.add_argument("--outbox", help="outbox file (default: a temporary one)")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--linger", type=float, default=1.0,
                   help="seconds to gather events after a batch that was not full (the agent's default)")
    s.set_defaults(func=cmd_simulate)
    return p


def main(argv=None) -> int:
    # OpenCV and FFmpeg warn on every failed reconnect; the agent logs those itself, once.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: invalid config: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
