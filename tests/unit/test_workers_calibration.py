"""Temperature scaling, ECE and NLL (workers.calibration) on small data made here."""
import numpy as np
import pytest
from scipy.special import softmax

from workers.calibration import expected_calibration_error, fit_temperature, negative_log_likelihood


def overconfident(n=3000, classes=7, seed=0):
    """Logits of a toy model that is right ~60 % of the time but says ~99 %."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), y] += 1.5
    return logits * 6.0, y


def test_temperature_lowers_nll_and_ece_of_an_overconfident_model_and_keeps_its_argmax():
    logits, y = overconfident()
    t = fit_temperature(logits[:1500], y[:1500])  # fit on one half ...
    assert t > 2.0
    before, after = softmax(logits[1500:], axis=1), softmax(logits[1500:] / t, axis=1)  # ... judge on the other
    assert negative_log_likelihood(after, y[1500:]) < 0.6 * negative_log_likelihood(before, y[1500:])
    assert expected_calibration_error(after, y[1500:]) < 0.05 < expected_calibration_error(before, y[1500:])
    assert (before.argmax(1) == after.argmax(1)).all()


def test_a_calibrated_model_keeps_a_temperature_near_one():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4000, 5)) * 2
    y = np.array([rng.choice(5, p=p) for p in softmax(logits, axis=1)])  # labels drawn from the model itself
    assert fit_temperature(logits, y) == pytest.approx(1.0, abs=0.1)
    assert expected_calibration_error(softmax(logits, axis=1), y) < 0.04


def test_ece_by_hand():
    # Two bins used: confidence 0.95 (both right) and 0.55 (one of two right).
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.45, 0.55]])
    y = np.array([0, 0, 0, 0])
    # bin of 0.95: acc 1.0, conf 0.95 -> 0.05; bin of 0.55: acc 0.5, conf 0.55 -> 0.05
    assert expected_calibration_error(probs, y) == pytest.approx(0.05)
    assert negative_log_likelihood(probs, y) == pytest.approx(-np.mean(np.log([0.95, 0.95, 0.55, 0.45])))


def test_fit_temperature_refuses_empty_input():
    with pytest.raises(ValueError):
        fit_temperature(np.zeros((0, 7)), np.zeros(0, int))
