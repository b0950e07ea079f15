"""Face detection, Haar against YuNet, on generated 640x480 scenes, and what aligning the
crop (eyes level, from YuNet's landmarks) does to classification of rotated faces.

    python -m tests.bench.bench_detection [--frames 150]

Scenes: faces made from scikit-image's public-domain `astronaut` photograph
(`edge_agent.synthetic.photo_faces`), 40 to 200 px, rotated up to ±30°, a quarter of
them partly covered (a band over the mouth or one side, as a hand or a mask would), on
textured backgrounds; one frame in six has no face. Per detector, at the agent's
defaults (detect_width 320) with min_face 36 so the smallest faces count: recall
(ground-truth faces matched at IoU ≥ 0.4), false faces per frame, and milliseconds per
frame (median), overall and by size, rotation and cover. Then the whole pipeline's FPS
(decode → detect → track → classify → smooth) on the 4-face video of `bench_pipeline`,
detect-and-track (one frame in 6) and detecting every frame, with each detector. Then, on FER2013 PrivateTest
faces rotated by ±15° and ±30° (where the data set is present), the shipped model's
accuracy with and without aligning the crop by YuNet's landmarks. Needs the YuNet model at
<AFFECTWATCH_MODELS>/yunet/face_detection_yunet.onnx (default ../shared/models).
Writes bench-results/detection.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from tests.support import shared_model

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench-results"
YUNET = shared_model("yunet/face_detection_yunet.onnx")
SIZE_BINS = ((40, 80), (80, 140), (140, 201))
ROLL_BINS = ((0, 10), (10, 20), (20, 31))


def place_face(img, face, x, y, s, angle, cover, rng):
    """Pastes `face` (gray, square) at (x, y) as an s×s disc rotated by `angle`, with an
    optional covering band."""
    patch = cv2.cvtColor(cv2.resize(face, (s, s), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2BGR)
    if cover:
        colour = tuple(int(v) for v in rng.integers(30, 220, 3))
        if cover == "mouth":
            patch[int(s * 0.62):, :] = colour
        else:
            patch[:, int(s * 0.62):] = colour
    mask = np.zeros((s, s), np.uint8)
    cv2.ellipse(mask, (s // 2, s // 2), (int(s * 0.46), int(s * 0.5)), 0, 0, 360, 255, -1)
    m = cv2.getRotationMatrix2D((s / 2, s / 2), angle, 1.0)
    patch = cv2.warpAffine(patch, m, (s, s), borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(mask, m, (s, s))
    region = img[y:y + s, x:x + s]
    region[mask > 0] = patch[mask > 0]


def make_scenes(n_frames: int, seed: int = 0):
    """(frames, truth): truth per frame is a list of (x, y, s, angle, cover)."""
    from edge_agent.synthetic import photo_faces, texture

    rng = np.random.default_rng(seed)
    faces = photo_faces(12, seed=3, size=200)
    frames, truth = [], []
    for i in range(n_frames):
        img = texture(640, 480, seed=seed * 1000 + i)
        boxes = []
        if i % 6 != 5:
            for _ in range(int(rng.integers(1, 4))):
                for _try in range(30):
                    s = int(rng.integers(40, 201))
                    x, y = int(rng.integers(0, 640 - s)), int(rng.integers(0, 480 - s))
                    if all(x + s < bx or bx + bs < x or y + s < by or by + bs < y for bx, by, bs, *_ in boxes):
                        break
                else:
                    continue
                angle = float(rng.uniform(-30, 30))
                cover = rng.choice(["", "", "", "", "", "", "mouth", "side"])
                place_face(img, faces[int(rng.integers(len(faces)))], x, y, s, angle, cover, rng)
                boxes.append((x, y, s, angle, str(cover)))
        frames.append(img)
        truth.append(boxes)
    return frames, truth


def match(dets: np.ndarray, boxes, threshold: float = 0.4):
    """Greedy IoU matching: (matched detection index or None per truth box, unmatched detections)."""
    from edge_agent.tracking import iou

    gt = np.array([[x, y, s, s] for x, y, s, *_ in boxes], np.float32).reshape(-1, 4)
    overlap = iou(gt, dets[:, :4].astype(np.float32)) if len(dets) and len(gt) else np.zeros((len(gt), len(dets)))
    found, used = [None] * len(gt), set()
    for flat in np.argsort(-overlap, axis=None) if overlap.size else []:
        g, d = np.unravel_index(flat, overlap.shape)
        if overlap[g, d] < threshold:
            break
        if found[g] is None and d not in used:
            found[g], used = int(d), used | {int(d)}
    return found, len(dets) - len(used)


def bin_of(value, bins):
    for lo, hi in bins:
        if lo <= value < hi:
            return f"{lo}-{hi - 1 if hi in (201, 31) else hi}"
    return "other"


def run_detector(detector, frames, truth):
    times, hits, false, per = [], 0, 0, {}
    for img, boxes in zip(frames, truth):
        t = time.perf_counter()
        dets = detector.detect(img)
        times.append(1000 * (time.perf_counter() - t))
        found, extra = match(dets, boxes)
        false += extra
        for (x, y, s, angle, cover), f in zip(boxes, found):
            hits += f is not None
            for key in (f"size {bin_of(s, SIZE_BINS)} px", f"roll {bin_of(abs(angle), ROLL_BINS)}°",
                        "covered" if cover else "uncovered"):
                n, k = per.get(key, (0, 0))
                per[key] = (n + 1, k + (f is not None))
    total = sum(len(b) for b in truth)
    return {"recall": round(hits / total, 4), "faces": total,
            "false_faces_per_frame": round(false / len(frames), 4), "ms_per_frame_median": round(statistics.median(times), 2),
            "recall_by": {k: round(v[1] / v[0], 4) for k, v in sorted(per.items())},
            "count_by": {k: v[0] for k, v in sorted(per.items())}}


def alignment(clf, n_images: int = 600, angles=(-30, -15, 0, 15, 30)):
    """FER2013 PrivateTest faces (labelled), enlarged to 144 px on a 320x320 canvas and
    rotated by each angle; YuNet (full resolution) finds them; the model classifies the
    crop as is and rotated by YuNet's landmark roll (eyes level). Accuracy against the
    labels per angle, and how often YuNet found the face. None without the data set."""
    from edge_agent.classifier import crop_face
    from edge_agent.config import DetectorSection
    from edge_agent.detectors import make_detector
    from edge_agent.preprocess import PreprocessSpec
    from tests.support import dataset_path
    from workers.data import load_dataset

    path = dataset_path("fer2013/fer2013.zip")
    if not path.exists():
        return None
    data = load_dataset(path, "auto", PreprocessSpec()).where_split("PrivateTest")
    pick = np.random.default_rng(0).choice(len(data), n_images, replace=False)
    detector = make_detector(DetectorSection(kind="yunet", model=str(YUNET), min_face=36, detect_width=0))
    out = {}
    for angle in angles:
        found, right = 0, [0, 0]
        for i in pick:
            face = cv2.resize(data.images[i][..., 0], (144, 144), interpolation=cv2.INTER_CUBIC)
            canvas = np.full((320, 320), 128, np.uint8)
            canvas[88:232, 88:232] = face
            m = cv2.getRotationMatrix2D((160, 160), angle, 1.0)
            img = cv2.cvtColor(cv2.warpAffine(canvas, m, (320, 320), borderMode=cv2.BORDER_REPLICATE),
                               cv2.COLOR_GRAY2BGR)
            dets = detector.detect(img)
            if not len(dets):
                continue
            d = dets[np.argmax(dets[:, 4])]
            found += 1
            probs = clf.classify([crop_face(img, d[:4], 0.1), crop_face(img, d[:4], 0.1, float(d[5]))])
            right[0] += int(probs[0].argmax() == data.labels[i])
            right[1] += int(probs[1].argmax() == data.labels[i])
        out[f"{angle:+d}°"] = {"faces": int(n_images), "found": found,
                               "accuracy_unaligned": round(right[0] / max(found, 1), 4),
                               "accuracy_aligned": round(right[1] / max(found, 1), 4)}
        print(f"alignment {angle:+d}°: {out[f'{angle:+d}°']}", file=sys.stderr)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=150)
    args = ap.parse_args(argv)
    if not YUNET.is_file():
        print(f"skipped: the YuNet model {YUNET} is absent (AFFECTWATCH_MODELS names the models folder)",
              file=sys.stderr)
        return 0
    from edge_agent.benchmark import bench_video
    from edge_agent.classifier import load_model
    from edge_agent.config import DetectorSection, from_dict
    from edge_agent.detectors import make_detector
    from tests.bench.bench_pipeline import SHIPPED, TMP, machine

    frames, truth = make_scenes(args.frames)
    clf = load_model(SHIPPED)
    results = {"machine": machine(), "frames": len(frames), "faces": sum(len(b) for b in truth),
               "face_free_frames": sum(not b for b in truth), "detectors": {}, "pipeline_fps": {}}
    for name, section in (("haar", DetectorSection(kind="haar", min_face=36)),
                          ("yunet", DetectorSection(kind="yunet", model=str(YUNET), min_face=36))):
        detector = make_detector(section)
        detector.detect(frames[0])  # warm-up (YuNet builds its network on first use)
        results["detectors"][name] = run_detector(detector, frames, truth)
        print(f"{name}: {results['detectors'][name]}", file=sys.stderr)
    video = TMP / "scene-4-photo-faces.mp4"
    if not video.exists():
        from edge_agent.synthetic import Scene, photo_faces, write_video

        TMP.mkdir(parents=True, exist_ok=True)
        write_video(video, Scene(photo_faces(4, seed=0), seed=0), 300, 30.0)
    for every in (6, 1):
        for name, extra in (("haar", {}), ("yunet", {"kind": "yunet", "model": str(YUNET)})):
            cfg = from_dict({"detector": extra})
            runs = [bench_video(str(video), cfg, clf, every, 150) for _ in range(3)]
            fps = [r["fps"] for r in runs]
            results["pipeline_fps"][f"{name}/detect_every_{every}"] = {
                "fps_median": round(statistics.median(fps), 1), "fps_all": fps,
                "faces_per_frame": runs[0]["faces_per_frame"]}
            print(f"pipeline with {name}, detect 1 in {every}: {fps}", file=sys.stderr)
    results["alignment"] = alignment(clf)
    results["model"] = clf.version
    results["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    OUT.mkdir(exist_ok=True)
    (OUT / "detection.json").write_text(json.dumps(results, indent=2) + "\n")
    (OUT / "detection.md").write_text(markdown(results))
    print(f"wrote {OUT / 'detection.json'} and {OUT / 'detection.md'}", file=sys.stderr)
    return 0


def markdown(r: dict) -> str:
    m, h, y = r["machine"], r["detectors"]["haar"], r["detectors"]["yunet"]
    lines = [
        "# Face detection: Haar against YuNet",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, load {m['load_average_at_start']} at start, "
        f"{r['load_average_at_end']} at end; OpenCV {m['opencv']}. {r['frames']} generated 640x480 frames, "
        f"{r['faces']} faces (40–200 px, rotated up to ±30°, a quarter partly covered), "
        f"{r['face_free_frames']} frames without a face. Both at detect_width 320, min_face 36.",
        "",
        "| | Haar | YuNet |",
        "|---|---|---|",
        f"| recall | {h['recall']:.3f} | {y['recall']:.3f} |",
        f"| false faces per frame | {h['false_faces_per_frame']:.3f} | {y['false_faces_per_frame']:.3f} |",
        f"| ms per frame (median) | {h['ms_per_frame_median']:.1f} | {y['ms_per_frame_median']:.1f} |",
    ]
    for key in h["recall_by"]:
        lines.append(f"| recall, {key} ({h['count_by'][key]} faces) | {h['recall_by'][key]:.3f} | "
                     f"{y['recall_by'].get(key, 0):.3f} |")
    p = r["pipeline_fps"]
    for every, what in ((6, "detect 1 frame in 6 + track"), (1, "detect every frame")):
        a, b = p[f"haar/detect_every_{every}"], p[f"yunet/detect_every_{every}"]
        lines += [f"| pipeline FPS, 4 faces, {what} (median of 3) | {a['fps_median']} | {b['fps_median']} |",
                  f"| faces per frame in those runs (4 in view) | {a['faces_per_frame']} | {b['faces_per_frame']} |"]
    lines += [
        "",
        f"## Aligned crops (eyes level, from YuNet's landmarks), model {r['model']}",
        "",
    ]
    if not r["alignment"]:
        lines.append("Not measured: the FER2013 data set was absent.")
    else:
        lines += [
            "FER2013 PrivateTest faces (labelled), enlarged to 144 px and rotated; YuNet at full resolution; "
            "accuracy of the 7-class label on the faces it found, crop as found against crop rotated by the "
            "landmarks' roll:",
            "",
            "| rotation | faces found | unaligned | aligned |",
            "|---|---|---|---|",
        ]
        for key, a in r["alignment"].items():
            lines.append(f"| {key} | {a['found']}/{a['faces']} | {a['accuracy_unaligned']:.3f} | "
                         f"{a['accuracy_aligned']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
