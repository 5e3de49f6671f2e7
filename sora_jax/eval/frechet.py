"""Fréchet distance between two sets of clips in the probe's feature space (a video FID/FVD for
Shapes World).

Each clip maps to the probe's feature vector f (`probe.features`: the presence-weighted sum of its
colour-slot embeddings, which encode shape, motion and heading, and the 9 presence probabilities).
Fitting a Gaussian to each set, N(mu_a, S_a) and N(mu_b, S_b),

    FD = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)),

the squared 2-Wasserstein distance between the Gaussians. The probe sees objects and their motion
through palette memberships, not backgrounds, so this distance measures what the world's objects
look like and do. With as few clips as the suite has (tens, against 73 dimensions) the covariances
are rank-deficient and the estimate is biased upward: the evaluation compares each run with the real
clips of the same prompts (a paired set, 0 for a perfect generator), and reports the distance between
real clips of other seeds and those only as the estimator's spread at this size (large: ~400 with
the v2 probe and 24 clips), so compare runs on the same suite, not against an absolute floor.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of `features (N, D)`, N >= 2."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"Fréchet distance needs at least 2 feature vectors (N, D), got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray, eps: float = 1e-6) -> float:
    """FD between two feature sets `(N, D)` and `(M, D)` (module docstring).

    A tiny `eps` is added to both diagonals (covariances of fewer clips than dimensions are singular,
    where the square root is ill-conditioned); the imaginary part numerical error leaves on the root
    is dropped.
    """
    mu_a, sigma_a = gaussian_stats(features_a)
    mu_b, sigma_b = gaussian_stats(features_b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature sizes differ: {mu_a.shape[0]} vs {mu_b.shape[0]}")
    offset = eps * np.eye(len(mu_a))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # near-singular products are expected here
        root = np.real(linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset)))
    value = np.sum(np.square(mu_a - mu_b)) + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.trace(root)
    return float(max(value, 0.0))
