from .checkpoint import (CheckpointError, build_model, load_checkpoint, make_checkpoint, read_checkpoint,
                         save_checkpoint)
from .registry import count_parameters, create_model, list_models, register_model, replace_head

__all__ = ["create_model", "list_models", "register_model", "count_parameters", "replace_head", "build_model",
           "make_checkpoint", "save_checkpoint", "read_checkpoint", "load_checkpoint", "CheckpointError"]
