"""Class names and the valence grouping shared by training, the agent and the server."""

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
    """The valence (negative / neutral / positive) of a class name."""
    mapping = DEFAULT_VALENCE_MAP if mapping is None else mapping
    try:
        return mapping[label]
    except KeyError:
        raise ValueError(f"label {label!r} has no valence in the mapping") from None
