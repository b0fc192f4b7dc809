"""Class weights in fit: scikit-learn's sample weights of the classes, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import deltaprop as dp

compute_sample_weight = pytest.importorskip("sklearn.utils.class_weight").compute_sample_weight

FIT = {"epochs": 3, "batch_size": 8, "optimizer": "adam", "lr": 0.01, "seed": 3}


def imbalanced(n: int = 90, n_classes: int = 3):
    """Inputs and class indices, the classes in proportions 6:2:1."""
    rng = np.random.default_rng(11)
    proportions = np.array([6.0, 2.0, 1.0][:n_classes])
    y = rng.choice(n_classes, size=n, p=proportions / proportions.sum())
    return rng.normal(size=(n, 4)), y


def softmax_net(n_outputs: int = 3, dtype: str = "float64") -> dp.Network:
    return dp.Network(
        [4, 6, n_outputs], output="softmax", cost="log_likelihood", seed=2, dtype=dtype
    )


def multilabel():
    """Four 0/1 columns, each with both values, rows with none, one or several ones."""
    rng = np.random.default_rng(12)
    Y = (rng.random((80, 4)) < [0.5, 0.2, 0.1, 0.7]).astype(float)
    return rng.normal(size=(80, 4)), Y


def sigmoid_net(n_outputs: int = 4) -> dp.Network:
    return dp.Network([4, 6, n_outputs], output="sigmoid", cost="cross_entropy", seed=2)


def trained(net: dp.Network, X, Y, **arguments) -> np.ndarray:
    net.fit(X, Y, **FIT, **arguments)
    return net.params


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_balanced_is_scikit_learns_sample_weight_bit_for_bit(optimizer):
    X, y = imbalanced()
    fit = FIT if optimizer == "adam" else {"optimizer": "lbfgs", "epochs": 5}
    weighed, explicit = softmax_net(), softmax_net()
    weighed.fit(X, y, class_weight="balanced", **fit)
    explicit.fit(X, y, sample_weight=compute_sample_weight("balanced", y), **fit)
    assert np.array_equal(weighed.params, explicit.params)
    assert not np.array_equal(weighed.params, trained(softmax_net(), X, y))  # it does weigh


def test_one_hot_rows_weigh_as_their_class_indices():
    X, y = imbalanced()
    by_index = trained(softmax_net(), X, y, class_weight="balanced")
    by_row = trained(softmax_net(), X, np.eye(3)[y], class_weight="balanced")
    assert np.array_equal(by_index, by_row)


def test_a_dict_weighs_its_classes_and_the_others_weigh_one():
    X, y = imbalanced()
    weights = {0: 0.5, 2: 4.0}
    expected = trained(softmax_net(), X, y, sample_weight=compute_sample_weight(weights, y))
    assert np.array_equal(trained(softmax_net(), X, y, class_weight=weights), expected)
    numpy_keys = {np.int64(0): np.float32(0.5), 2: 4}  # numpy scalars are class indices too
    assert np.array_equal(trained(softmax_net(), X, y, class_weight=numpy_keys), expected)


@pytest.mark.parametrize("class_weight", ["balanced", {1: 3.0}], ids=["balanced", "dict"])
def test_class_weights_multiply_the_sample_weights(class_weight):
    X, y = imbalanced()
    sample_weight = np.random.default_rng(4).uniform(0.1, 2.0, len(y))
    product = sample_weight * compute_sample_weight(class_weight, y)
    expected = trained(softmax_net(), X, y, sample_weight=product)
    both = trained(softmax_net(), X, y, sample_weight=sample_weight, class_weight=class_weight)
    assert np.array_equal(both, expected)


def test_one_output_unit_has_the_classes_0_and_1():
    X, y = imbalanced(n_classes=2)
    net = dp.Network([4, 5, 1], output="sigmoid", cost="cross_entropy", seed=1)
    expected = trained(net, X, y, sample_weight=compute_sample_weight("balanced", y))
    net = dp.Network([4, 5, 1], output="sigmoid", cost="cross_entropy", seed=1)
    assert np.array_equal(trained(net, X, y, class_weight="balanced"), expected)


@pytest.mark.parametrize(
    "class_weight",
    ["balanced", ["balanced"] * 4, [{0: 1.0, 1: 3.0}, "balanced", {1: 9.0}, {}]],
    ids=["balanced", "balanced-per-column", "mixed-per-column"],
)
def test_multilabel_columns_weigh_as_scikit_learns_multi_output(class_weight):
    """A row weighs the product of its columns' weights (compute_sample_weight's rule)."""
    X, Y = multilabel()
    # scikit-learn takes a list of dicts per column; "balanced" of one column is its dict.
    columns = class_weight if isinstance(class_weight, list) else ["balanced"] * 4
    per_column = [
        dict(zip((0, 1), len(Y) / (2 * np.bincount(Y[:, j].astype(int)).astype(float))))
        if one == "balanced"
        else one
        for j, one in enumerate(columns)
    ]
    sklearn_weights = compute_sample_weight(per_column, Y)
    if class_weight == "balanced":
        np.testing.assert_array_equal(sklearn_weights, compute_sample_weight("balanced", Y))
    expected = trained(sigmoid_net(), X, Y, sample_weight=sklearn_weights)
    assert np.array_equal(trained(sigmoid_net(), X, Y, class_weight=class_weight), expected)


def test_one_hot_rows_are_classes_unless_a_list_weighs_their_columns():
    X, y = imbalanced()
    Y = np.eye(3)[y]
    as_classes = compute_sample_weight("balanced", y)
    as_columns = compute_sample_weight("balanced", Y)  # scikit-learn's multi-output rule
    assert not np.allclose(as_classes, as_columns)
    for class_weight, weights in (("balanced", as_classes), (["balanced"] * 3, as_columns)):
        expected = trained(sigmoid_net(3), X, Y, sample_weight=weights)
        assert np.array_equal(trained(sigmoid_net(3), X, Y, class_weight=class_weight), expected)


def test_balanced_counts_the_training_rows_not_those_held_out():
    X, y = imbalanced()
    split_net = softmax_net()
    (X_train, Y_train, _), validation = dp.training.split_validation(
        split_net, split_net.validate(X, y) + (None,), None, 0.25, False, FIT["seed"]
    )
    held_out = trained(softmax_net(), X, y, class_weight="balanced", validation_fraction=0.25)
    train_labels = Y_train.argmax(axis=1)
    expected = trained(
        softmax_net(),
        X_train,
        train_labels,
        sample_weight=compute_sample_weight("balanced", train_labels),
        validation_data=validation,
    )
    assert np.array_equal(held_out, expected)


@pytest.mark.parametrize(
    ("class_weight", "error", "message"),
    [
        (
            {3: 1.0},
            ValueError,
            r"class_weight: unknown class 3: expected class indices in \[0, 3\)",
        ),
        ({"a": 1.0}, ValueError, "class_weight: unknown class 'a'"),
        ({True: 1.0}, ValueError, "class_weight: unknown class True"),
        ({1: -1.0}, ValueError, r"class_weight\[1\]"),
        ({1: np.nan}, ValueError, r"class_weight\[1\]"),
        ({1: np.inf}, ValueError, r"class_weight\[1\]"),
        ({1: "2"}, TypeError, r"class_weight\[1\]: expected a real number"),
        ("balance", ValueError, "class_weight: expected None, 'balanced'"),
        (3, TypeError, "class_weight: expected None, 'balanced'"),
        (np.ones(3), TypeError, "class_weight: expected None, 'balanced'"),
        (
            ["balanced"] * 2,
            ValueError,
            "class_weight: a list weighs each output column: expected 3",
        ),
        ([{2: 1.0}, {}, {}], ValueError, r"class_weight\[0\]: unknown class 2"),
    ],
)
def test_invalid_class_weights_are_refused_by_name(class_weight, error, message):
    X, y = imbalanced()
    net = softmax_net()
    before = net.params.copy()
    with pytest.raises(error, match=message):
        net.fit(X, y, class_weight=class_weight, **FIT)
    assert np.array_equal(net.params, before) and net.optimizer is None


def test_balanced_needs_every_class_in_the_training_rows():
    X, y = imbalanced()
    with pytest.raises(ValueError, match=r"class_weight: 'balanced' needs .* class 2 has none"):
        softmax_net().fit(X[y != 2], y[y != 2], class_weight="balanced", **FIT)
    X, Y = multilabel()
    Y[:, 2] = 0
    with pytest.raises(ValueError, match=r"class_weight\[2\] \(column 2\): .* class 1 has none"):
        sigmoid_net().fit(X, Y, class_weight="balanced", **FIT)


def test_targets_that_are_not_classes_are_refused():
    X, Y = multilabel()
    with pytest.raises(ValueError, match=r"class_weight: a dict .* give a list of one dict"):
        sigmoid_net().fit(X, Y, class_weight={1: 2.0}, **FIT)
    soft = np.full((len(X), 4), 0.25)
    for class_weight in ("balanced", ["balanced"] * 4):
        with pytest.raises(ValueError, match=r"class_weight: .*Y holds other values"):
            sigmoid_net().fit(X, soft, class_weight=class_weight, **FIT)


def test_weights_that_are_all_zero_are_refused():
    X, y = imbalanced()
    with pytest.raises(ValueError, match="class_weight: weighs every training sample 0"):
        softmax_net().fit(X, y, class_weight={0: 0, 1: 0, 2: 0}, **FIT)


def test_a_checkpoint_resumes_with_the_same_class_weights(tmp_path):
    X, y = imbalanced()
    options = {"class_weight": "balanced", "checkpoint": tmp_path / "ck.npz", **FIT}
    uninterrupted = softmax_net()
    uninterrupted.fit(X, y, **{**options, "checkpoint": tmp_path / "full.npz"})
    first = softmax_net()
    first.fit(X, y, **{**options, "epochs": 2})
    resumed = softmax_net()
    resumed.fit(X, y, resume=True, **options)
    assert np.array_equal(resumed.params, uninterrupted.params)
    with pytest.raises(
        ValueError, match=r"was trained with class_weight 'balanced'.*\[\[1, 2.0\]\]"
    ):
        softmax_net().fit(X, y, resume=True, **{**options, "class_weight": {1: 2.0}})
