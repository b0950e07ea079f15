"""Mapping the many spellings of class names onto a model's class list."""
from __future__ import annotations

from edge_agent.labels import FER2013_CLASSES

# Folder names used by common copies of FER2013, CK+ and similar sets.
ALIASES = {
    "anger": "angry",
    "angry": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "afraid": "fear",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "sad": "sad",
    "sadness": "sad",
    "surprise": "surprise",
    "surprised": "surprise",
    "neutral": "neutral",
    "negative": "negative",
    "positive": "positive",
}


def canonical(name: str, classes=FER2013_CLASSES) -> str | None:
    """The class in `classes` that `name` means, or None."""
    n = name.strip().lower()
    if n in classes:
        return n
    a = ALIASES.get(n)
    return a if a in classes else None
