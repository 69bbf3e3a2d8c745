"""The decomposition stage: an activations store in, a networks store out, all heavy work on Dask.

- ``decompose(activations, out, section=None, *, scheduler=None, overwrite=False, **overrides) -> str``; the
  parameters are the ``decompose`` config section (``fnet_dist.core.config.DecomposeSection``).

The store is created up front from the config (its hash in attrs), then filled: the group level
(``GroupCanICA`` on the dask array of the group split) and one Dask task per individual sample that
fits ``IndividualICA`` and writes its own region. A rerun with the same config skips what is done
(``individual_done``, ``group_complete``); another config is refused unless ``overwrite``, which builds the
new store beside the old one and swaps it in when complete. Anything at ``out`` that is not a networks store
is refused (``fnet_dist.store.outputs``). Attr ``seconds``: wall seconds of the group and individual levels in the
run that completed the store (``benchmarks/stages.py``). Attr ``ica``: method, algorithm and contrast per level
(also in ``parameters``). Attrs ``individual_analysed`` / ``individual_converged_share``: samples whose ICA ran
(not skipped) and the share of them whose every stability run converged (None when none ran).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import numpy as np

import storage_schemas

from .. import __version__
from ..core.cluster import dask_client, gather
from ..core.config import DecomposeSection, with_overrides
from ..core.errors import InputError, StoreError
from ..store.integrity import damaged_samples, find_damage
from ..store.locks import output_lock
from ..store.outputs import prepare_output, staging_url, swap_in
from ..store.storage import normalize_url, open_store, remove_store, store_exists
from .canica import GroupCanICA
from .individual import IndividualICA, derive_seeds

__all__ = ["decompose"]

log = logging.getLogger(__name__)

_BLAS_THREADS = 1  # BLAS threads of each ICA task: Dask runs one task per worker thread


def _parameters(section: DecomposeSection) -> dict[str, Any]:
    """The method parameters recorded in attrs (and hashed): the section, the BLAS threads and the levels."""
    return {**section.model_dump(exclude={"levels"}), "blas_threads": _BLAS_THREADS, "levels": list(section.levels)}


def _config_hash(parameters: dict, source_hash: str, source_url: str) -> str:
    blob = json.dumps({"parameters": parameters, "activations": source_url, "activations_hash": source_hash},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _select(acts, section: DecomposeSection) -> dict[str, np.ndarray]:
    """Sample positions of each split; checks completeness and sizes before anything is written."""
    levels, components, group_components = section.levels, section.components, section.group_components
    complete = np.asarray(acts["complete"].values, dtype=bool)
    if not complete.all():
        raise StoreError(f"{int((~complete).sum())} samples of the activations store are not complete: "
                         f"finish the recording (rerun fnet record) before decomposing")
    split = np.array([str(v) for v in acts["split"].values])
    chosen = {name: np.flatnonzero(split == name) for name in ("group", "individual")}
    n_neurons = acts.sizes["layer"] * acts.sizes["neuron"]
    for level, k in (("group", group_components), ("individual", components)):
        if level in levels and not len(chosen[level]):
            raise InputError(f"the activations store has no {level}-split samples: record some, or leave "
                             f"{level} out of --levels")
        if level in levels and k >= n_neurons:
            flag = "--components" if level == "individual" else "--group-components"
            raise InputError(f"{flag} {k} is larger than possible: the store has {n_neurons} neurons")
    if "group" in levels and section.splits and len(chosen["group"]) < 2:
        raise InputError(f"decompose.splits {section.splits} halves the group samples, but the store has "
                         f"{len(chosen['group'])}; record at least 2 group samples, or set splits to 0")
    if "group" in levels:
        usable = acts["n_tokens"].values[chosen["group"]] - section.exclude_first_tokens - 1
        if not (usable >= group_components).any():
            raise InputError(f"--group-components {group_components} is larger than possible: no group-split sample "
                             f"has more than {int(usable.max()) + 1} tokens to analyse; lower it or record longer samples")
    return chosen


def _template(acts, chosen, parameters: dict, attrs: dict):
    """The empty networks store: big variables lazy (never written until filled), the rest NaN/pending."""
    import dask.array as da
    import xarray as xr

    n_ind, n_grp = len(chosen["individual"]), len(chosen["group"])
    k, kg = parameters["components"], parameters["group_components"]
    runs, restarts, splits = parameters["stability_runs"], parameters["n_init"], parameters["splits"]
    L, D, T = acts.sizes["layer"], acts.sizes["neuron"], acts.sizes["token"]
    nan = lambda *shape: np.full(shape, np.nan, dtype=np.float32)  # noqa: E731
    lazy = lambda *shape, chunks: da.full(shape, np.nan, dtype=np.float32, chunks=chunks)  # noqa: E731
    S, C = ("sample",), ("sample", "individual_component")
    data = {
        "group_map": (("component", "layer", "neuron"), nan(kg, L, D)),
        "group_explained_variance": (("component",), nan(kg)),
        "group_stability": (("component",), nan(kg)),
        "group_seed": (("restart",), np.zeros(restarts, np.int64)),
        "group_n_iter": (("restart",), np.zeros(restarts, np.int64)),
        "group_converged": (("restart",), np.zeros(restarts, bool)),
        "group_kept": (("restart",), np.zeros(restarts, bool)),
        "group_sample_status": (("group_sample",), np.array(["pending"] * n_grp, dtype=object)),
        "group_blas_threads": ((), np.int64(0)),
        "split_map": (("split", "half", "component", "layer", "neuron"),
                      lazy(splits, 2, kg, L, D, chunks=(1, 1, kg, L, D))),
        "split_half": (("split", "group_sample"), np.full((splits, n_grp), -1, np.int8)),
        "split_done": (("split",), np.zeros(splits, bool)),
        "individual_map": (C + ("layer", "neuron"), lazy(n_ind, k, L, D, chunks=(1, k, L, D))),
        "individual_source": (C + ("token",), lazy(n_ind, k, T, chunks=(1, k, T))),
        "individual_explained_variance": (C, lazy(n_ind, k, chunks=(1, k))),
        "individual_stability": (C, lazy(n_ind, k, chunks=(1, k))),
        "individual_peak_token_share": (C, lazy(n_ind, k, chunks=(1, k))),
        "individual_component_change": (C, lazy(n_ind, k, chunks=(1, k))),
        "individual_single_token": (C, da.zeros((n_ind, k), dtype=bool, chunks=(1, k))),
        "individual_status": (S, np.array(["pending"] * n_ind, dtype=object)),
        "individual_n_components": (S, np.zeros(n_ind, np.int64)),
        "individual_converged": (S, np.zeros(n_ind, bool)),
        "individual_n_iter": (S, np.zeros(n_ind, np.int64)),
        "individual_change": (S, nan(n_ind)),
        "individual_seed": (S + ("run",), np.zeros((n_ind, runs), np.int64)),
        "individual_blas_threads": (S, np.zeros(n_ind, np.int64)),
        "individual_done": (S, np.zeros(n_ind, bool)),
    }
    coords = {"sample": acts["sample"].values[chosen["individual"]],
              "group_sample": acts["sample"].values[chosen["group"]],
              "layer": np.arange(L), "component": np.arange(kg), "individual_component": np.arange(k),
              "split": np.arange(splits), "half": np.arange(2)}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _sample_chunks(ds) -> dict:
    """One chunk per sample along ``sample`` (each task writes its own chunks)."""
    return {name: {"chunks": tuple(1 if d == "sample" else n for d, n in zip(var.dims, var.shape))}
            for name, var in ds.data_vars.items() if "sample" in var.dims}


def _networks_attrs(url: str, overwrite: bool) -> dict | None:
    """Attrs of the networks store at ``url`` (None when there is none); a store that does not open as one
    (another schema version, damaged) is an error unless ``overwrite`` (then it counts as another config)."""
    if not store_exists(url):
        return None
    try:
        return dict(open_store(url, storage_schemas.NETWORKS, verify=False).attrs)  # damage: repaired on resume
    except StoreError:
        if not overwrite:
            raise
        return {}


def _target(url: str, attrs: dict, overwrite: bool) -> str:
    """Where to write: ``url``, or with ``overwrite`` of a store of another config the staging URL beside it
    (resumed when it holds this config), swapped in when complete so the old store stays whole until then."""
    found = _networks_attrs(url, overwrite)
    if found is None or found.get("config_hash") == attrs["config_hash"]:
        return url
    if not overwrite:
        raise StoreError(f"{url} holds networks of another config (hash {found.get('config_hash')!r}, this "
                         f"run {attrs['config_hash']!r}); pass --overwrite to replace it, or choose another --out")
    staged = staging_url(url)
    if (_networks_attrs(staged, True) or {}).get("config_hash") != attrs["config_hash"]:
        remove_store(staged)  # an unfinished replacement of another config: ours to drop
    return staged


def _repair(url: str, found: dict) -> dict:
    """Attrs of the resumed store at ``url`` after marking what has damaged chunks (missing or truncated) as not
    done, so that this run redoes it: samples (``individual_done``), splits (``split_done``) and the group level
    (``group_complete``)."""
    import xarray as xr

    damages = find_damage(url, storage_schemas.NETWORKS)
    if not damages:
        return found
    group = any(d.variable == "group_map" for d in damages)
    for dim, marker in (("sample", "individual_done"), ("split", "split_done")):
        positions = sorted(damaged_samples(damages, dim))
        if positions:
            log.warning("%s: damaged chunks of %ss %s: redoing them", url, dim, positions)
        for position in positions:
            xr.Dataset({marker: ((dim,), np.array([False]))}).to_zarr(
                url, region={dim: slice(position, position + 1)}, mode="r+", consolidated=False)
    if group:
        log.warning("%s: damaged group templates: redoing the group level", url)
    _update_attrs(url, complete=False, **({"group_complete": False} if group else {}))
    return {**found, "complete": False, **({"group_complete": False} if group else {})}


def _open_or_create(url: str, acts, chosen, parameters: dict, attrs: dict) -> dict:
    """Attrs of the store at ``url``: the existing one of the same config (what is damaged in it marked to be
    redone), or a freshly created one."""
    found = _networks_attrs(url, True)
    if found and found.get("config_hash") == attrs["config_hash"]:
        log.info("resuming %s (same config %s)", url, attrs["config_hash"])
        return _repair(url, found)
    ds = _template(acts, chosen, parameters, attrs)
    storage_schemas.NETWORKS.validate(ds.assign_attrs(storage_schemas.NETWORKS.stamp() | ds.attrs), url)
    ds.assign_attrs(storage_schemas.NETWORKS.stamp() | ds.attrs).to_zarr(
        url, mode="w", compute=False, consolidated=False, zarr_format=3, encoding=_sample_chunks(ds))
    return dict(attrs)


def _update_attrs(url: str, **values: Any) -> None:
    import zarr

    zarr.open_group(url, mode="r+", zarr_format=3).attrs.update(values)


def _run_group(url: str, acts, chosen, section: DecomposeSection) -> None:
    """Fit GroupCanICA on the group split (dask array: per-sample tasks, out-of-core group PCA); write it."""
    import xarray as xr


    maps, est = _fit_group(acts, chosen["group"], section)
    kg, got = section.group_components, len(est.components_)
    pad = lambda v: np.concatenate([v, np.full(kg - len(v), np.nan)])  # noqa: E731
    out = xr.Dataset({
        "group_map": (("component", "layer", "neuron"), maps),
        "group_explained_variance": (("component",), pad(est.explained_variance_ratio_).astype(np.float32)),
        "group_stability": (("component",), pad(est.stability_).astype(np.float32)),
        "group_seed": (("restart",), est.seeds_.astype(np.int64)),
        "group_n_iter": (("restart",), est.n_iter_.astype(np.int64)),
        "group_converged": (("restart",), est.converged_.astype(bool)),
        "group_kept": (("restart",), np.arange(section.n_init) == est.best_restart_),
        "group_sample_status": (("group_sample",), np.array(est.sample_status_, dtype=object)),
        "group_blas_threads": ((), np.int64(est.blas_threads_)),
    })
    out.to_zarr(url, mode="r+", consolidated=False, write_empty_chunks=True)  # every chunk: see store.integrity
    _update_attrs(url, group_complete=True)
    log.info("group level: %d templates from %d samples, kept restart %d", got, est.n_samples_used_, est.best_restart_)


def _fit_group(acts, positions: np.ndarray, section: DecomposeSection, **options) -> tuple[np.ndarray, GroupCanICA]:
    """GroupCanICA of the group-split samples at ``positions``: its z-maps padded with NaN to
    ``group_components`` (component, layer, neuron) float32, and the fitted estimator."""
    est = GroupCanICA.from_section(section, blas_threads=_BLAS_THREADS, **options)
    est.fit(acts["activation"].data[positions], n_tokens=acts["n_tokens"].values[positions])
    maps = np.full((section.group_components, *est.components_.shape[1:]), np.nan, np.float32)
    maps[:len(est.components_)] = est.components_
    return maps, est


def split_halves(n_samples: int, split: int, seed: int) -> np.ndarray:
    """(n_samples,) int8: the half (0 = A, 1 = B) of each group sample in split ``split``: a seeded random
    permutation, its first ⌊n/2⌋ samples in A."""
    order = np.random.default_rng([seed, 7919, split]).permutation(n_samples)
    half = np.ones(n_samples, np.int8)
    half[order[: n_samples // 2]] = 0
    return half


def _run_splits(url: str, acts, chosen, section: DecomposeSection) -> None:
    """Each split not yet done: the group level fitted on each half of the group samples (seeded apart from the
    whole), written to its ``split`` region."""
    import xarray as xr

    done = xr.open_zarr(url, consolidated=False)["split_done"].values
    for split in [s for s in range(section.splits) if not done[s]]:
        half = split_halves(len(chosen["group"]), split, section.seed)
        maps = np.stack([_fit_group(acts, chosen["group"][half == h], section,
                                    random_state=int(derive_seeds(section.seed, 1, 7919, split, h)[0]))[0]
                         for h in (0, 1)])
        region = {"split": slice(split, split + 1)}
        xr.Dataset({"split_map": (("split", "half", "component", "layer", "neuron"), maps[None]),
                    "split_half": (("split", "group_sample"), half[None])}).to_zarr(
            url, region=region, mode="r+", consolidated=False, write_empty_chunks=True)  # every chunk: store.integrity
        xr.Dataset({"split_done": (("split",), np.array([True]))}).to_zarr(url, region=region, mode="r+", consolidated=False)
        log.info("split %d: group level on halves of %d and %d samples", split, int((half == 0).sum()), int((half == 1).sum()))


def _individual_task(block, n_tokens: int, position: int, sample_id: int, url: str, section: DecomposeSection) -> str:
    """Fit one sample (a (1, n_rows, n_layers, d_model) block) and write its region of the store."""
    import warnings

    import xarray as xr

    est = IndividualICA.from_section(section, random_state=int(derive_seeds(section.seed, 1, sample_id)[0]),
                                     blas_threads=_BLAS_THREADS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-convergence and skipping are recorded in the store instead
        est.fit(np.asarray(block)[0], n_tokens=n_tokens)
    C, S = ("sample", "individual_component"), ("sample",)
    one = lambda v: np.asarray(v)[None]  # noqa: E731
    out = xr.Dataset({
        "individual_map": (C + ("layer", "neuron"), one(est.components_)),
        "individual_source": (C + ("token",), one(est.sources_)),
        "individual_explained_variance": (C, one(est.explained_variance_ratio_).astype(np.float32)),
        "individual_stability": (C, one(est.stability_).astype(np.float32)),
        "individual_peak_token_share": (C, one(est.peak_token_share_).astype(np.float32)),
        "individual_component_change": (C, one(est.component_change_).astype(np.float32)),
        "individual_single_token": (C, one(est.single_token_)),
        "individual_status": (S, np.array([est.status_], dtype=object)),
        "individual_n_components": (S, one(est.n_components_).astype(np.int64)),
        "individual_converged": (S, one(est.converged_).astype(bool)),
        "individual_n_iter": (S, one(est.n_iter_).astype(np.int64)),
        "individual_change": (S, one(est.change_).astype(np.float32)),
        "individual_seed": (S + ("run",), one(est.seeds_).astype(np.int64)),
        "individual_blas_threads": (S, one(est.blas_threads_).astype(np.int64)),
    })
    region = {"sample": slice(position, position + 1)}
    out.to_zarr(url, region=region, mode="r+", consolidated=False, write_empty_chunks=True)
    xr.Dataset({"individual_done": (S, np.array([True]))}).to_zarr(url, region=region, mode="r+", consolidated=False)
    return est.status_


def _run_individual(url: str, acts, chosen, section: DecomposeSection, client) -> list[str]:
    """One Dask task per individual sample not yet done; returns the statuses of the samples run now."""
    import dask
    import xarray as xr


    done = xr.open_zarr(url, consolidated=False)["individual_done"].values
    todo = [pos for pos in range(len(chosen["individual"])) if not done[pos]]
    if not todo:
        return []
    arr = acts["activation"].data
    blocks = arr.rechunk({0: 1, 1: -1, 2: -1, 3: -1}).to_delayed().ravel()
    n_tokens, ids = acts["n_tokens"].values, acts["sample"].values
    tasks = [dask.delayed(_individual_task, pure=True)(blocks[chosen["individual"][pos]],
                                                       int(n_tokens[chosen["individual"][pos]]), pos,
                                                       int(ids[chosen["individual"][pos]]), url, section)
             for pos in todo]
    log.info("individual level: %d samples as Dask tasks (%d already done)", len(todo), len(done) - len(todo))
    return gather(client, tasks, "decompose: individual ICAs")


def _convergence(url: str) -> dict[str, Any]:
    """Samples whose individual ICA ran, and the share of them that converged (every stability run)."""
    import xarray as xr

    ds = xr.open_zarr(url, consolidated=False)
    ran = ds["individual_n_components"].values > 0
    converged = ds["individual_converged"].values[ran]
    return {"individual_analysed": int(ran.sum()),
            "individual_converged_share": round(float(converged.mean()), 4) if ran.any() else None}


def decompose(activations: str, out: str, section: DecomposeSection | None = None, *, scheduler: str | None = None,
              overwrite: bool = False, corpus: str | None = None, **overrides: Any) -> str:
    """Decompose the activations store at ``activations`` into a networks store at ``out``; returns its URL.

    section : the ``decompose`` config section (default: its defaults); ``overrides`` replace some of its
        fields (``components=8``) and the result is validated by the section.
    Runs on ``fnet_dist.core.cluster.dask_client(scheduler)``. Resumable: a rerun with the same config
    finishes what is missing (also with ``overwrite``); a store of another config is refused unless
    ``overwrite``, which replaces it. Inputs are checked before any existing store is touched.
    """

    section = with_overrides(section or DecomposeSection(), overrides)
    levels = section.levels
    p = _parameters(section)
    src, url = normalize_url(activations), normalize_url(out)
    if src == url:
        raise InputError(f"--out {out!r} is the activations store itself: choose another path for the networks")
    with output_lock(url):
        prepare_output(url, "networks", resume=True)  # a user's files or another kind of store: refused, untouched
        acts = open_store(src, storage_schemas.ACTIVATIONS)
        chosen = _select(acts, section)
        attrs = {"corpus": corpus or str(acts.attrs.get("corpus", "unknown")), "activations": src,
                 "model_id": str(acts.attrs["model_id"]), "model_revision": str(acts.attrs.get("model_revision", "")),
                 **({"model_init": str(acts.attrs["model_init"])} if "model_init" in acts.attrs else {}),
                 "n_layers": int(acts.sizes["layer"]),
                 "d_model": int(acts.sizes["neuron"]), "package_version": __version__, "parameters": p,
                 "levels": list(levels), "group_complete": False, "complete": False,
                 "ica": {"individual": {"method": section.individual_method, "algorithm": section.algorithm,
                                        "fun": section.fun},
                         "group": {"method": "canica", "algorithm": "fastica", "fun": section.group_fun}},
                 "config_hash": _config_hash(p, str(acts.attrs.get("config_hash", "")), src)}
        target = _target(url, attrs, overwrite)
        state = _open_or_create(target, acts, chosen, p, attrs)
        if state.get("complete"):
            log.info("%s is complete for this config: nothing to do", url)
            return url
        seconds: dict[str, float] = {}
        with dask_client(scheduler) as client:
            if "group" in levels and not state.get("group_complete"):
                start = time.perf_counter()
                _run_group(target, acts, chosen, section)
                seconds["group"] = round(time.perf_counter() - start, 2)
            if "group" in levels and section.splits:
                start = time.perf_counter()
                _run_splits(target, acts, chosen, section)
                seconds["splits"] = round(time.perf_counter() - start, 2)
            if "individual" in levels:
                start = time.perf_counter()
                _run_individual(target, acts, chosen, section, client)
                seconds["individual"] = round(time.perf_counter() - start, 2)
        _update_attrs(target, complete=True, seconds=seconds, **_convergence(target))
        if target != url:
            swap_in(target, url)
    return url
