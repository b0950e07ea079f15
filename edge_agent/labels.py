"""Class names, the valence grouping, and the one rule that turns class probabilities
into a label and a valence — shared by training, evaluation, fine-tuning, the agent and
`classify`.

The rule (DESIGN's grouping, decided once here):

1. the **label** is the most probable class (argmax over the model's classes);
2. the **valence** is the group of that label (negative / neutral / positive), so label
   and valence can never disagree;
3. the **valence confidence** is the summed (calibrated) probability of that group.

Scoring a 7-class model on 3 classes with this rule is "argmax, then grouped", the
convention under which the peer mini-Xception's 3-class accuracy is quoted.
"""
from __future__ import annotations

import numpy as np

FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
VALENCE_CLASSES = ("negative", "neutral", "positive")

# DESIGN.md's default grouping; agents may override it in their config.
DEFAULT_VALENCE_MAP = {
    "angry": "negative",
    "disgust": "negative",
    "fear": "negative",
    "sad": "negative",
    "neutral": "neutral",
    "happy": "positive",
    "surprise": "positive",
    # A 3-class model maps onto itself.
    "negative": "negative",
    "positive": "positive",
}


def valence_of(label: str, mapping: dict[str, str] | None = None) -> str:
    """The valence (negative / neutral / positive) of a class name; ValueError if the
    mapping has none."""
    mapping = DEFAULT_VALENCE_MAP if mapping is None else mapping
    try:
        return mapping[label]
    except KeyError:
        raise ValueError(f"label {label!r} has no valence in the mapping") from None


def valence_matrix(labels, mapping: dict[str, str] | None = None) -> np.ndarray:
    """The (C, 3) 0/1 matrix G with G[c, v] = 1 when class c belongs to valence v, so
    `probs @ G` is the (N, 3) valence probabilities. ValueError names a class the
    mapping lacks."""
    labels = list(labels)
    group = np.zeros((len(labels), len(VALENCE_CLASSES)), dtype=np.float32)
    for i, label in enumerate(labels):
        group[i, VALENCE_CLASSES.index(valence_of(label, mapping))] = 1.0
    return group


def decide(probs: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The module's rule applied to probabilities (N, C) (or one row (C,)).

    Returns (label index (N,), label probability (N,), valence index (N,), valence
    probability (N,)); the valence is `group[label].argmax()` and its probability the
    summed probability of that group.
    """
    p = np.atleast_2d(np.asarray(probs))
    k = p.argmax(1)
    v = group[k].argmax(1)
    rows = np.arange(len(p))
    vp = (p @ group)[rows, v]
    return k, p[rows, k], v, np.clip(vp, 0.0, 1.0)
