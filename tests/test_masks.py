"""NeuronMask: networks → masks with planted neurons, set algebra, seeded random controls, files without pickle."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from fnet_dist.core.errors import InputError, StoreError
from fnet_dist.model import testing
from fnet_dist.model.masks import NeuronMask
from fnet_dist.store.storage import write_store
from storage_schemas import NETWORKS

SHAPE = (3, 16)
# planted z-values per template: (layer, neuron) -> z; everything else |z| < 1
PLANTED = {
    0: {(0, 1): 5.0, (1, 2): -4.0, (2, 3): 3.0},
    1: {(1, 2): 6.0, (2, 5): 4.5},
    2: {(0, 0): 9.0},
}


def networks_dataset(planted=PLANTED, shape=SHAPE, seed=0) -> xr.Dataset:
    """A small dataset in the networks schema whose group templates hold ``planted`` z-values."""
    rng = np.random.default_rng(seed)
    maps = rng.uniform(-0.9, 0.9, (len(planted), *shape)).astype(np.float32)
    for c, cells in planted.items():
        for (layer, neuron), z in cells.items():
            maps[c, layer, neuron] = z
    return testing.networks_dataset(maps, seed=seed)


@pytest.fixture(scope="module")
def networks_url(tmp_path_factory) -> str:
    return write_store(networks_dataset(), str(tmp_path_factory.mktemp("nets") / "networks.zarr"), NETWORKS)


def _cells(mask: NeuronMask) -> set[tuple[int, int]]:
    return {(int(a), int(b)) for a, b in mask.indices()}


def test_from_networks_selects_the_planted_neurons(networks_url):
    mask = NeuronMask.from_networks(networks_url, 0)
    assert _cells(mask) == {(0, 1), (1, 2)}  # 3.0 is under the threshold, -4.0 counts two-sided
    assert _cells(NeuronMask.from_networks(networks_url, 0, two_sided=False)) == {(0, 1)}
    assert _cells(NeuronMask.from_networks(networks_url, 0, threshold=2.5)) == {(0, 1), (1, 2), (2, 3)}
    assert mask.meta["components"] == [0] and mask.meta["threshold"] == 3.6 and mask.meta["source"] == networks_url


def test_from_networks_combines_templates(networks_url):
    union = NeuronMask.from_networks(networks_url, [0, 1])
    assert _cells(union) == {(0, 1), (1, 2), (2, 5)}
    assert _cells(NeuronMask.from_networks(networks_url, [0, 1], combine="intersection")) == {(1, 2)}
    opened = networks_dataset()  # an opened Dataset works as well as a URL
    assert NeuronMask.from_networks(opened, [0, 1]) == union


def test_set_algebra_and_keep_only(networks_url):
    a, b = NeuronMask.from_networks(networks_url, 0), NeuronMask.from_networks(networks_url, 1)
    assert _cells(a.union(b)) == {(0, 1), (1, 2), (2, 5)}
    assert _cells(a.intersection(b)) == {(1, 2)}
    assert _cells(a.difference(b)) == {(0, 1)}
    assert _cells(b - a) == {(2, 5)}
    keep_only = a.invert()
    assert keep_only.count == a.values.size - 2 and not keep_only.values[0, 1]
    assert (a | b).meta["op"] == "union" and (a | b).meta["left"] == a.meta
    assert a.count == 2 and a.n_layers == 3 and a.d_model == 16 and a.fraction == pytest.approx(2 / 48)
    assert list(a.layer_counts) == [1, 1, 0]
    assert repr(a) == "NeuronMask('template-1', 2 of 48 neurons, shape (3, 16))"


def test_top_percent_ranks_by_max_abs_z_across_templates(networks_url):
    top = NeuronMask.top_percent(networks_url, 100 * 4 / 48)  # 4 neurons
    assert _cells(top) == {(0, 0), (1, 2), (0, 1), (2, 5)}  # 9, 6 (max of |−4|, 6), 5, 4.5
    only_first = NeuronMask.top_percent(networks_url, 100 * 3 / 48, components=[0])
    assert _cells(only_first) == {(0, 1), (1, 2), (2, 3)}
    assert top.meta["count"] == 4


def test_random_count_fraction_is_seeded_and_excludes():
    a = NeuronMask.random(SHAPE, count=10, seed=3)
    assert a.count == 10 and a.meta["seed"] == 3
    assert a == NeuronMask.random(SHAPE, count=10, seed=3)
    assert a != NeuronMask.random(SHAPE, count=10, seed=4)
    assert NeuronMask.random(SHAPE, fraction=0.25, seed=0).count == 12
    network = NeuronMask.from_indices(SHAPE, [(0, i) for i in range(16)] + [(1, 0)])
    drawn = NeuronMask.random(network, count=31, exclude=network, seed=1)  # all 31 allowed neurons
    assert drawn == network.invert()


def test_random_per_layer_matches_counts():
    network = NeuronMask.from_indices(SHAPE, [(0, 1), (0, 2), (2, 7)])
    control = NeuronMask.random(SHAPE, per_layer=network.layer_counts, exclude=network, seed=7)
    assert list(control.layer_counts) == [2, 0, 1]
    assert not (control.values & network.values).any()


def test_save_load_round_trip_without_pickle(tmp_path, networks_url):
    mask = NeuronMask.from_networks(networks_url, [0, 1])
    path = mask.save(str(tmp_path / "mask.npz"))
    again = NeuronMask.load(path)
    assert again == mask and again.name == mask.name and again.meta == mask.meta
    with np.load(path, allow_pickle=False) as data:  # plain arrays only
        assert data["values"].dtype == bool and data["header"].dtype.kind == "U"


def test_values_are_a_read_only_copy():
    source = np.zeros(SHAPE, dtype=bool)
    mask = NeuronMask(source)
    source[0, 0] = True
    assert mask.count == 0
    with pytest.raises(ValueError, match="read-only"):
        mask.values[0, 0] = True


def test_bad_inputs(networks_url, tmp_path):
    mask = NeuronMask.random(SHAPE, count=3, seed=0)
    with pytest.raises(InputError, match=r"shape \(3, 16\).*model has \(4, 16\)"):
        mask.check_shape(4, 16)
    with pytest.raises(InputError, match=r"cannot combine .* shape \(3, 16\) with .* shape \(2, 8\)"):
        mask.union(NeuronMask.random((2, 8), count=1, seed=0))
    with pytest.raises(InputError, match=r"\(layer 3, neuron 0\) is out of range.*3 layers"):
        NeuronMask.from_indices(SHAPE, [(0, 0), (3, 0)])
    with pytest.raises(InputError, match=r"\(layer 1, neuron 16\) is out of range"):
        NeuronMask.from_indices(SHAPE, [(1, 16)])
    with pytest.raises(InputError, match=r"\(layer -1, neuron 2\) is out of range"):
        NeuronMask.from_indices(SHAPE, [(-1, 2)])
    with pytest.raises(InputError, match="component position 3 is out of range.*positions 0..2"):
        NeuronMask.from_networks(networks_url, [0, 3])
    with pytest.raises(InputError, match="combine 'xor'"):
        NeuronMask.from_networks(networks_url, 0, combine="xor")
    with pytest.raises(InputError, match="threshold"):
        NeuronMask.from_networks(networks_url, 0, threshold=float("nan"))
    with pytest.raises(StoreError, match="no store at"):
        NeuronMask.from_networks(str(tmp_path / "missing.zarr"), 0)
    with pytest.raises(InputError, match=r"percent 0.0 must be in \(0, 100\]"):
        NeuronMask.top_percent(networks_url, 0)
    with pytest.raises(InputError, match="exactly one of"):
        NeuronMask.random(SHAPE, count=3, fraction=0.1, seed=0)
    with pytest.raises(InputError, match="cannot draw 49 neurons"):
        NeuronMask.random(SHAPE, count=49, seed=0)
    with pytest.raises(InputError, match="per_layer has 2 counts but the mask has 3 layers"):
        NeuronMask.random(SHAPE, per_layer=[1, 1], seed=0)
    with pytest.raises(InputError, match="fraction 1.5"):
        NeuronMask.random(SHAPE, fraction=1.5, seed=0)
    with pytest.raises(InputError, match="2-D"):
        NeuronMask(np.zeros(5, dtype=bool))


def test_load_refuses_foreign_files(tmp_path):
    with pytest.raises(InputError, match="no mask file at"):
        NeuronMask.load(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "other.npz", values=np.zeros(SHAPE))
    with pytest.raises(InputError, match="not a neuron mask file"):
        NeuronMask.load(str(tmp_path / "other.npz"))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="not a neuron mask file"):
        NeuronMask.load(str(tmp_path / "objects.npy"))
