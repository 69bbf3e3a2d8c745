"""Neuron masks over (layer, neuron): which MLP-block output channels an edit touches.

- ``NeuronMask(values, name, meta)``: a boolean ``(n_layers, d_model)`` array with its provenance;
  set algebra (``union``, ``intersection``, ``difference``, ``invert`` for "keep only these").
- ``NeuronMask.from_networks(networks, components, threshold=, two_sided=, combine=)``: the binary
  networks of some group templates of a networks store, united or intersected.
- ``NeuronMask.top_percent(networks, percent, components=)``: the top p % of neurons by max |z|.
- ``NeuronMask.random(shape, count=|fraction=|per_layer=, exclude=, seed=)``: a seeded random control.
- ``NeuronMask.from_indices(shape, indices)``, ``save(path)`` / ``load(path)`` (``.npz``, no pickle).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import fsspec
import numpy as np

from storage_schemas import NETWORKS

from ..core.errors import InputError
from ..core.networks import DEFAULT_THRESHOLD, DEFAULT_TWO_SIDED, binarize
from ..store.storage import normalize_url, open_store

__all__ = ["NeuronMask", "mask_shape"]

_FORMAT = "fnet-neuron-mask"
_FORMAT_VERSION = 1


def mask_shape(shape: Any) -> tuple[int, int]:
    """``(n_layers, d_model)`` from a pair of positive ints or a ``NeuronMask``; a clear error otherwise."""
    if isinstance(shape, NeuronMask):
        return shape.values.shape  # type: ignore[return-value]
    try:
        n_layers, d_model = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise InputError(f"mask shape {shape!r} must be a pair (n_layers, d_model)") from None
    if n_layers <= 0 or d_model <= 0:
        raise InputError(f"mask shape {shape!r} must have positive n_layers and d_model")
    return n_layers, d_model


def _group_maps(networks: Any) -> tuple[np.ndarray, str, dict]:
    """``group_map`` of a networks store URL or opened Dataset, shape (n_components, n_layers, d_model), its
    URL, and the model it was made from (``{"model_id", "model_revision"}``, as recorded)."""
    if isinstance(networks, str) or hasattr(networks, "__fspath__"):


        url = normalize_url(networks)
        networks = open_store(url, NETWORKS)
    elif not hasattr(networks, "variables") or "group_map" not in networks.variables:
        raise InputError(f"{type(networks).__name__} is not a networks store: expected a URL or a Dataset with 'group_map'")
    else:
        url = str(networks.attrs.get("source_url", "<dataset>"))
    model = {k: str(networks.attrs[k]) for k in ("model_id", "model_revision") if networks.attrs.get(k)}
    return np.asarray(networks["group_map"].values, dtype=np.float32), url, model


def _components(components: int | Iterable[int] | None, n_components: int) -> list[int]:
    """Template indices as a list of in-range ints (``None`` = all of them)."""
    if components is None:
        return list(range(n_components))
    chosen = [components] if isinstance(components, (int, np.integer)) else list(components)
    if not chosen:
        raise InputError("no template chosen: pass at least one component index")
    for c in chosen:
        if not isinstance(c, (int, np.integer)) or not 0 <= int(c) < n_components:
            raise InputError(f"component position {c!r} is out of range: the networks store has {n_components} templates "
                             f"(positions 0..{n_components - 1})")
    return [int(c) for c in chosen]


@dataclass(frozen=True)
class NeuronMask:
    """A set of neurons: ``values`` bool of shape (n_layers, d_model), a ``name`` and provenance ``meta``."""

    values: np.ndarray
    name: str = "mask"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = np.array(self.values, dtype=bool, copy=True)
        if values.ndim != 2 or 0 in values.shape:
            raise InputError(f"mask values must be a non-empty 2-D (n_layers, d_model) array, got shape {values.shape}")
        values.setflags(write=False)
        object.__setattr__(self, "values", values)

    # --- properties -------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return int(self.values.shape[0])

    @property
    def d_model(self) -> int:
        return int(self.values.shape[1])

    @property
    def count(self) -> int:
        return int(self.values.sum())

    @property
    def fraction(self) -> float:
        return self.count / self.values.size

    @property
    def layer_counts(self) -> np.ndarray:
        """Neurons per layer, shape (n_layers,): pass as ``per_layer`` for a matched random control."""
        return self.values.sum(axis=1)

    def indices(self) -> np.ndarray:
        """The (layer, neuron) pairs of the mask, shape (count, 2), in row-major order."""
        return np.argwhere(self.values)

    def check_shape(self, n_layers: int, d_model: int) -> None:
        """Raise a clear error unless this mask fits a model of ``n_layers`` × ``d_model`` neurons."""
        if self.values.shape != (n_layers, d_model):
            raise InputError(
                f"mask {self.name!r} has shape {self.values.shape} (n_layers, d_model) but the model has "
                f"({n_layers}, {d_model}); build the mask from networks of this model"
            )

    # --- set algebra ------------------------------------------------------------------------
    def _combine(self, other: "NeuronMask", op: str, values: np.ndarray, symbol: str) -> "NeuronMask":
        return NeuronMask(values, f"{self.name}{symbol}{other.name}", {"op": op, "left": self.meta, "right": other.meta})

    def _other(self, other: "NeuronMask") -> "NeuronMask":
        if not isinstance(other, NeuronMask):
            raise InputError(f"cannot combine a mask with {type(other).__name__}; expected a NeuronMask")
        if other.values.shape != self.values.shape:
            raise InputError(
                f"cannot combine mask {self.name!r} of shape {self.values.shape} with mask {other.name!r} of shape "
                f"{other.values.shape}; both must be (n_layers, d_model) of the same model"
            )
        return other

    def union(self, other: "NeuronMask") -> "NeuronMask":
        return self._combine(other, "union", self.values | self._other(other).values, "|")

    def intersection(self, other: "NeuronMask") -> "NeuronMask":
        return self._combine(other, "intersection", self.values & self._other(other).values, "&")

    def difference(self, other: "NeuronMask") -> "NeuronMask":
        return self._combine(other, "difference", self.values & ~self._other(other).values, "-")

    def invert(self) -> "NeuronMask":
        """Every neuron not in this mask: inhibiting it keeps only this mask's neurons."""
        return NeuronMask(~self.values, f"~{self.name}", {"op": "invert", "of": self.meta})

    __or__, __and__, __sub__, __invert__ = union, intersection, difference, invert

    def __repr__(self) -> str:
        return f"NeuronMask({self.name!r}, {self.count} of {self.values.size} neurons, shape {self.values.shape})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NeuronMask) and np.array_equal(self.values, other.values)

    __hash__ = None  # type: ignore[assignment]

    # --- constructors -----------------------------------------------------------------------
    @classmethod
    def from_networks(
        cls,
        networks: Any,
        components: int | Sequence[int],
        *,
        threshold: float = DEFAULT_THRESHOLD,
        two_sided: bool = DEFAULT_TWO_SIDED,
        combine: str = "union",
    ) -> "NeuronMask":
        """Neurons of group templates ``components`` (|z| > threshold), combined by ``union`` or ``intersection``.

        ``components`` are 0-based positions along the store's ``component`` axis; the mask's name shows the
        1-based template numbers of the match tables and the paper (position 0 → ``template-1``).
        """
        if combine not in ("union", "intersection"):
            raise InputError(f"combine {combine!r} must be 'union' or 'intersection'")
        maps, source, model = _group_maps(networks)
        chosen = _components(components, maps.shape[0])
        nets = binarize(maps[chosen], threshold, two_sided)
        values = nets.any(axis=0) if combine == "union" else nets.all(axis=0)
        labels = [str(c + 1) for c in chosen]  # names show the paper's 1-based template numbers
        name = f"template-{('+' if combine == 'union' else '&').join(labels)}"
        meta = {"rule": "networks", "source": source, "components": chosen, "threshold": float(threshold),
                "two_sided": bool(two_sided), "combine": combine, **model}
        return cls(values, name, meta)

    @classmethod
    def top_percent(cls, networks: Any, percent: float, *, components: Sequence[int] | None = None) -> "NeuronMask":
        """The ``percent`` % of all neurons with the largest max |z| across the chosen templates (default all).

        Count = round(percent / 100 × n_layers × d_model); ties broken by the lower flat index.
        """
        percent = float(percent)
        if not math.isfinite(percent) or not 0 < percent <= 100:
            raise InputError(f"percent {percent!r} must be in (0, 100], e.g. 5 for the top 5 % of neurons")
        maps, source, model = _group_maps(networks)
        chosen = _components(components, maps.shape[0])
        score = np.nan_to_num(np.abs(maps[chosen]).max(axis=0), nan=-np.inf)
        count = max(1, round(percent / 100 * score.size))
        order = np.argsort(-score.ravel(), kind="stable")[:count]
        values = np.zeros(score.size, dtype=bool)
        values[order] = True
        meta = {"rule": "top_percent", "source": source, "components": chosen, "percent": percent, "count": int(count),
                **model}
        return cls(values.reshape(score.shape), f"top-{percent:g}%", meta)

    @classmethod
    def random(
        cls,
        shape: Any,
        *,
        count: int | None = None,
        fraction: float | None = None,
        per_layer: Sequence[int] | None = None,
        exclude: "NeuronMask | None" = None,
        seed: int,
    ) -> "NeuronMask":
        """A seeded random mask of ``count`` neurons, a ``fraction`` of all, or ``per_layer`` counts per layer.

        ``exclude``: neurons never drawn (e.g. the network a control is matched to).
        """
        n_layers, d_model = mask_shape(shape)
        if sum(x is not None for x in (count, fraction, per_layer)) != 1:
            raise InputError("a random mask needs exactly one of count=, fraction= or per_layer=")
        allowed = np.ones((n_layers, d_model), dtype=bool)
        if exclude is not None:
            exclude.check_shape(n_layers, d_model)
            allowed &= ~exclude.values
        rng = np.random.default_rng(seed)
        values = np.zeros((n_layers, d_model), dtype=bool)
        if per_layer is not None:
            counts = _per_layer_counts(per_layer, n_layers)
            for layer, k in enumerate(counts):
                values[layer, _draw(rng, np.flatnonzero(allowed[layer]), int(k), f"layer {layer}")] = True
        else:
            if fraction is not None:
                fraction = float(fraction)
                if not math.isfinite(fraction) or not 0 <= fraction <= 1:
                    raise InputError(f"fraction {fraction!r} must be in [0, 1], e.g. 0.15 for 15 % of neurons")
                count = round(fraction * n_layers * d_model)
            values.ravel()[_draw(rng, np.flatnonzero(allowed.ravel()), _count(count), "the model")] = True
        meta = {"rule": "random", "seed": int(seed), "count": int(values.sum()), "fraction": fraction,
                "per_layer": None if per_layer is None else [int(k) for k in per_layer],
                "exclude": None if exclude is None else exclude.name}
        return cls(values, f"random-{int(values.sum())}-seed{seed}", meta)

    @classmethod
    def from_indices(cls, shape: Any, indices: Iterable[Sequence[int]], *, name: str = "indices") -> "NeuronMask":
        """A mask of the given (layer, neuron) pairs; an out-of-range pair is a clear error."""
        n_layers, d_model = mask_shape(shape)
        try:
            pairs = np.asarray(list(indices), dtype=np.int64).reshape(-1, 2)
        except (TypeError, ValueError):
            raise InputError("indices must be (layer, neuron) pairs of ints") from None
        bad = (pairs[:, 0] < 0) | (pairs[:, 0] >= n_layers) | (pairs[:, 1] < 0) | (pairs[:, 1] >= d_model)
        if bad.any():
            layer, neuron = pairs[np.flatnonzero(bad)[0]]
            raise InputError(
                f"neuron index (layer {layer}, neuron {neuron}) is out of range for a model of {n_layers} layers "
                f"× {d_model} neurons (layers 0..{n_layers - 1}, neurons 0..{d_model - 1})"
            )
        values = np.zeros((n_layers, d_model), dtype=bool)
        values[pairs[:, 0], pairs[:, 1]] = True
        return cls(values, name, {"rule": "indices"})

    # --- files ------------------------------------------------------------------------------
    def save(self, path: str) -> str:
        """Write an ``.npz`` (bool values, name and JSON meta as strings; no pickle); returns ``path``."""
        header = {"format": _FORMAT, "version": _FORMAT_VERSION, "name": self.name, "meta": self.meta}
        try:
            text = json.dumps(header, default=_json_default)
        except TypeError as exc:
            raise InputError(f"mask {self.name!r} meta cannot be saved as JSON: {exc}") from None
        with fsspec.open(str(path), "wb") as handle:
            np.savez_compressed(handle, values=self.values, header=np.array(text))
        return str(path)

    @classmethod
    def load(cls, path: str) -> "NeuronMask":
        """Read a mask written by ``save`` (``allow_pickle=False``); a clear error for anything else."""
        try:
            with fsspec.open(str(path), "rb") as handle, np.load(handle, allow_pickle=False) as data:
                values, header = data["values"], json.loads(str(data["header"]))
        except FileNotFoundError:
            raise InputError(f"no mask file at {str(path)!r}; check the path") from None
        except (ValueError, KeyError, OSError) as exc:
            raise InputError(f"{str(path)!r} is not a neuron mask file written by fnet ({exc})") from None
        if header.get("format") != _FORMAT or values.dtype != bool:
            raise InputError(f"{str(path)!r} is not a neuron mask file written by fnet (format {header.get('format')!r})")
        return cls(values, header["name"], header["meta"])


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _count(count: Any) -> int:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise InputError(f"count {count!r} must be a non-negative int")
    return int(count)


def _per_layer_counts(per_layer: Sequence[int], n_layers: int) -> list[int]:
    counts = [_count(k) for k in np.asarray(per_layer).tolist()]
    if len(counts) != n_layers:
        raise InputError(f"per_layer has {len(counts)} counts but the mask has {n_layers} layers; give one count per layer")
    return counts


def _draw(rng: np.random.Generator, candidates: np.ndarray, k: int, where: str) -> np.ndarray:
    if k > candidates.size:
        raise InputError(f"cannot draw {k} neurons in {where}: only {candidates.size} are allowed (after exclude)")
    return rng.choice(candidates, size=k, replace=False)
