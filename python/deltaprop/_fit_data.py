"""fit's data: checked on each rank, the validation split, the first epoch's check of X."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import _data, _scaling, optim
from ._checks import as_real_array, check_fraction

if TYPE_CHECKING:
    from ._settings import FitSettings

__all__ = ["FirstEpochChecksX", "check", "check_sample_weight", "prepare", "split_validation"]


def check(net, data: tuple, group, inputs_unchecked) -> tuple:
    """Check this rank's training data (no collective: `fit` then agrees on the errors).

    Parameters
    ----------
    net : Network
        The network to train.
    data : tuple (X, Y, sample_weight)
        `fit`'s data, as given.
    group : Group or Alone
        The processes of the run.
    inputs_unchecked : FirstEpochChecksX or None
        Set when the first epoch checks X for NaN and infinity instead.

    Returns
    -------
    tuple (given, X, Y, sample_weight or None)
        X as given (`_scaling.array_of`), then X, Y and the weights in the core's layout.

    Raises
    ------
    TypeError, ValueError
        Invalid data, or a network whose parameters are not finite.
    """
    X, Y, sample_weight = data
    given = _scaling.array_of(X)
    X, Y = group.validate(net, given, Y, inputs_unchecked is None)
    sample_weight = check_sample_weight(sample_weight, len(X), net.dtype, group.sharded)
    if not np.isfinite(net.params).all():
        raise ValueError("the network's parameters contain NaN or infinity")
    return given, X, Y, sample_weight


def prepare(
    net,
    checked: tuple,
    validation_data: Any,
    settings: FitSettings,
    group,
    inputs_unchecked,
    scaling: _scaling.FitScaling,
) -> tuple[tuple, tuple | None]:
    """Return the training and validation data of this rank, scaled and split.

    Every rank's data has been checked (`check`): with sharded data, learning the scaling
    sums over the ranks first.

    Parameters
    ----------
    net : Network
        The network to train.
    checked : tuple (given, X, Y, sample_weight)
        What `check` returned.
    validation_data : tuple (X_val, Y_val) or None
        As given to `fit`.
    settings : FitSettings
        The run's settings (validation fraction, early stopping, seed).
    group : Group or Alone
        The processes of the run.
    inputs_unchecked : FirstEpochChecksX or None
        Set when the first epoch checks X for NaN and infinity instead.
    scaling : FitScaling
        The run's input scaling: learned here with ``standardize``, applied to X and the
        validation inputs (one scaled array each).

    Returns
    -------
    train : tuple (X, Y, sample_weight or None)
        In the core's layout, X scaled.
    validation : tuple (X_val, Y_val) or None
        X_val scaled.

    Raises
    ------
    TypeError, ValueError
        Invalid validation data or fraction, or (learning the scaling) NaN or infinity in X.
    """
    given, X, Y, sample_weight = checked
    X = scaling.training(given, X, sample_weight, group)  # before the split: rows scaled once
    validation_data = scaling.given_validation(validation_data)
    stopping = settings.early_stopping
    holds_out = stopping is not None and stopping.monitor in ("val_cost", "val_accuracy")
    train, validation = split_validation(
        net,
        (X, Y, sample_weight),
        validation_data,
        settings.validation_fraction,
        holds_out,
        settings.seed,
        stream=group.split_stream,
    )
    validation = scaling.validation(validation_data, validation)
    if inputs_unchecked is not None and validation is not None and validation_data is None:
        _data.require_finite(validation[0], "X")  # held out of X: never trained on
    return train, validation


def check_sample_weight(
    sample_weight: Any, n_samples: int, dtype: np.dtype, may_all_be_zero: bool = False
) -> np.ndarray | None:
    """Check sample weights and convert them to a new array of ``dtype``.

    Parameters
    ----------
    sample_weight : array_like of shape (n_samples,), float or None
        Non-negative weights, at least one positive; a scalar applies to every sample.
    n_samples : int
        The number of samples.
    dtype : numpy.dtype
        The network's dtype.
    may_all_be_zero : bool, default=False
        Accept weights that are all zero (a rank's shard of sharded data: the sum over
        every rank is checked when training starts).

    Returns
    -------
    ndarray of shape (n_samples,) or None
        A new array (the caller's is never touched); None for None.

    Raises
    ------
    TypeError, ValueError
        Not real numbers, a wrong shape, NaN, infinity, a negative weight or no positive one.
    """
    if sample_weight is None:
        return None
    sample_weight = as_real_array(sample_weight, "sample_weight")
    if sample_weight.ndim == 0:
        sample_weight = np.full(n_samples, sample_weight)
    if sample_weight.shape != (n_samples,):
        raise ValueError(f"sample_weight: expected shape ({n_samples},), got {sample_weight.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        sample_weight = sample_weight.astype(dtype)  # a copy: the caller's array is never touched
    if not np.isfinite(sample_weight).all():
        raise ValueError("sample_weight: contains NaN or infinity")
    if (sample_weight < 0).any():
        raise ValueError("sample_weight: expected weights >= 0")
    if not sample_weight.any() and not may_all_be_zero:
        raise ValueError("sample_weight: all the weights are zero; expected a positive sum")
    return sample_weight


def split_validation(
    net, data, validation_data, fraction, holds_out: bool, seed, stream: int | None = None
):
    """Split off the validation data of a run, from `fit`'s arguments.

    Parameters
    ----------
    net : Network
        The network to train; checks ``validation_data``.
    data : tuple (X, Y, sample_weight or None)
        The training data, checked.
    validation_data : tuple (X_val, Y_val) or None
        Validation data given to `fit`; if given, nothing is held out.
    fraction : float
        The fraction of ``data`` to hold out, in [0, 1).
    holds_out : bool
        Early stopping needs validation data: with a ``fraction`` of 0, hold out 10%.
    seed : int or None
        Seed of the split.
    stream : int or None, default=None
        Drawn into the split with the seed: each rank of sharded data splits its own rows
        its own way.

    Returns
    -------
    train : tuple (X, Y, sample_weight or None)
        The data to train on (``data`` itself when nothing is held out).
    validation : tuple (X_val, Y_val) or None
        The validation data, checked; None without.

    Raises
    ------
    TypeError, ValueError
        Invalid ``validation_data`` or ``fraction``, or a split that leaves a part empty.
    """
    fraction = check_fraction(fraction, "validation_fraction")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data: expected a pair (X_val, Y_val)")
        validation = net.validate(*validation_data, "validation_data[0]", "validation_data[1]")
        return data, validation
    if fraction == 0 and holds_out:
        fraction = 0.1
    if fraction == 0:
        return data, None
    X, Y, sample_weight = data
    n_val = round(fraction * len(X))
    if n_val < 1 or n_val >= len(X):
        raise ValueError(
            f"validation_fraction: {fraction} of {len(X)} samples leaves an empty split"
        )
    split_seed = None if seed is None else [seed, 0x5EED] + ([] if stream is None else [stream])
    order = np.random.default_rng(split_seed).permutation(len(X))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    train_sample_weight = None if sample_weight is None else sample_weight[train]
    return (X[train], Y[train], train_sample_weight), (X[val], Y[val])


class FirstEpochChecksX:
    """The network as `fit` found it, until its first epoch has shown X to be finite.

    Checking X for NaN and infinity before training reads all of it, as much memory traffic
    as an epoch's gathering of the rows (7% of an epoch of 784-pixel images in batches of
    10). One process skips that pass: a non-finite input makes every z^1 of its row
    non-finite (NaN times any weight is NaN, infinity times a weight infinite or NaN), which
    the core reports as a divergence, and every row goes through the first epoch's forward
    pass. Only after a divergence is X examined; if it holds NaN or infinity, the network
    (its parameters, optimizer, history) and the optimizers fit was given return to what
    they were, and fit raises the ValueError a check before training would have.

    Parameters
    ----------
    net : Network
        The network to train, as fit found it.
    optimizer : Optimizer or None
        The optimizer of the run, whose state is restored with the network's.
    """

    def __init__(self, net, optimizer: Any) -> None:
        self.net, self.params = net, net.params.copy()
        self.optimizer, self.history, self.comm = net.optimizer, net.history, net.comm
        chosen = {id(o): o for o in (net.optimizer, optimizer) if isinstance(o, optim.Optimizer)}
        self.optimizers = [
            (o, o.lr, o.step, [array.copy() for array in o.state]) for o in chosen.values()
        ]

    def raise_if_not_finite(self, X: np.ndarray) -> None:
        """Raise ValueError, with everything restored, if X holds NaN or infinity.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_0)
            The training inputs.

        Raises
        ------
        ValueError
            X holds NaN or infinity.
        """
        try:
            _data.require_finite(X, "X")
        except ValueError:
            self.net.params[...] = self.params
            self.net.optimizer, self.net.history, self.net.comm = (
                self.optimizer,
                self.history,
                self.comm,
            )
            for optimizer, lr, step, state in self.optimizers:
                optimizer.lr, optimizer.step, optimizer.state = lr, step, state
            raise
