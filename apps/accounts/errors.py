"""Validation errors as sentences a person reads (never Python's ErrorDetail(...) text)."""
from __future__ import annotations


def sentences(detail, field: str = "") -> list[str]:
    """Flatten a DRF `serializer.errors` / ValidationError.detail (dicts of lists, list
    items by index, nested serializers) into "field: message" lines, e.g.
    {"worker_weights": {1: ["A valid number is required."]}} →
    ["worker_weights, item 2: A valid number is required."]."""
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            if isinstance(key, int):
                name = f"{field}, item {key + 1}" if field else f"item {key + 1}"
            elif key == "non_field_errors":
                name = field
            else:
                name = f"{field}.{key}" if field else str(key)
            out += sentences(value, name)
        return out
    if isinstance(detail, (list, tuple)):
        return [line for item in detail for line in sentences(item, field)]
    text = str(detail)
    return [f"{field}: {text}" if field else text]
