"""`python -m edge_agent annotate`: a recorded video through the very pipeline `run` uses
(detector, tracker, classifier), written back with each face's box, track, 7-class label,
valence and confidence drawn on it, plus a timeline CSV with one row per face per frame.

For researchers' recordings on a workstation: nothing is sent anywhere and nothing but
the two output files is written.
"""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .config import Config
from .labels import VALENCE_CLASSES, decide

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm"}
TIMELINE_FIELDS = ("time_s", "frame", "track", "x", "y", "w", "h", "label", "valence", "confidence")
#: BGR colour of each valence on the annotated copy.
COLOURS = {"negative": (60, 60, 220), "neutral": (200, 200, 200), "positive": (80, 190, 80)}


class AnnotateError(ValueError):
    """A problem with the user's input or output paths, said in one line."""


@dataclass
class Summary:
    video: str
    frames: int = 0
    faces: int = 0  # face-frames: one face seen in one frame
    tracks: set = field(default_factory=set)
    valence: Counter = field(default_factory=Counter)

    def line(self) -> str:
        total = sum(self.valence.values()) or 1
        shares = ", ".join(f"{v} {100 * self.valence[v] / total:.0f} %" for v in VALENCE_CLASSES)
        text = f"{self.video}: {self.frames} frames, {self.faces} face-frames, {len(self.tracks)} tracks"
        return text + (f"; valence {shares}" if self.faces else "; no face found")


def videos_in(path: Path) -> list[Path]:
    """The videos to annotate: the file itself, or a folder's video files (sorted).
    Raises AnnotateError when there is none."""
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not found:
            raise AnnotateError(f"{path} holds no video ({', '.join(sorted(VIDEO_SUFFIXES))})")
        return found
    if not path.is_file():
        raise AnnotateError(f"{path} not found")
    return [path]


def outputs_for(videos: list[Path], source: Path, out: Path, timeline: Path | None) -> list[tuple[Path, Path | None]]:
    """(annotated video, timeline CSV) per video: the given paths for one file; inside the
    given folders, named after each video, for a folder. Checks they can be written
    (AnnotateError otherwise) before any frame is processed."""
    if source.is_dir():
        pairs = [(out / f"{v.stem}.annotated.mp4", timeline / f"{v.stem}.csv" if timeline else None) for v in videos]
        dirs = [out] + ([timeline] if timeline else [])
    else:
        pairs = [(out, timeline)]
        dirs = [out.parent] + ([timeline.parent] if timeline else [])
    for d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AnnotateError(f"cannot create {d}: {exc.strerror or exc}") from None
    for video, csv_path in pairs:
        for target in filter(None, (video, csv_path)):
            if target.resolve() in {v.resolve() for v in videos}:
                raise AnnotateError(f"{target} is an input; choose another output path")
            try:
                with open(target, "ab"):
                    pass
            except OSError as exc:
                raise AnnotateError(f"cannot write {target}: {exc.strerror or exc}") from None
    return pairs


def draw(image: np.ndarray, seen, labels, group, fps: float | None = None) -> np.ndarray:
    """The frame with each face's box, track id, label, valence and confidence."""
    out = image.copy()
    for track, box, probs in seen:
        k, kp, v, vp = decide(probs, group)
        valence = VALENCE_CLASSES[int(v[0])]
        x, y, w, h = (int(round(c)) for c in box)
        colour = COLOURS[valence]
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, 2)
        text = f"#{track} {labels[int(k[0])]} {kp[0]:.2f} | {valence} {vp[0]:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        top = max(0, y - th - 6)
        x = max(0, min(x, out.shape[1] - tw - 4))  # keep the caption inside the frame
        cv2.rectangle(out, (x, top), (x + tw + 4, top + th + 6), colour, -1)
        cv2.putText(out, text, (x + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
    if fps is not None:
        cv2.putText(out, f"{fps:.1f} fps", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def annotate_video(video: Path, out: Path, timeline: Path | None, cfg: Config, clf, progress: bool = True) -> Summary:
    """Runs the agent's FramePipeline over every frame of `video` (no frame skipped, no
    event sent) and writes the annotated copy (mp4v) and the timeline CSV
    (TIMELINE_FIELDS; time in seconds from the video's start). Raises AnnotateError for
    a video OpenCV cannot open."""
    from tqdm import tqdm

    from .pipeline import FramePipeline, ModelHolder

    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise AnnotateError(f"cannot open {video} as a video (OpenCV has no decoder for it, or it is damaged)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if 1 <= fps <= 240 else 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    pipeline = FramePipeline("video", cfg, ModelHolder(clf), lambda events: None, run_id="a")
    summary = Summary(video.name)
    writer = None
    rows = open(timeline, "w", newline="") if timeline else None
    try:
        table = csv.writer(rows) if rows else None
        if table:
            table.writerow(TIMELINE_FIELDS)
        bar = tqdm(total=total, desc=video.name, unit="frame", disable=not progress, leave=False)
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            t = summary.frames / fps
            pipeline.process(frame, ts=t)
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise AnnotateError(f"cannot write a video to {out}")
            writer.write(draw(frame, pipeline.seen, clf.labels, clf.group))
            for track, box, probs in pipeline.seen:
                k, _, v, vp = decide(probs, clf.group)
                valence = VALENCE_CLASSES[int(v[0])]
                summary.tracks.add(track)
                summary.valence[valence] += 1
                if table:
                    table.writerow([f"{t:.3f}", summary.frames, track, *(int(round(c)) for c in box),
                                    clf.labels[int(k[0])], valence, f"{vp[0]:.4f}"])
            summary.faces += len(pipeline.seen)
            summary.frames += 1
            bar.update(1)
        bar.close()
    finally:
        cap.release()
        if writer is not None:
            writer.release()
        if rows:
            rows.close()
    if summary.frames == 0:
        raise AnnotateError(f"{video} has no frame OpenCV can decode")
    return summary
