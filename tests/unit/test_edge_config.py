"""The agent's TOML config: defaults, cameras, and one clear line naming a bad key."""
import subprocess
import sys

import pytest

from edge_agent import config
from edge_agent.config import ConfigError

GOOD = """
[agent]
name = "line-3"
state_dir = "/tmp/aw"

[detector]
detect_every = 4
min_face = 40

[[cameras]]
name = "door"
source = 0

[[cameras]]
source = "rtsp://10.0.0.5/stream1"
"""


def test_good_config_loads(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(GOOD)
    cfg = config.load(path)
    assert cfg.detector.detect_every == 4 and cfg.detector.min_face == 40
    assert [c.name for c in cfg.cameras] == ["door", "cam1"]
    assert cfg.cameras[0].source == "0"  # an integer camera index becomes the source "0"
    assert str(cfg.outbox_path) == "/tmp/aw/outbox.sqlite3"
    assert str(cfg.credentials_path) == "/tmp/aw/credentials.json"
    assert cfg.valence["surprise"] == "positive"


@pytest.mark.parametrize("data, key", [
    ({"detector": {"detect_every": 0}}, "detector.detect_every"),
    ({"detector": {"min_face": "big"}}, "detector.min_face"),
    ({"detector": {"kind": "yunet"}}, "detector.model"),
    ({"smoothing": {"method": "median"}}, "smoothing.method"),
    ({"outbox": {"max_mb": -1}}, "outbox.max_mb"),
    ({"tracker": {"iou": 0.3}}, "tracker.iou"),
    ({"camera": [{}]}, "camera"),
    ({"cameras": [{"name": "a"}]}, "cameras[0].source"),
    ({"cameras": [{"name": "a", "source": "0"}, {"name": "a", "source": "1"}]}, "cameras[1].name"),
    ({"valence": {"happy": "joyful"}}, "valence.happy"),
    ({"model": {"backend": "cuda"}}, "model.backend"),
])
def test_invalid_config_names_the_key(data, key):
    with pytest.raises(ConfigError) as err:
        config.from_dict(data)
    message = str(err.value)
    assert message.startswith(key) and "\n" not in message


def test_cli_prints_one_line_for_an_invalid_config(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text("[detector]\ndetect_every = -2\n[[cameras]]\nsource = '0'\n")
    res = subprocess.run([sys.executable, "-m", "edge_agent", "run", "--config", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip() == "error: invalid config: detector.detect_every must be an integer >= 1, got -2"


def test_broken_toml_is_one_line(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text("[detector\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(path)


def test_remote_overrides_apply_valid_keys_and_report_the_rest():
    cfg = config.from_dict({})
    new, changed, ignored = config.apply_remote(cfg, {"detect_every": 3, "min_face": 4, "emit_interval_s": 2,
                                                      "colour": "blue"})
    assert new.detector.detect_every == 3 and new.smoothing.emit_interval_s == 2.0
    assert new.detector.min_face == cfg.detector.min_face == 48  # invalid: kept
    assert changed == ["detect_every", "emit_interval_s"]
    assert any(line.startswith("min_face") for line in ignored) and any("colour" in line for line in ignored)
    assert cfg.detector.detect_every == 6  # the original is untouched


def test_the_example_config_is_valid():
    from pathlib import Path

    cfg = config.load(Path(__file__).resolve().parents[2] / "platform" / "edge" / "agent.example.toml")
    assert [c.source for c in cfg.cameras] == ["csi://0"]
