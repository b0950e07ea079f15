"""The in-memory form every importer produces and the trainer consumes."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np


class ImportError_(ValueError):
    """A data set cannot be imported as asked (bad layout, unknown labels, no images).

    Named with a trailing underscore so it does not shadow the builtin ImportError."""


@dataclass
class ImportReport:
    """What an importer read and what it skipped, and why."""

    read: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)  # reason → first offending item

    def skip(self, reason: str, item: str):
        self.skipped[reason] += 1
        self.examples.setdefault(reason, item)

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def to_json(self) -> str:
        return json.dumps({"read": self.read, "skipped": dict(self.skipped), "examples": self.examples})

    @classmethod
    def from_json(cls, text: str) -> "ImportReport":
        d = json.loads(text)
        return cls(d["read"], Counter(d["skipped"]), d["examples"])

    def summary(self) -> str:
        if not self.skipped:
            return f"read {self.read} images"
        parts = ", ".join(f"{n} {r} (e.g. {self.examples[r]})" for r, n in self.skipped.items())
        return f"read {self.read} images, skipped {self.total_skipped}: {parts}"


@dataclass
class ImageSet:
    """uint8 images NHWC (already `to_model_pixels` output) with integer labels.

    `split` names the original partition of each image (e.g. FER2013's Training /
    PublicTest / PrivateTest); `is_worker` and `subject_id` come from manifests and are
    None for data sets that do not have them.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    split: np.ndarray | None = None
    is_worker: np.ndarray | None = None
    subject_id: np.ndarray | None = None
    name: str = "dataset"
    report: ImportReport | None = None

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"ImageSet.images must be uint8 NHWC, got {self.images.dtype} {self.images.shape}")
        if len(self.labels) != len(self.images):
            raise ValueError("ImageSet.images and labels differ in length")
        self.labels = self.labels.astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def _take(self, idx) -> "ImageSet":
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return ImageSet(
            self.images[idx], self.labels[idx], self.classes, pick(self.split),
            pick(self.is_worker), pick(self.subject_id), self.name, self.report,
        )

    def subset(self, idx) -> "ImageSet":
        return self._take(np.asarray(idx))

    def where_split(self, *names: str) -> "ImageSet":
        if self.split is None:
            raise ValueError(f"{self.name} has no split column")
        mask = np.isin(self.split, names)
        if not mask.any():
            raise ValueError(f"{self.name} has no images in split(s) {names}; it has {sorted(set(self.split))}")
        return self._take(np.flatnonzero(mask))

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.classes))

    def save_npz(self, path):
        extra = {k: getattr(self, k) for k in ("split", "is_worker", "subject_id") if getattr(self, k) is not None}
        if self.report is not None:  # a cached import still says what it skipped
            extra["report"] = np.array(self.report.to_json())
        np.savez(path, images=self.images, labels=self.labels, classes=np.array(self.classes), name=np.array(self.name), **extra)

    @classmethod
    def load_npz(cls, path) -> "ImageSet":
        with np.load(path, allow_pickle=False) as z:
            get = lambda k: z[k] if k in z.files else None  # noqa: E731
            return cls(
                z["images"], z["labels"], tuple(str(c) for c in z["classes"]), get("split"),
                get("is_worker"), get("subject_id"), str(z["name"]),
                ImportReport.from_json(str(z["report"])) if "report" in z.files else None,
            )
