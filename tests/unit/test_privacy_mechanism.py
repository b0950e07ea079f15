"""The noise of apps.telemetry.privacy: its budget as OpenDP states it, its distribution,
and clear errors for settings that would void the guarantee."""
import math

import numpy as np
import pytest

from apps.telemetry.privacy import Mechanism, PrivacyConfigError, discrete_laplace_variance


def test_budget_per_track_minute_is_the_sum_of_its_parts():
    m = Mechanism(epsilon=1.0, tracks_share=0.2, max_detections=60)
    assert (m.counts_scale, m.tracks_scale) == (pytest.approx(75.0), pytest.approx(5.0))
    assert m.spent_epsilon() == pytest.approx(1.0)
    assert Mechanism(0.5, 0.25, 30).spent_epsilon() == pytest.approx(0.5)


def test_noise_is_discrete_laplace_of_the_stated_scale():
    m = Mechanism(epsilon=1.0, tracks_share=0.2, max_detections=60)
    raw = np.tile(np.array([[7, 3, 0, 2]]), (40_000, 1))
    noisy = m.release(raw)
    assert noisy.dtype == np.int64 and noisy.shape == raw.shape
    err = noisy - raw
    for column, scale in ((0, m.counts_scale), (3, m.tracks_scale)):
        e = err[:, column]
        sd = math.sqrt(discrete_laplace_variance(scale))
        assert abs(e.mean()) < 5 * sd / math.sqrt(len(e))
        assert e.std() == pytest.approx(sd, rel=0.05)
        # P(|noise| >= k) = 2 q^k / (1 + q) for the discrete Laplace with q = exp(-1/b).
        q = math.exp(-1 / scale)
        k = round(2 * scale)
        assert np.mean(np.abs(e) >= k) == pytest.approx(2 * q**k / (1 + q), abs=0.01)
    assert len({tuple(r) for r in noisy[:100]}) > 90  # fresh noise per cell


def test_variance_formula_meets_its_limits():
    assert discrete_laplace_variance(75.0) == pytest.approx(2 * 75.0**2, rel=1e-3)
    assert discrete_laplace_variance(1e-7) < 1e-12


@pytest.mark.parametrize("kwargs, field", [
    ({"epsilon": 0.0, "tracks_share": 0.2, "max_detections": 60}, "DP_EPSILON"),
    ({"epsilon": float("inf"), "tracks_share": 0.2, "max_detections": 60}, "DP_EPSILON"),
    ({"epsilon": 1.0, "tracks_share": 1.0, "max_detections": 60}, "DP_TRACKS_SHARE"),
    ({"epsilon": 1.0, "tracks_share": 0.2, "max_detections": 0}, "DP_MAX_DETECTIONS"),
])
def test_settings_that_void_the_guarantee_are_refused_by_name(kwargs, field):
    with pytest.raises(PrivacyConfigError, match=field):
        Mechanism(**kwargs)


def test_cells_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        Mechanism(1.0, 0.2, 60).release(np.zeros((3, 3), dtype=int))
    assert Mechanism(1.0, 0.2, 60).release(np.zeros((0, 4), dtype=int)).shape == (0, 4)
