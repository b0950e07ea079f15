"""The one checkpoint format, written and read here only: training (`workers.training.loop`),
fine-tuning (`workers.finetune`) and shipping (`workers.model_card`) all use it, and so
do `--init`, `--resume` and `--teacher`.

A checkpoint is a `torch.save`d dict:

- `model` — the state dict (CPU tensors);
- `meta` — `arch` (a name in the model registry) and `model_config` (its keyword
  arguments), `classes`, `preprocess` (`PreprocessSpec.to_dict()`), and whatever the
  writer adds (`dataset`, `command`, `version`, `temperature`, …), so that the network
  can be rebuilt from the file alone;
- `epoch`, `config` (the `TrainConfig` as a dict), `history` (per-epoch metrics as
  dicts), `best_metric`, `best_epoch`;
- `optimizer`, `scheduler` — only in a training run's `last.pt`, for `--resume`.

Older files may lack `history` / `best_*` (shipped ones before this module); readers use
`.get` for those.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .registry import create_model


class CheckpointError(ValueError):
    """A file that is not a checkpoint this module can rebuild (no `meta.arch`)."""


def state_of(model: nn.Module) -> dict:
    """A detached CPU copy of `model`'s state dict (safe to keep while training goes on)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def make_checkpoint(model: nn.Module | dict, meta: dict, *, epoch: int | None = None, config: dict | None = None,
                    history: list | None = None, best_metric: float | None = None, best_epoch: int | None = None,
                    optimizer: dict | None = None, scheduler: dict | None = None, ema: dict | None = None) -> dict:
    """The checkpoint dict of `model` (a module, or a state dict already copied with
    `state_of`). `optimizer` / `scheduler` / `ema` (the weights' moving average) are state
    dicts, for a resumable `last.pt`."""
    ck: dict[str, Any] = {
        "model": state_of(model) if isinstance(model, nn.Module) else model,
        "epoch": epoch, "config": config, "meta": dict(meta or {}),
        "history": list(history or []), "best_metric": best_metric, "best_epoch": best_epoch,
    }
    if optimizer is not None:
        ck["optimizer"] = optimizer
    if scheduler is not None:
        ck["scheduler"] = scheduler
    if ema is not None:
        ck["ema"] = ema
    return ck


def save_checkpoint(path, model: nn.Module | dict, meta: dict, **fields) -> Path:
    """Writes `make_checkpoint(model, meta, **fields)` to `path` (parent folders created)
    atomically: through a temporary file and `os.replace`, so a kill mid-write never
    corrupts the file it replaces. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(make_checkpoint(model, meta, **fields), tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path) -> dict:
    """The checkpoint dict at `path`, tensors on the CPU. Raises FileNotFoundError for a
    missing file; the dict is not checked (see `load_checkpoint`)."""
    return torch.load(Path(path), map_location="cpu", weights_only=False)


def has_arch(ck: dict) -> bool:
    """Whether `ck` names its network (`meta.arch`), i.e. can be rebuilt on its own."""
    return isinstance(ck, dict) and "arch" in (ck.get("meta") or {})


def build_model(arch: str, model_config: dict | None = None, state_dict: dict | None = None) -> nn.Module:
    """A registered network rebuilt from its name and config, with `state_dict` loaded
    (strictly) when given. Raises ValueError for an unknown name, RuntimeError for
    weights that do not fit the network."""
    model = create_model(arch, **dict(model_config or {}))
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model


def load_checkpoint(path, strict_meta: bool = True) -> tuple[nn.Module, dict]:
    """(network in eval mode, checkpoint dict) from a checkpoint written by this module
    (or by the trainer before it: the format is the same). Raises CheckpointError when
    the file names no architecture."""
    ck = read_checkpoint(path)
    if strict_meta and not has_arch(ck):
        raise CheckpointError(f"{path} has no architecture metadata; it was not written by the trainer")
    meta = ck["meta"]
    return build_model(meta["arch"], meta.get("model_config"), ck["model"]).eval(), ck
