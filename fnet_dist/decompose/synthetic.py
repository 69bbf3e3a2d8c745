"""Planted ground truth for the decomposition: sparse spatial networks with known time courses.

- ``planted_networks(...) -> Planted``: activations (n_samples, n_tokens, n_layers, d_model) float32 built
  as time courses @ network maps + Gaussian noise (seeded), with the true binary networks.
- ``best_match_iou(truth, found)``: for each true network, the best IoU with any found network.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["COURSES", "Planted", "best_match_iou", "planted_networks"]


@dataclass(frozen=True)
class Planted:
    """activations (S, T, L, D); networks (m, L, D) bool; time_courses (S, T, m)."""

    activations: np.ndarray
    networks: np.ndarray
    time_courses: np.ndarray


COURSES = ("normal", "laplace")


def planted_networks(n_samples: int = 6, n_tokens: int = 80, n_layers: int = 2, d_model: int = 400,
                     n_networks: int = 4, network_size: int = 20, noise: float = 0.5, seed: int = 0,
                     first_token_spike: float = 0.0, courses: str = "normal", dtype=np.float32) -> Planted:
    """Disjoint networks of ``network_size`` random neurons, each neuron loading 1 + 0.5|N(0,1)|, driven by a
    unit-variance time course per sample, plus N(0, noise²) everywhere. ``courses`` "normal" (Gaussian time
    courses: only spatial ICA can separate the networks, by their sparse maps) or "laplace" (super-Gaussian time
    courses: temporal ICA recovers them too, with the networks as mixing columns). ``first_token_spike`` > 0 adds
    that value at token 0 to a further ``network_size`` neurons (a massive-activation artefact).
    ``dtype`` is the activations' dtype (float16 for store-sized benchmark data).
    """
    if courses not in COURSES:
        raise ValueError(f"courses {courses!r}: expected one of {COURSES}")
    rng = np.random.default_rng(seed)
    n = n_layers * d_model
    order = rng.permutation(n)
    truth = np.zeros((n_networks, n), dtype=bool)
    for j in range(n_networks):
        truth[j, order[j * network_size:(j + 1) * network_size]] = True
    loading = truth * (1.0 + 0.5 * np.abs(rng.standard_normal((n_networks, n))))
    shape = (n_samples, n_tokens, n_networks)
    time_courses = rng.standard_normal(shape) if courses == "normal" else rng.laplace(scale=2 ** -0.5, size=shape)
    X = np.empty((n_samples, n_tokens, n), dtype=dtype)
    for i in range(n_samples):  # one sample at a time: peak memory stays one sample in float64
        X[i] = time_courses[i] @ loading + noise * rng.standard_normal((n_tokens, n))
    if first_token_spike:
        spike = order[n_networks * network_size:(n_networks + 1) * network_size]
        X[:, 0, spike] += np.asarray(first_token_spike, dtype=dtype)
    shape = (n_networks, n_layers, d_model)
    return Planted(X.reshape(n_samples, n_tokens, n_layers, d_model), truth.reshape(shape), time_courses)


def best_match_iou(truth, found) -> np.ndarray:
    """For each of ``truth`` (m, …) bool networks: the largest IoU with any of ``found`` (k, …) bool networks."""
    a = np.asarray(truth, dtype=bool).reshape(len(truth), -1).astype(np.float32)
    b = np.asarray(found, dtype=bool).reshape(len(found), -1).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0).max(axis=1)
