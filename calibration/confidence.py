"""Temperature scaling: one number that makes the runtime's softmax scores mean probabilities.

CLIP's logit scale is tuned for ranking, so a fixed `--threshold` means different things for
different tables. A temperature T fitted on labelled clips (minimum NLL of softmax(logits / T),
convex in 1/T: a bounded golden-section search on log T) fixes that without changing any ranking.
Expected calibration error (equal-width bins) is reported before and after.

See docs/calibration.md.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels under softmax(logits / T)."""
    lp = log_softmax(np.asarray(logits, np.float64) / temperature)
    return float(-lp[np.arange(len(labels)), labels].mean())


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0, bins: int = 15) -> float:
    """sum over confidence bins of |accuracy - mean confidence| x the bin's share of samples."""
    probs = np.exp(log_softmax(np.asarray(logits, np.float64) / temperature))
    conf, pred = probs.max(-1), probs.argmax(-1)
    correct = pred == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=False):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, low: float = 0.01, high: float = 100.0,
                    tol: float = 1e-5) -> float:
    """The T in [low, high] minimising nll(logits / T), by golden-section search on log T."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels, np.int64)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise ConfigError(f"need logits (N, C) and N labels, got {logits.shape} and {labels.shape}")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ConfigError(f"labels must lie in 0..{logits.shape[1] - 1}")
    a, b = math.log(low), math.log(high)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(logits, labels, math.exp(c)), nll(logits, labels, math.exp(d))
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(logits, labels, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(logits, labels, math.exp(d))
    return float(math.exp((a + b) / 2))
