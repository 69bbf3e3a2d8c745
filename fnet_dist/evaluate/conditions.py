"""The conditions of an evaluation built from stores: each network of a networks store, a random share of
neurons, the top percent by |z| (records: ``fnet_dist.core.conditions``).

- ``network_conditions(networks, threshold=, two_sided=, edit=None, union=True)``: each template of a networks
  store (templates numbered from 1 as in the match tables) and all of them at once (``template=None``, the
  paper's "masked 10").
- ``random_condition(shape, percent, seed)``; ``top_conditions(networks, percent, factor, corpus)``.
"""
from __future__ import annotations

from storage_schemas import NETWORKS

from ..core.conditions import Condition
from ..core.errors import InputError
from ..model.edit import Edit
from ..model.masks import NeuronMask
from ..store.storage import open_store

__all__ = ["network_conditions", "random_condition", "top_conditions"]


def network_conditions(networks, *, threshold: float, two_sided: bool, edit: "Edit | None" = None,
                       union: bool = True) -> list[Condition]:
    """One condition per template of a networks store (URL or Dataset), plus their union when ``union``;
    ``threshold``, ``two_sided``: the ``match`` section's."""

    ds = open_store(networks, NETWORKS) if isinstance(networks, str) else networks
    edit = edit or Edit("inhibit")
    corpus = str(ds.attrs.get("corpus", "networks"))
    components = list(range(ds.sizes["component"]))
    conditions = [Condition("network", NeuronMask.from_networks(ds, [k], threshold=threshold, two_sided=two_sided),
                            edit, corpus=corpus, template=k + 1) for k in components]
    if union and len(components) > 1:
        every = NeuronMask.from_networks(ds, components, threshold=threshold, two_sided=two_sided)
        conditions.append(Condition("network", every, edit, corpus=corpus))
    return conditions


def random_condition(shape: tuple[int, int], *, percent: float, seed: int) -> Condition:
    """That share of all neurons, drawn with ``seed``, inhibited."""
    if not 0 < percent < 100:
        raise InputError(f"random percent {percent!r} must lie between 0 and 100 (the paper uses 15)")
    mask = NeuronMask.random(tuple(shape), fraction=percent / 100, seed=seed)
    return Condition("random", mask, Edit("inhibit"), percent=float(percent), seed=int(seed))


def top_conditions(networks, *, percent: float, factor: float, corpus: str | None = None) -> list[Condition]:
    """The top ``percent`` % of neurons by |z| inhibited and multiplied by ``factor``."""
    corpus = corpus or str(getattr(networks, "attrs", {}).get("corpus", "networks"))
    mask = NeuronMask.top_percent(networks, percent)
    return [Condition("top", mask, edit, corpus=corpus, percent=float(percent))
            for edit in (Edit("inhibit"), Edit("multiply", factor))]
