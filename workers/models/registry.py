"""A name → constructor registry, so a checkpoint can say which network it holds and
be rebuilt from its config alone."""
from __future__ import annotations

from typing import Callable

import torch
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


def fresh_linear(in_features: int, num_classes: int, seed: int = 0) -> nn.Linear:
    """A new `nn.Linear(in_features, num_classes)` with weights and bias drawn uniformly
    from ±1/sqrt(in_features) by a generator seeded with `seed`, so a replaced head is
    the same on every run."""
    head = nn.Linear(in_features, num_classes)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bound = 1.0 / max(in_features, 1) ** 0.5
        head.weight.uniform_(-bound, bound, generator=g)
        head.bias.uniform_(-bound, bound, generator=g)
    return head


def replace_head(model: nn.Module, num_classes: int, seed: int = 0) -> nn.Module:
    """Gives `model` a fresh classifier head with `num_classes` outputs (its
    `reset_classifier` hook, which every registered network has; the features keep their
    weights). Returns the model, changed in place. Raises TypeError for a network
    without the hook."""
    reset = getattr(model, "reset_classifier", None)
    if not callable(reset):
        raise TypeError(f"{type(model).__name__} has no reset_classifier(num_classes, seed); "
                        "a registered network must define it")
    reset(num_classes, seed)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _load_builtin():
    # Importing registers; done lazily so registry.py has no import cycle.
    from . import liexnet, teacher  # noqa: F401
