"""Confidence calibration: temperature scaling, expected calibration error, NLL.

Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017,
§4.2) divides every logit by one scalar T > 0 fitted by minimising the negative
log-likelihood on a validation split. It never changes the argmax, so 7-class accuracy
stays as it was; the confidences move, and with them the valence that
`edge_agent.labels.decide` takes from summed group probabilities (3-class figures are
therefore always measured calibrated). The shipped ONNX graph has T folded in
(`workers.export.export_onnx(temperature=...)`), so its output is still logits and their
softmax is the calibrated probability everywhere downstream.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean −log p(true class) of probabilities (N, C) for integer labels (N,), in nats."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    if len(labels) == 0:
        return 0.0
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)).mean())


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE of probabilities (N, C): Σ_b (|B_b|/N)·|acc(B_b) − conf(B_b)| over `bins`
    equal-width confidence bins of the top-class probability (Naeini et al. 2015; Guo
    et al. 2017, eq. 3, with their 15 bins). 0 is perfect; the unit is a probability."""
    n = len(labels)
    return float(sum(cnt / n * abs(acc - conf) for cnt, acc, conf in reliability_bins(probs, labels, bins))) if n else 0.0


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[tuple[int, float, float]]:
    """(count, accuracy, mean confidence) of each non-empty equal-width bin of the
    top-class probability; bin b holds confidences in (b/bins, (b+1)/bins]."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    return [(int(m.sum()), float(correct[m].mean()), float(conf[m].mean()))
            for m in (idx == b for b in range(bins)) if m.any()]


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds=(0.05, 20.0)) -> float:
    """The T in `bounds` minimising the NLL of softmax(logits / T) for logits (N, C)
    and integer labels (N,) (Guo et al. 2017). Searched on log T, which is smooth and
    unimodal here. ValueError when there is nothing to fit on."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    if len(labels) == 0 or logits.ndim != 2 or len(logits) != len(labels):
        raise ValueError("fit_temperature needs logits (N, C) and N labels, N > 0")
    rows = np.arange(len(labels))

    def nll(log_t):
        return -log_softmax(logits / np.exp(log_t), axis=1)[rows, labels].mean()

    res = minimize_scalar(nll, bounds=tuple(np.log(bounds)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def save_reliability_diagram(probs_before, probs_after, labels, path, bins: int = 15, title: str = "") -> None:
    """PNG of accuracy against confidence per bin, before and after calibration, with
    each curve's ECE in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect")
    for probs, name in ((probs_before, "before"), (probs_after, "after")):
        shown = [(conf, acc) for cnt, acc, conf in reliability_bins(probs, labels, bins) if cnt >= 5]
        xs, ys = zip(*shown) if shown else ((), ())
        ax.plot(xs, ys, marker="o", ms=3, label=f"{name} (ECE {expected_calibration_error(probs, labels, bins):.3f})")
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
