"""The differential-privacy mechanism behind every number the platform publishes.

What is protected: one *track-minute* — everything one tracked face contributed to one
device's minute (its detections, capped at `DP_MAX_DETECTIONS`, and its 1 in the
distinct-track count). Each released device-minute cell (negative, neutral, positive,
tracks) gets discrete Laplace noise once, drawn by OpenDP, and the noisy cell is stored;
every other number (zones, sites, hours, days, heatmaps, exports, alerts, live pushes) is
a sum or function of stored noisy cells, so by the post-processing property it reveals
no more than the cells themselves, however many queries are combined or subtracted
(Dwork & Roth, *The Algorithmic Foundations of Differential Privacy*, 2014, Prop. 2.1).

Budget per track-minute (sequential composition over the two noisy parts of a cell,
Dwork & Roth Thm. 3.14): ε = ε_counts + ε_tracks, with ε_tracks = DP_TRACKS_SHARE · ε.
The three label counts change by at most C = DP_MAX_DETECTIONS in L1 when a track-minute
is added or removed, so their noise scale is C / ε_counts; the track count changes by 1,
scale 1 / ε_tracks. A person who appears as n track-minutes is protected at n·ε (basic
composition); one person can hold several track ids (lost and re-found, two cameras).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import opendp.prelude as dp
from django.conf import settings

# OpenDP puts measurements whose proofs are not yet reviewed behind "contrib"; the
# discrete Laplace mechanism of a vector of integers is one of them in 0.16.
dp.enable_features("contrib")

#: The columns of a cell, in storage order.
CELL = ("negative", "neutral", "positive", "tracks")


class PrivacyConfigError(ValueError):
    pass


def discrete_laplace_variance(scale: float) -> float:
    """Variance of the discrete Laplace distribution P(k) ∝ exp(-|k| / scale) on the
    integers: 2·e^(-1/b) / (1 - e^(-1/b))² (Inusah & Kozubowski, 2006), ≈ 2b² for b ≫ 1."""
    q = math.exp(-1.0 / scale)
    return 2.0 * q / (1.0 - q) ** 2


@dataclass(frozen=True)
class Mechanism:
    """ε per track-minute split between the label counts and the distinct-track count."""

    epsilon: float
    tracks_share: float
    max_detections: int

    def __post_init__(self):
        if not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise PrivacyConfigError(f"DP_EPSILON must be a positive number, not {self.epsilon!r}")
        if not 0 < self.tracks_share < 1:
            raise PrivacyConfigError(f"DP_TRACKS_SHARE must lie strictly between 0 and 1, not {self.tracks_share!r}")
        if self.max_detections < 1:
            raise PrivacyConfigError(f"DP_MAX_DETECTIONS must be at least 1, not {self.max_detections!r}")

    @property
    def counts_scale(self) -> float:
        """Noise scale b of each label count: C / ε_counts (detections)."""
        return self.max_detections / (self.epsilon * (1 - self.tracks_share))

    @property
    def tracks_scale(self) -> float:
        """Noise scale b of the distinct-track count: 1 / ε_tracks (tracks)."""
        return 1.0 / (self.epsilon * self.tracks_share)

    @cached_property
    def _counts(self):
        return dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale=self.counts_scale)

    @cached_property
    def _tracks(self):
        return dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale=self.tracks_scale)

    def spent_epsilon(self) -> float:
        """ε of one track-minute as OpenDP's privacy maps state it: the label counts'
        measurement at L1 distance C plus the track count's at distance 1."""
        return float(self._counts.map(self.max_detections)) + float(self._tracks.map(1))

    def release(self, cells: np.ndarray) -> np.ndarray:
        """Noisy copies of raw cells.

        cells: int array (n, 4) of bounded raw counts in `CELL` order. Returns a new
        int64 array (n, 4); values may be negative (noise is unbiased, so sums of many
        cells stay unbiased; displays clamp only their final numbers at zero)."""
        cells = np.asarray(cells, dtype=np.int64)
        if cells.ndim != 2 or cells.shape[1] != len(CELL):
            raise ValueError(f"cells must have shape (n, {len(CELL)}), not {cells.shape}")
        if len(cells) == 0:
            return cells.copy()
        out = np.empty_like(cells)
        out[:, :3] = np.asarray(self._counts(cells[:, :3].ravel().tolist()), dtype=np.int64).reshape(-1, 3)
        out[:, 3] = np.asarray(self._tracks(cells[:, 3].tolist()), dtype=np.int64)
        return out

    def std_of_sum(self, cells: int, column: str = "negative") -> float:
        """Standard deviation of the noise in a sum of `cells` released cells' column."""
        scale = self.tracks_scale if column == "tracks" else self.counts_scale
        return math.sqrt(cells * discrete_laplace_variance(scale))


def mechanism() -> Mechanism:
    """The mechanism the settings configure (DP_EPSILON, DP_TRACKS_SHARE, DP_MAX_DETECTIONS)."""
    s = settings.AFFECTWATCH
    return _mechanism(float(s["DP_EPSILON"]), float(s["DP_TRACKS_SHARE"]), int(s["DP_MAX_DETECTIONS"]))


@lru_cache(maxsize=8)
def _mechanism(epsilon: float, tracks_share: float, max_detections: int) -> Mechanism:
    return Mechanism(epsilon, tracks_share, max_detections)
