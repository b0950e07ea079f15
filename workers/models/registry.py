"""A name → constructor registry, so a checkpoint can say which network it holds and
be rebuilt from its config alone."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    def decorator(fn: Callable[..., nn.Module]):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return decorator


def list_models() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def create_model(name: str, **config) -> nn.Module:
    """Build a registered network. `config` holds num_classes, in_channels, input_size
    and architecture options; unknown options raise TypeError from the constructor."""
    _load_builtin()
    try:
        fn = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None
    return fn(**config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _load_builtin():
    # Importing registers; done lazily so registry.py has no import cycle.
    from . import liexnet, teacher  # noqa: F401
