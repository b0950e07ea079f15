"""Losses on soft targets with per-sample weights.

Everything reduces to L = −(1/N) Σᵢ wᵢ Σ_c q_ic log p_ic, which covers hard labels,
label smoothing, mixup, class-balanced weights and the worker-weighted fine-tune loss
(wᵢ larger for working subjects).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    q = F.one_hot(labels, num_classes).float()
    if smoothing > 0:
        q = q * (1 - smoothing) + smoothing / num_classes
    return q


def weighted_cross_entropy(logits, q, sample_weight=None) -> torch.Tensor:
    per_sample = -(q * F.log_softmax(logits, dim=1)).sum(dim=1)
    if sample_weight is not None:
        per_sample = per_sample * sample_weight
    return per_sample.mean()


def valence_cross_entropy(logits, valence, group, sample_weight=None) -> torch.Tensor:
    """−(1/N) Σᵢ wᵢ log Σ_{c ∈ vᵢ} p_ic: cross-entropy of the grouped probabilities
    (N, 3) = softmax(logits) @ group against the valence indices vᵢ (N,), the decision
    `edge_agent.labels.decide` takes. logits (N, C); group the (C, 3) 0/1 matrix of
    `edge_agent.labels.valence_matrix`."""
    in_group = group[:, valence].T > 0  # (N, C); never empty: vᵢ is the group of a label
    per_sample = -torch.logsumexp(F.log_softmax(logits, dim=1).masked_fill(~in_group, float("-inf")), dim=1)
    if sample_weight is not None:
        per_sample = per_sample * sample_weight
    return per_sample.mean()


def class_balanced_weights(counts, beta: float = 0.999) -> np.ndarray:
    """Cui et al. 2019: w_c ∝ (1 − β) / (1 − β^n_c), normalised to mean 1 over classes."""
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 1)
    w = (1 - beta) / (1 - np.power(beta, counts))
    return (w * len(w) / w.sum()).astype(np.float32)


def distillation_loss(student_logits, teacher_logits, q, alpha: float, temperature: float, sample_weight=None):
    """α·T²·KL(p_teacher^T ‖ p_student^T) + (1−α)·CE(student, q) (Hinton et al. 2015)."""
    t = temperature
    kl = F.kl_div(
        F.log_softmax(student_logits / t, dim=1), F.softmax(teacher_logits / t, dim=1), reduction="none"
    ).sum(dim=1)
    if sample_weight is not None:
        kl = kl * sample_weight
    return alpha * t * t * kl.mean() + (1 - alpha) * weighted_cross_entropy(student_logits, q, sample_weight)
