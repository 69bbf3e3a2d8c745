"""The conditions of an evaluation built from stores: each network of a networks store, a random share of
neurons, the top percent by |z| (records: ``fnet_dist.core.conditions``).

- ``network_conditions(networks, threshold=, two_sided=, edit=None, union=True)``: each template of a networks
  store (templates numbered from 1 as in the match tables) and all of them at once (``template=None``, the
  paper's "masked 10").
- ``random_condition(shape, percent, seed)``; ``top_conditions(networks, percent, factor, corpus)``;
  ``top_without_first_token(networks, first_token, percent, corpus)``: the top percent once the first-token
  templates are left out (the paper's top 5 % includes them; their damage is the first token's).
"""
from __future__ import annotations

import numpy as np
from storage_schemas import NETWORKS

from ..core.conditions import Condition
from ..core.errors import InputError
from ..model.edit import Edit
from ..model.masks import NeuronMask
from ..store.storage import open_store

__all__ = ["network_conditions", "random_condition", "top_conditions", "top_without_first_token"]


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


def top_without_first_token(networks, first_token: np.ndarray, *, percent: float,
                            corpus: str | None = None) -> Condition | None:
    """The top ``percent`` % of neurons by |z| over the templates that are not first-token artefacts
    (``first_token``: bool (n_templates,), ``fnet_dist.core.networks.first_token_flags``), inhibited; None when
    no template is one (the top condition is then the same mask)."""
    first_token = np.asarray(first_token, dtype=bool)
    if not first_token.any() or first_token.all():
        return None
    corpus = corpus or str(getattr(networks, "attrs", {}).get("corpus", "networks"))
    mask = NeuronMask.top_percent(networks, percent, components=[int(k) for k in np.flatnonzero(~first_token)])
    return Condition("top_no_first_token", mask, Edit("inhibit"), corpus=corpus, percent=float(percent))
