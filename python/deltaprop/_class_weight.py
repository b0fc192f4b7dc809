"""Class weights: fit's ``class_weight``, checked, counted over the ranks, made sample weights.

A class weight is a sample weight that depends on the target: each training row weighs
``sample_weight * class_weight[its class]``, so the costs of every run (mini-batch, L-BFGS,
MPI) need nothing new. Of class indices or one-hot rows, a row's class is its index; of
0/1 multilabel targets each output column has its classes 0 and 1, and a row weighs the
product of its columns' weights (scikit-learn's ``compute_sample_weight`` for several
outputs). ``"balanced"`` is scikit-learn's ``n_samples / (n_classes * bincount(y))`` over the
training rows of every rank: `tally` counts one rank's rows, `weigh` sums the tallies.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from . import _data
from ._checks import check_real

__all__ = ["BALANCED", "by_index", "check", "describe", "tally", "weigh"]

BALANCED = "balanced"
_EXPECTED = (
    "expected None, 'balanced', a dict of class to weight, or a list with one of 'balanced' "
    "or a dict of {0: weight, 1: weight} per output column"
)
# The tally's leading entries: rows, rows that are not one-hot, rows that are not all 0/1.
_ROWS, _NOT_ONE_HOT, _NOT_BINARY, _COUNTS = 0, 1, 2, 3


def check(class_weight: Any, n_outputs: int) -> Any:
    """Check ``class_weight`` against the network's outputs (no data needed).

    Parameters
    ----------
    class_weight : None, "balanced", dict or sequence
        As given to `fit`: a dict maps class indices in ``[0, max(n_outputs, 2))`` to
        weights; a list or tuple holds, per output column, "balanced" or a dict mapping
        0 and 1 to weights.
    n_outputs : int
        The network's output units.

    Returns
    -------
    None, "balanced", dict of int to float, or tuple of those per column
        Classes a dict leaves out weigh 1.

    Raises
    ------
    TypeError
        Not one of the forms above.
    ValueError
        An unknown string or class, a weight that is negative, NaN or infinite, or a list
        whose length is not the number of outputs.
    """
    if class_weight is None:
        return None
    if isinstance(class_weight, (list, tuple)):
        if len(class_weight) != n_outputs:
            raise ValueError(
                f"class_weight: a list weighs each output column: expected {n_outputs} "
                f"entries, got {len(class_weight)}"
            )
        return tuple(_check_one(one, 2, f"class_weight[{j}]") for j, one in enumerate(class_weight))
    return _check_one(class_weight, max(n_outputs, 2), "class_weight")


def _check_one(class_weight: Any, n_classes: int, argument: str) -> str | dict[int, float]:
    """Check "balanced" or a dict of weights of the classes 0..n_classes-1."""
    if isinstance(class_weight, str):
        if class_weight != BALANCED:
            raise ValueError(f"{argument}: {_EXPECTED}; got {class_weight!r}")
        return BALANCED
    if not isinstance(class_weight, dict):
        raise TypeError(f"{argument}: {_EXPECTED}; got {class_weight!r}")
    weights = {}
    for key, weight in class_weight.items():
        known = isinstance(key, numbers.Integral) and not isinstance(key, (bool, np.bool_))
        if not known or not 0 <= key < n_classes:
            raise ValueError(
                f"{argument}: unknown class {key!r}: expected class indices in [0, {n_classes})"
            )
        weights[int(key)] = check_real(weight, f"{argument}[{key!r}]", 0.0)
    return dict(sorted(weights.items()))


def by_index(class_weight: Any, classes: np.ndarray, multilabel: bool, incremental: bool) -> Any:
    """Return an estimator's ``class_weight`` in the network's terms: classes by index.

    Parameters
    ----------
    class_weight : None, "balanced", dict or list
        As given to the estimator: a dict maps the labels of ``y`` to weights; a list (of
        a multilabel target) holds a dict ``{0: w0, 1: w1}`` or "balanced" per column.
    classes : ndarray
        The estimator's ``classes_``, sorted.
    multilabel : bool
        Whether ``y`` is a 0/1 indicator matrix.
    incremental : bool
        Whether it is for ``partial_fit``, which refuses "balanced" (as scikit-learn's
        ``SGDClassifier`` does): the counts of one batch are not those of the data.

    Returns
    -------
    object
        What `check` takes: for a multilabel target a list per column.

    Raises
    ------
    TypeError, ValueError
        "balanced" with ``incremental``, a label not among ``classes``, a weight that is
        not a finite number >= 0, a dict for a multilabel target or a list for another.
    """
    if class_weight is None:
        return None
    balanced = isinstance(class_weight, str) and class_weight == BALANCED
    if incremental and (balanced or BALANCED in _strings(class_weight)):
        raise ValueError(
            "class_weight: 'balanced' is not supported by partial_fit, whose batches do not "
            "hold the counts of the classes: compute the weights once, e.g. with "
            "sklearn.utils.class_weight.compute_class_weight('balanced', classes=classes, "
            "y=y) on a large enough sample of y, and give them as a dict"
        )
    if multilabel:
        if isinstance(class_weight, dict):
            raise ValueError(
                "class_weight: a multilabel target is weighed per label column: give "
                "'balanced' or a list of one dict {0: weight, 1: weight} per column"
            )
        return [BALANCED] * len(classes) if balanced else class_weight
    if isinstance(class_weight, (list, tuple)):
        raise ValueError(
            "class_weight: a list weighs the columns of a multilabel target; y holds one "
            "label per sample: give a dict of label to weight"
        )
    if not isinstance(class_weight, dict):
        return class_weight  # check names what is wrong with it
    index = {label: i for i, label in enumerate(classes.tolist())}
    weights = {}
    for label, weight in class_weight.items():
        if label not in index:
            raise ValueError(
                f"class_weight: unknown class {label!r}: the classes are {classes.tolist()}"
            )
        weights[index[label]] = check_real(weight, f"class_weight[{label!r}]", 0.0)
    return weights


def _strings(class_weight: Any) -> list:
    """Return the strings a list of per-column weights holds."""
    if not isinstance(class_weight, (list, tuple)):
        return []
    return [one for one in class_weight if isinstance(one, str)]


def describe(checked: Any) -> Any:
    """Return checked class weights as JSON holds them (checkpoints, the ranks' comparison).

    Parameters
    ----------
    checked : None, "balanced", dict or tuple
        From `check`.

    Returns
    -------
    None, str or list
        A dict becomes its sorted ``[class, weight]`` pairs.
    """
    if isinstance(checked, tuple):
        return [describe(one) for one in checked]
    if isinstance(checked, dict):
        return [[key, weight] for key, weight in checked.items()]
    return checked


def tally(checked: Any, Y: np.ndarray) -> np.ndarray | None:
    """Count one rank's training rows: what "balanced" and the choice of classes need.

    Parameters
    ----------
    checked : None, "balanced", dict or tuple
        From `check`.
    Y : ndarray of shape (n_samples, n_L)
        The training targets, in the core's layout (one-hot rows for class indices).

    Returns
    -------
    ndarray of float64 or None
        The rows, those not one-hot, those not all 0/1, the rows of each class
        (``max(n_L, 2)``), and the ones of each column (n_L); summed over the ranks of
        sharded data. None without class weights.
    """
    if checked is None:
        return None
    binary = ((Y == 0) | (Y == 1)).all(axis=1)
    one_hot = binary if Y.shape[1] == 1 else binary & (Y.sum(axis=1) == 1)
    n_classes = max(Y.shape[1], 2)
    classes = np.bincount(_data.classes_of(Y[one_hot]), minlength=n_classes)
    ones = Y[binary].sum(axis=0)
    rows = [len(Y), (~one_hot).sum(), (~binary).sum()]
    return np.concatenate([rows, classes, ones]).astype(np.float64)


def weigh(checked: Any, data: tuple, tallies: list, may_all_be_zero: bool = False) -> tuple:
    """Return the training data with its sample weights multiplied by the class weights.

    Parameters
    ----------
    checked : None, "balanced", dict or tuple
        From `check`.
    data : tuple (X, Y, sample_weight or None)
        This rank's training data, in the core's layout.
    tallies : list of ndarray
        `tally` of every rank's rows (of sharded data; else this rank's alone).
    may_all_be_zero : bool, default=False
        Accept weights that are all zero (a shard: the run checks the sum over the ranks).

    Returns
    -------
    tuple (X, Y, sample_weight)
        ``data`` itself without class weights; else a new weight array of Y's dtype.

    Raises
    ------
    ValueError
        Targets that are not classes, "balanced" with a class (a column's 0 or 1) no
        training row has, or weights that are all zero.
    """
    if checked is None:
        return data
    X, Y, sample_weight = data
    total = _sum(tallies, tally(checked, Y[:0]).shape)
    per_column = _per_column(checked, total, Y.shape[1])
    if per_column is None:
        row_weights = _class_weights(checked, total, max(Y.shape[1], 2))[_data.classes_of(Y)]
    else:
        row_weights = np.ones(len(Y))
        ones = total[_COUNTS + max(Y.shape[1], 2) :]
        for j, one in enumerate(per_column):
            counts = np.array([total[_ROWS] - ones[j], ones[j]])
            weights = _weights_of(one, counts, 2, f"class_weight[{j}] (column {j})")
            row_weights *= weights[(Y[:, j] == 1).astype(np.intp)]
    if sample_weight is not None:
        row_weights = sample_weight * row_weights
    row_weights = row_weights.astype(Y.dtype)
    if not may_all_be_zero and not row_weights.any():
        raise ValueError(
            "class_weight: weighs every training sample 0 (times sample_weight); expected "
            "a positive sum"
        )
    return X, Y, row_weights


def _sum(tallies: list, shape: tuple) -> np.ndarray:
    """Sum the tallies of this rank's shape.

    A rank of another network, or without class weights, is left out: the ranks'
    comparison of their arguments then names the difference.
    """
    return np.sum([one for one in tallies if one is not None and one.shape == shape], axis=0)


def _per_column(checked: Any, total: np.ndarray, n_outputs: int) -> tuple | None:
    """Return the weights of each column for multilabel targets, None for classes."""
    if isinstance(checked, tuple):
        if total[_NOT_BINARY]:
            raise ValueError(
                "class_weight: a list weighs the 0/1 targets of each output column; Y holds "
                "other values"
            )
        return checked
    if not total[_NOT_ONE_HOT]:
        return None
    if total[_NOT_BINARY]:
        raise ValueError(
            "class_weight: needs class targets (class indices, one-hot rows, or 0/1 "
            "multilabel columns); Y holds other values"
        )
    if checked == BALANCED:
        return (BALANCED,) * n_outputs
    raise ValueError(
        "class_weight: a dict weighs the classes of class indices or one-hot rows; Y holds "
        "multilabel 0/1 targets: give a list of one dict {0: weight, 1: weight} per output "
        "column"
    )


def _class_weights(checked: Any, total: np.ndarray, n_classes: int) -> np.ndarray:
    """Return the weight of each class, from the tally of every rank."""
    counts = total[_COUNTS : _COUNTS + n_classes]
    return _weights_of(checked, counts, n_classes, "class_weight")


def _weights_of(one: Any, counts: np.ndarray, n_classes: int, argument: str) -> np.ndarray:
    """Return the weights of n_classes classes: "balanced" from their counts, or a dict's."""
    if one != BALANCED:
        weights = np.ones(n_classes)
        weights[list(one)] = list(one.values())
        return weights
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(
            f"{argument}: 'balanced' needs training samples of every class; class "
            f"{int(empty[0])} has none (of {int(counts.sum())})"
        )
    # scikit-learn's expression, so that the weights are its own to the last bit.
    return counts.sum() / (n_classes * counts)
