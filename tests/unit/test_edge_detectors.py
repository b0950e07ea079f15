"""Detectors as plugins: the registry, each option's declared limit, today's config files,
and the field-tech docs' tables checked against the declarations."""
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pytest

from edge_agent import config
from edge_agent.config import ConfigError, DetectorSection, setting, at_least
from edge_agent.detectors import (DETECTORS, FaceDetector, HaarDetector, YuNetDetector, detector_docs,
                                  make_detector, register)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "field-tech.md"


def test_the_registry_names_every_detector_and_refuses_a_second_of_a_name():
    assert DETECTORS == {"haar": HaarDetector, "yunet": YuNetDetector}
    assert all(cls.name == name for name, cls in DETECTORS.items())
    with pytest.raises(ValueError, match="already registered"):
        register("haar")(type("Other", (HaarDetector,), {}))
    with pytest.raises(TypeError):  # the interface is abstract: _detect must be implemented
        FaceDetector()


def test_a_registered_plugin_gets_its_own_config_table_and_is_built(monkeypatch):
    @dataclass
    class BlobOptions:
        size: int = setting(10, "blob size", at_least(2))

    class Blob(FaceDetector):
        Options = BlobOptions

        def __init__(self, min_face=48, detect_width=320, size=10):
            super().__init__(min_face, detect_width)
            self.size = size

        def _detect(self, image, scale):
            return np.array([[0, 0, self.size, self.size, 1.0]], np.float32)

    monkeypatch.setitem(DETECTORS, "blob", Blob)
    Blob.name = "blob"
    cfg = config.from_dict({"detector": {"kind": "blob", "min_face": 8, "blob": {"size": 60}}})
    det = make_detector(cfg.detector)
    assert isinstance(det, Blob) and det.size == 60
    assert det.detect(np.zeros((100, 100), np.uint8)).shape == (1, 6)
    with pytest.raises(ConfigError, match=r"^detector\.blob\.size must be >= 2, got 1$"):
        config.from_dict({"detector": {"blob": {"size": 1}}})


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_every_option_declares_help_and_its_limit_is_checked_on_the_field(name):
    opts = DETECTORS[name].Options
    for f in fields(opts):
        assert f.metadata.get("help"), f"detector.{name}.{f.name} has no help"
        limit = f.metadata.get("limit")
        assert limit is not None and limit.ok(f.default), f"detector.{name}.{f.name}: default outside its limit"


@pytest.mark.parametrize("data, message", [
    ({"haar": {"scale_factor": 1.0}}, "detector.haar.scale_factor must be > 1.0, got 1.0"),
    ({"haar": {"min_neighbors": -1}}, "detector.haar.min_neighbors must be >= 0, got -1"),
    ({"yunet": {"score_threshold": 1.5}}, "detector.yunet.score_threshold must be between 0.0 and 1.0, got 1.5"),
    ({"min_neighbors": -1}, "detector.haar.min_neighbors must be >= 0, got -1"),  # a flat, pre-table key
    ({"detect_width": 32}, "detector.detect_width must be 0 or >= 64, got 32"),
    ({"kind": "ssd"}, "detector.kind must be 'auto' or one of 'haar', 'yunet', got 'ssd'"),
    ({"haar": {"score_threshold": 0.5}}, "detector.haar.score_threshold is not a known key"),
    ({"colour": 1}, "detector.colour is not a known key"),
    ({"min_neighbors": 3, "haar": {"min_neighbors": 4}}, "detector.min_neighbors is also set as detector.haar"),
])
def test_limits_name_the_key(data, message):
    with pytest.raises(ConfigError) as err:
        config.from_dict({"detector": data})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_todays_flat_config_files_still_load_into_the_detectors_tables():
    cfg = config.from_dict({"detector": {"scale_factor": 1.2, "min_neighbors": 3, "score_threshold": 0.5}})
    assert cfg.detector.options["haar"].scale_factor == 1.2 and cfg.detector.options["haar"].min_neighbors == 3
    assert cfg.detector.options["yunet"].score_threshold == 0.5
    det = make_detector(cfg.detector)
    assert isinstance(det, HaarDetector) and (det.scale_factor, det.min_neighbors) == (1.2, 3)
    # keyword construction, as benches and tests build sections
    assert DetectorSection(kind="haar", min_neighbors=2).options["haar"].min_neighbors == 2
    with pytest.raises(ConfigError, match="detector.colour is not a known key"):
        DetectorSection(colour=1)


def test_auto_keeps_todays_choice(tmp_path):
    assert DetectorSection().chosen() == "haar"
    assert DetectorSection(model="y.onnx").chosen() == "yunet"
    assert DetectorSection(kind="haar", model="y.onnx").chosen() == "haar"
    with pytest.raises(OSError, match="YuNet model .* not found"):
        make_detector(DetectorSection(model=str(tmp_path / "yunet.onnx")))


def test_remote_overrides_keep_the_detectors_options():
    cfg = config.from_dict({"detector": {"haar": {"min_neighbors": 7}}})
    new, changed, _ = config.apply_remote(cfg, {"detect_every": 2})
    assert changed == ["detect_every"] and new.detector.options["haar"].min_neighbors == 7
    assert cfg.detector.detect_every == 6


def test_the_field_tech_docs_tables_match_the_declarations():
    docs = DOCS.read_text(encoding="utf-8")
    generated = detector_docs()
    assert generated in docs, ("docs/field-tech.md's detector tables differ from the detectors' declarations; "
                               "replace them with the output of `python -m edge_agent.detectors`:\n" + generated)
