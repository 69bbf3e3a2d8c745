"""Synthetic networks stores with planted ground truth, for the match and explain tests.

``planted_networks(...)`` draws z-maps whose noise stays below the threshold, plants template supports at
|z| = 5, and copies each template (with a few neurons swapped) into chosen individual slots, so the
number of counterparts of every template is known. ``networks_dataset(...)`` (from fnet_dist.model.testing) wraps arrays in the
networks schema; ``write_networks(ds, url)`` writes it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from fnet_dist.store.storage import write_store
from fnet_dist.model import testing
from storage_schemas import NETWORKS

PLANT = 5.0


def networks_dataset(group_map, individual_map, *, corpus="news", **kwargs) -> xr.Dataset:
    """``fnet_dist.model.testing.networks_dataset`` with the match tests' default corpus name."""
    return testing.networks_dataset(group_map, individual_map, corpus=corpus, **kwargs)


def write_networks(ds: xr.Dataset, url) -> str:
    """Write ``ds`` as a networks store, individual maps chunked one sample at a time (as decompose does)."""
    ds = ds.assign(individual_map=ds["individual_map"].chunk({"sample": 1}))
    return write_store(ds, str(url), NETWORKS)


@dataclass
class Planted:
    group_map: np.ndarray
    individual_map: np.ndarray
    supports: list            # flat neuron indices of each template
    counterparts: np.ndarray  # (n_templates,) planted counterpart maps
    samples_with: np.ndarray  # (n_templates,) samples holding at least one


def planted_networks(n_templates=4, n_samples=6, n_components=5, n_layers=3, d_model=40, size=8,
                     copies=(3, 0, 5, 1), empty=(), skipped=(), seed=0, negative_copies=False) -> Planted:
    """Z-maps with planted templates; template t is copied into ``copies[t]`` random individual slots.

    Copies keep size-2 of the template's neurons and add 2 new ones (IoU 6/10 with size 8); every other
    individual map gets ``size`` neurons outside all template supports (IoU 0). Templates in ``empty``
    have no neuron above threshold; samples in ``skipped`` are NaN (status "too short") and hold no copy.
    """
    rng = np.random.default_rng(seed)
    n = n_layers * d_model
    noise = lambda *shape: rng.uniform(-3.0, 3.0, shape).astype(np.float32)  # noqa: E731
    order = rng.permutation(n)
    supports = [np.sort(order[t * size:(t + 1) * size]) for t in range(n_templates)]
    spare = order[n_templates * size:]
    group = noise(n_templates, n)
    for t, support in enumerate(supports):
        if t not in empty:
            group[t, support] = PLANT
    individual = noise(n_samples, n_components, n)
    ok = [s for s in range(n_samples) if s not in skipped]
    slots = [(s, c) for s in ok for c in range(n_components)]
    picks = rng.permutation(len(slots))
    counterparts, samples_with, start = np.zeros(n_templates, int), np.zeros(n_templates, int), 0
    for t in range(n_templates):
        chosen = [slots[i] for i in picks[start:start + copies[t]]]
        start += copies[t]
        for s, c in chosen:
            neurons = np.concatenate([supports[t][:size - 2], rng.choice(spare, 2, replace=False)])
            individual[s, c, neurons] = PLANT if not negative_copies else -PLANT
        if t not in empty:
            counterparts[t] = len(chosen)
            samples_with[t] = len({s for s, _ in chosen})
    used = set(slots[i] for i in picks[:start])
    for s, c in slots:
        if (s, c) not in used:
            individual[s, c, rng.choice(spare, size, replace=False)] = PLANT
    for s in skipped:
        individual[s] = np.nan
    shape = (n_layers, d_model)
    return Planted(group.reshape(n_templates, *shape), individual.reshape(n_samples, n_components, *shape),
                   supports, counterparts, samples_with)
