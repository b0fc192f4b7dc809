"""Nielsen's network2.py JSON model files: read as network2.py writes them, written as it
reads them, and hostile files refused with a ModelFormatError (the size bounded before
parsing, the nesting by the parser, every shape from the lists' lengths before an array)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import deltaprop as dp
from deltaprop import nielsen


def network2_file(path, sizes, cost="CrossEntropyCost", seed=0):
    """A file as network2.py's Network.save writes it (its weights and column biases)."""
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=(n, m)) / np.sqrt(m) for m, n in zip(sizes[:-1], sizes[1:])]
    biases = [rng.normal(size=(n, 1)) for n in sizes[1:]]
    data = {
        "sizes": sizes,
        "weights": [w.tolist() for w in weights],
        "biases": [b.tolist() for b in biases],
        "cost": cost,
    }
    with open(path, "w") as f:
        json.dump(data, f)
    return weights, biases


def network2_feedforward(weights, biases, x):
    """network2.py's feedforward: a = sigmoid(w . a + b), column vectors."""
    a = x.reshape(-1, 1)
    for w, b in zip(weights, biases):
        a = 1.0 / (1.0 + np.exp(-(np.dot(w, a) + b)))
    return a.ravel()


@pytest.mark.parametrize(("cost", "ours"), list(nielsen.COSTS.items()))
def test_a_network2_file_predicts_as_network2_does(tmp_path, cost, ours):
    weights, biases = network2_file(tmp_path / "net.json", [12, 7, 5, 3], cost)
    net = dp.load(tmp_path / "net.json")
    assert (net.activation, net.output, net.cost_name) == ("sigmoid", "sigmoid", ours)
    X = np.random.default_rng(1).normal(size=(9, 12))
    expected = np.array([network2_feedforward(weights, biases, x) for x in X])
    np.testing.assert_allclose(net.predict(X), expected, rtol=1e-13, atol=1e-15)


def test_saving_in_nielsens_format_writes_what_network2_reads(tmp_path):
    net = dp.Network([6, 4, 2], cost="quadratic", dtype="float32", seed=3)
    net.save(tmp_path / "net.json", format="nielsen")
    data = json.loads((tmp_path / "net.json").read_text())
    assert data.keys() == {"sizes", "weights", "biases", "cost"} and data["cost"] == "QuadraticCost"
    assert data["sizes"] == [6, 4, 2]
    assert np.shape(data["biases"][0]) == (4, 1)  # column vectors, as network2.py keeps them
    weights = [np.array(w) for w in data["weights"]]
    biases = [np.array(b) for b in data["biases"]]
    X = np.random.default_rng(2).normal(size=(5, 6))
    expected = np.array([network2_feedforward(weights, biases, x) for x in X])
    np.testing.assert_allclose(net.predict(X.astype(np.float32)), expected, rtol=1e-5)
    loaded = dp.load(tmp_path / "net.json")
    np.testing.assert_array_equal(loaded.params, net.params.astype(np.float64))
    dp.save(net, tmp_path / "again.json", format="nielsen")
    assert (tmp_path / "again.json").read_bytes() == (tmp_path / "net.json").read_bytes()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (dict(activation="relu"), "activation is 'relu'"),
        (dict(output="softmax", cost="log_likelihood"), "output is 'softmax'"),
        (dict(output="identity"), "output is 'identity'"),
    ],
)
def test_a_network_network2_cannot_hold_is_refused_by_name(tmp_path, options, named):
    net = dp.Network([3, 4, 2], **options)
    with pytest.raises(ValueError, match=named):
        net.save(tmp_path / "net.json", format="nielsen")
    assert not (tmp_path / "net.json").exists()


def test_a_single_layer_of_any_hidden_activation_fits(tmp_path):
    dp.Network([3, 2], activation="relu").save(tmp_path / "net.json", format="nielsen")
    assert dp.load(tmp_path / "net.json").architecture.sizes == (3, 2)


def test_an_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="format"):
        dp.Network([3, 2]).save(tmp_path / "net.json", format="network2")


def good_fields():
    return {
        "sizes": [3, 2],
        "weights": [[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]],
        "biases": [[[0.1], [0.2]]],
        "cost": "QuadraticCost",
    }


def edited(**changes):
    return {**good_fields(), **changes}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (json.dumps(edited(sizes=[3, 5])), r"weights\[1\]: expected 5 rows"),
        (json.dumps(edited(sizes=[3, 2, 2])), "a list of 2 layers"),
        (json.dumps(edited(sizes=[3, 0])), "positive ints"),
        (json.dumps(edited(sizes="3, 2")), "positive ints"),
        (json.dumps(edited(sizes=[3.0, 2])), "positive ints"),
        (json.dumps(edited(cost="LogLikelihoodCost")), "cost"),
        (json.dumps(edited(biases=[[[0.1], [0.2], [0.3]]])), r"biases\[1\]"),
        (json.dumps(edited(weights=[[[0.1, 0.2], [0.4, 0.5]]])), r"rows of 3 numbers"),
        (json.dumps(edited(weights=[[[0.1, True, 0.3], [0.4, 0.5, 0.6]]])), "finite numbers"),
        (json.dumps(edited(weights=[[[0.1, "x", 0.3], [0.4, 0.5, 0.6]]])), "finite numbers"),
        (json.dumps(edited(weights=[[[0.1, 10**400, 0.3], [0.4, 0.5, 0.6]]])), "finite"),
        (json.dumps(good_fields()).replace("0.2, 0.3", "NaN, 0.3"), "finite numbers"),
        (json.dumps(good_fields()).replace("0.2, 0.3", "1e400, 0.3"), "finite numbers"),
        (json.dumps({**good_fields(), "extra": 1}), "expected an object of"),
        (json.dumps([1, 2]), "expected an object of"),
        ("{" + '"sizes": ' + "[" * 200_000, "not a network2.py JSON file"),
        ('{"sizes": [3, 2], "weights": ' + "[" * 200_000 + "]" * 200_000 + "}", "not a"),
        ('{"sizes": [3, 2', "not a network2.py JSON file"),
    ],
)
def test_hostile_files_are_refused_naming_the_file(tmp_path, text, match):
    path = tmp_path / "net.json"
    path.write_text(text)
    with pytest.raises(dp.ModelFormatError, match=match) as caught:
        dp.load(path)
    assert str(path) in str(caught.value)


def test_a_file_over_the_limit_is_refused_before_it_is_read(tmp_path):
    network2_file(tmp_path / "net.json", [50, 40, 10])
    size = (tmp_path / "net.json").stat().st_size
    with pytest.raises(dp.ModelFormatError, match="max_bytes"):
        nielsen.read(tmp_path / "net.json", max_bytes=size - 1)
    assert nielsen.read(tmp_path / "net.json", max_bytes=size)["sizes"] == [50, 40, 10]


def test_a_huge_claim_in_sizes_costs_nothing(tmp_path):
    path = tmp_path / "net.json"
    path.write_text(json.dumps(edited(sizes=[3, 2**40])))
    with pytest.raises(dp.ModelFormatError, match="expected 1099511627776 rows"):
        dp.load(path)
