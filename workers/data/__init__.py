"""Importers turn a data set on disk into an `ImageSet` of `to_model_pixels` output."""
from .imageset import ImageSet, ImportError_, ImportReport
from .loader import load_dataset

__all__ = ["ImageSet", "ImportReport", "ImportError_", "load_dataset"]
