"""The demo's one real board: `python -m edge_agent run` — the real face detector,
tracker, smoothing and the shipped model — watching a scene generated at start-up from a
public-domain photograph (scikit-image's `astronaut`, see `edge_agent.synthetic`), three
faces moving over a panning background, looped like a camera. It enrolls once at the
Assembly Hall's Line 1 with an enrollment code, as a field tech's board would, and then
streams labels through the ingest API like any board. Its frames stay on this machine:
the scene file is its camera, and only labels leave it."""
from __future__ import annotations

import subprocess
from pathlib import Path

NAME = "hall-camera-1"
SITE, ZONE = "assembly-hall", "Line 1"


def config_text(state: Path, video: Path) -> str:
    return f"""# Written by `make run` for the demo's real board (affectwatch/demo_board.py).
[agent]
state_dir = "{state}"
heartbeat_interval_s = 30

[detector]
detect_every = 3

[[cameras]]
name = "line-1-cam"
source = "{video}"
loop = true
realtime = true
fps = 10
"""


def prepare(var_dir: Path, server: str, python: str, cwd: Path) -> list[str]:
    """Writes the scene and the agent's config under var_dir/demo-board/, enrolls the board
    the first time, and returns the command that runs it. Raises RuntimeError when the
    enrollment fails (its message says why)."""
    from apps.sites.enrollment import create_enrollment_code
    from apps.sites.models import Site, Zone
    from edge_agent.synthetic import Scene, photo_faces, write_video

    state = var_dir / "demo-board"
    state.mkdir(parents=True, exist_ok=True)
    video = state / "scene.mp4"
    if not video.is_file():
        write_video(video, Scene(photo_faces(3, seed=7), seed=7, face_size=120), frames=600, fps=10)
    config = state / "agent.toml"
    config.write_text(config_text(state, video))
    if not (state / "credentials.json").is_file():
        site = Site.objects.get(organisation__slug="demo", slug=SITE)
        _, code = create_enrollment_code(site, zone=Zone.objects.filter(site=site, name=ZONE).first())
        res = subprocess.run([python, "-m", "edge_agent", "enroll", "--server", server, "--code", code,
                              "--config", str(config), "--name", NAME], capture_output=True, text=True, cwd=cwd,
                             timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"the demo board could not enroll: {res.stderr.strip() or res.stdout.strip()}")
    return [python, "-m", "edge_agent", "run", "--config", str(config)]
