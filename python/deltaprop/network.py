"""The `Network` class: the only caller of the compiled core.

Parameters live in one flat array, layer after layer: W^l (row-major,
shape (n_l, n_{l-1})) then b^l (shape (n_l,)), for l = 1..L. `Network.weights`
and `Network.biases` are views into it. Inputs are checked and converted
(dtype, C order, alignment) once per call here; the core then takes them as is.
"""

from __future__ import annotations

import contextlib
import numbers
import operator
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _core, optim, schedules
from .training import DivergenceError, EarlyStopping, TrainingRun

__all__ = ["ACTIVATIONS", "COSTS", "INITS", "OUTPUTS", "Network"]

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")
OUTPUTS = ("sigmoid", "softmax", "identity")
COSTS = ("quadratic", "cross_entropy", "log_likelihood")
INITS = ("normal_scaled", "normal", "glorot", "he")

_MAX_UNITS = 2**31 - 1  # BLAS's 32-bit integer
_CORE_CLASSES = {np.dtype(np.float32): _core.Mlp32, np.dtype(np.float64): _core.Mlp64}
# Costs that take the log of the targets' probabilities: targets must lie in [0, 1].
_PROBABILITY_COSTS = ("cross_entropy", "log_likelihood")


def _float_dtype(dtype: Any) -> np.dtype:
    try:
        resolved = np.dtype(dtype) if dtype is not None else None
    except TypeError:
        resolved = None
    if resolved not in _CORE_CLASSES:
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    return resolved


def _check_name(value: Any, allowed: Sequence[str], argument: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{argument}: expected one of {', '.join(allowed)}; got {value!r}")
    return value


def _check_int(value: Any, argument: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument}: expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{argument}: must be at least {minimum}, got {value}")
    return operator.index(value)


def _check_float(value: Any, argument: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argument}: expected a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{argument}: expected a finite number {bound}, got {value}")
    return value


def _as_real_array(data: Any, argument: str) -> np.ndarray:
    if isinstance(data, np.ma.MaskedArray):
        raise TypeError(f"{argument}: masked arrays are not supported; fill or compress them")
    array = np.asarray(data)
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"{argument}: expected real numbers (bool, int or float), got dtype {array.dtype}"
        )
    return array


def _to_core_layout(
    array: np.ndarray, dtype: np.dtype, argument: str, *, check_finite: bool = True
) -> np.ndarray:
    """C-contiguous, aligned, native-order `dtype`: copies only when `array` is not already."""
    # An overflow in the cast (1e300 to float32) becomes inf and is reported below.
    with np.errstate(over="ignore", invalid="ignore"):
        converted = np.require(array, dtype=dtype, requirements=["C_CONTIGUOUS", "ALIGNED"])
    if check_finite:
        _require_finite(converted, argument)
    return converted


def _require_finite(array: np.ndarray, argument: str) -> None:
    """`array` is in the core's layout (see _to_core_layout): the core checks it on its
    BLAS threads, without the temporary arrays of np.isfinite."""
    if not _core.all_finite(array.reshape(-1)):
        raise ValueError(f"{argument}: contains NaN or infinity (in {array.dtype})")


@contextlib.contextmanager
def _inputs_blamed_for_overflow(X: np.ndarray, argument: str = "X"):
    """For core calls given an X not checked for NaN and infinity: any such entry makes
    every z of the first layer non-finite (NaN * w and inf * w are never finite), which
    the core reports. Only then is X itself examined, to say which of the two it was."""
    try:
        yield
    except ValueError:
        _require_finite(X, argument)
        raise


class Network:
    """A fully-connected feed-forward network trained by backpropagation.

    Parameters
    ----------
    sizes : sequence of int
        Units per layer, input first: ``[n_0, n_1, ..., n_L]``, each >= 1, at least two layers.
    activation : str
        Hidden-layer activation: one of `ACTIVATIONS`.
    output : str
        Output activation: ``"sigmoid"``, ``"softmax"`` or ``"identity"``.
    cost : str
        ``"quadratic"`` (1/2 ||a - y||^2, any output), ``"cross_entropy"`` (per output unit,
        sigmoid output) or ``"log_likelihood"`` (softmax output).
    dtype : {"float64", "float32"}
        Precision of the parameters and of all computation.
    init : str
        Initialiser: ``"normal_scaled"`` (W ~ N(0, 1/n_in), b ~ N(0, 1); network2.py's
        default), ``"normal"`` (both N(0, 1)), ``"glorot"`` (W ~ U(+-sqrt(6/(n_in+n_out))),
        b = 0) or ``"he"`` (W ~ N(0, 2/n_in), b = 0).
    seed : int or None
        Seed of the initialiser. Weights are drawn in float64 and then rounded, so float32
        and float64 networks with the same seed start from the same point.
    leaky_slope : float
        Slope of ``"leaky_relu"`` for z <= 0.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        activation: str = "sigmoid",
        output: str = "sigmoid",
        cost: str = "quadratic",
        dtype: Any = "float64",
        init: str = "normal_scaled",
        seed: int | None = None,
        leaky_slope: float = 0.01,
    ) -> None:
        self._build(sizes, activation, output, cost, dtype, leaky_slope)
        self._initialise(_check_name(init, INITS, "init"), np.random.default_rng(seed))

    @classmethod
    def from_params(
        cls,
        weights: Sequence[Any],
        biases: Sequence[Any],
        *,
        activation: str = "sigmoid",
        output: str = "sigmoid",
        cost: str = "quadratic",
        dtype: Any = None,
        leaky_slope: float = 0.01,
    ) -> Network:
        """Build a network from given parameters (copied).

        Parameters
        ----------
        weights : sequence of ndarray, W^l of shape (n_l, n_{l-1})
        biases : sequence of ndarray, b^l of shape (n_l,)
        dtype : {"float64", "float32"} or None
            None: float32 if every array is float32, float64 otherwise.
        """
        weights = [_as_real_array(W, f"weights[{l}]") for l, W in enumerate(weights)]
        biases = [_as_real_array(b, f"biases[{l}]") for l, b in enumerate(biases)]
        sizes = _sizes_from_params(weights, biases)
        if dtype is None:
            all_float32 = all(
                p.dtype.kind == "f" and p.dtype.itemsize == 4 for p in weights + biases
            )
            dtype = np.float32 if all_float32 else np.float64
        net = cls.__new__(cls)
        net._build(sizes, activation, output, cost, dtype, leaky_slope)
        for l, (W, b) in enumerate(zip(weights, biases)):
            net._weights[l][...] = _to_core_layout(W, net.dtype, f"weights[{l}]")
            net._biases[l][...] = _to_core_layout(b, net.dtype, f"biases[{l}]")
        return net

    def _build(self, sizes, activation, output, cost, dtype, leaky_slope) -> None:
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
            raise TypeError(f"sizes: expected a sequence of layer sizes, got {sizes!r}")
        sizes = tuple(_check_int(n, "sizes", 1) for n in sizes)
        if max(sizes, default=0) > _MAX_UNITS:
            raise ValueError(f"sizes: a layer can have at most {_MAX_UNITS} units (BLAS's int)")
        if len(sizes) < 2:
            raise ValueError(f"sizes: need an input and an output layer, got {list(sizes)}")
        _check_name(activation, ACTIVATIONS, "activation")
        _check_name(output, OUTPUTS, "output")
        _check_name(cost, COSTS, "cost")
        if (
            isinstance(leaky_slope, bool)
            or not isinstance(leaky_slope, numbers.Real)
            or not np.isfinite(float(leaky_slope))
        ):
            raise ValueError(f"leaky_slope: expected a finite number, got {leaky_slope!r}")
        self.dtype = _float_dtype(dtype)
        # The core refuses invalid pairings (e.g. log_likelihood without softmax).
        self._core = _CORE_CLASSES[self.dtype](
            list(sizes), activation, output, cost, float(leaky_slope)
        )
        self._params = np.zeros(self._core.n_params, dtype=self.dtype)
        self._weights, self._biases = self._layer_views(self._params)
        self.optimizer: optim.Optimizer | None = None
        self.history: dict[str, list[float]] = {}  # of the last fit, epoch by epoch
        self._training = threading.Lock()  # held by fit: one training run at a time

    # Pickling (copy, multiprocessing, scikit-learn's joblib): the compiled core is rebuilt
    # from the architecture; parameters, optimizer and history travel as they are.
    def __getstate__(self) -> dict[str, Any]:
        return {
            "architecture": (
                list(self.sizes),
                self.activation,
                self.output,
                self.cost_name,
                self.dtype.name,
                self.leaky_slope,
            ),
            "params": self._params.copy(),
            "optimizer": self.optimizer,
            "history": self.history,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._build(*state["architecture"])
        self._params[...] = state["params"]
        self.optimizer, self.history = state["optimizer"], state["history"]

    def _initialise(self, init: str, rng: np.random.Generator) -> None:
        for W, b in zip(self._weights, self._biases):
            n_out, n_in = W.shape
            if init == "normal_scaled":
                W[...] = rng.normal(0.0, 1.0 / np.sqrt(n_in), size=W.shape)
                b[...] = rng.normal(0.0, 1.0, size=b.shape)
            elif init == "normal":
                W[...] = rng.normal(0.0, 1.0, size=W.shape)
                b[...] = rng.normal(0.0, 1.0, size=b.shape)
            elif init == "glorot":
                limit = np.sqrt(6.0 / (n_in + n_out))
                W[...] = rng.uniform(-limit, limit, size=W.shape)
            else:  # "he"
                W[...] = rng.normal(0.0, np.sqrt(2.0 / n_in), size=W.shape)

    # ------------------------------------------------------------------ description
    @property
    def sizes(self) -> tuple[int, ...]:
        """Units per layer, input first."""
        return tuple(self._core.sizes)

    @property
    def activation(self) -> str:
        return self._core.activation

    @property
    def output(self) -> str:
        return self._core.output

    @property
    def cost_name(self) -> str:
        return self._core.cost_name

    @property
    def leaky_slope(self) -> float:
        return self._core.leaky_slope

    @property
    def weights(self) -> list[np.ndarray]:
        """W^l of shape (n_l, n_{l-1}), l = 1..L: live views (writing to them changes the net)."""
        return list(self._weights)

    @property
    def biases(self) -> list[np.ndarray]:
        """b^l of shape (n_l,), l = 1..L: live views."""
        return list(self._biases)

    @property
    def params(self) -> np.ndarray:
        """All parameters as one flat live view: W^1, b^1, W^2, b^2, ..."""
        return self._params

    def __repr__(self) -> str:
        return (
            f"Network({list(self.sizes)}, activation={self.activation!r}, "
            f"output={self.output!r}, cost={self.cost_name!r}, dtype={self.dtype.name!r})"
        )

    def save(self, path) -> None:
        """Save the network, its optimizer and that optimizer's state to one file.

        Same as ``deltaprop.save(self, path)``: the file is written atomically (a temporary
        file renamed over ``path``); `deltaprop.load` reads it back and training resumes.

        Parameters
        ----------
        path : str or os.PathLike
        """
        from .io import save  # io imports this module

        save(self, path)

    # ------------------------------------------------------------------ inputs
    def _inputs(self, X: Any, argument: str = "X", *, check_finite: bool = True) -> np.ndarray:
        X = _as_real_array(X, argument)
        n_in = self.sizes[0]
        if X.ndim != 2 or X.shape[1] != n_in:
            raise ValueError(
                f"{argument}: expected shape (n_samples, {n_in}), got {X.shape}"
                + (" (reshape a single sample to (1, n_features))" if X.ndim == 1 else "")
            )
        if X.shape[0] == 0:
            raise ValueError(f"{argument}: empty batch (0 samples)")
        return _to_core_layout(X, self.dtype, argument, check_finite=check_finite)

    def _labels(self, labels: Any, n_samples: int, argument: str) -> np.ndarray:
        labels = _as_real_array(labels, argument)
        if labels.shape != (n_samples,):
            raise ValueError(
                f"{argument}: expected class indices of shape ({n_samples},), got {labels.shape}"
            )
        if not np.isfinite(labels).all() or not (labels == np.round(labels)).all():
            raise ValueError(f"{argument}: class indices must be whole numbers")
        n_classes = max(self.sizes[-1], 2)
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(
                f"{argument}: class indices must lie in [0, {n_classes}), "
                f"got values in [{labels.min()}, {labels.max()}]"
            )
        return labels.astype(np.int64)

    def _targets(self, Y: Any, n_samples: int, argument: str = "Y") -> np.ndarray:
        """(n_samples, n_L) targets from class indices (1-D) or a target array (2-D)."""
        Y = _as_real_array(Y, argument)
        n_out = self.sizes[-1]
        if Y.ndim == 1 and n_out == 1:
            # One output unit: a 1-D Y holds the target values themselves.
            Y = Y.reshape(-1, 1)
        if Y.ndim == 1:
            labels = self._labels(Y, n_samples, argument)
            targets = np.zeros((n_samples, n_out), dtype=self.dtype)
            targets[np.arange(n_samples), labels] = 1
            return targets
        if Y.shape != (n_samples, n_out):
            raise ValueError(
                f"{argument}: expected class indices of shape ({n_samples},) or targets of "
                f"shape ({n_samples}, {n_out}), got {Y.shape}"
            )
        Y = _to_core_layout(Y, self.dtype, argument)
        if self.cost_name in _PROBABILITY_COSTS and (Y.min() < 0 or Y.max() > 1):
            raise ValueError(f"{argument}: {self.cost_name} needs targets in [0, 1]")
        return Y

    def _data(self, X: Any, Y: Any, x_name: str = "X", y_name: str = "Y"):
        X = self._inputs(X, x_name)
        return X, self._targets(Y, X.shape[0], y_name)

    # ------------------------------------------------------------------ computation
    def predict(self, X: Any) -> np.ndarray:
        """Output activations a^L.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_0)
            Converted once to the network's dtype and C order if it is not already.

        Returns
        -------
        ndarray of shape (n_samples, n_L)
        """
        X = self._inputs(X, check_finite=False)  # the core's check of z covers X
        out = np.empty((X.shape[0], self.sizes[-1]), dtype=self.dtype)
        with _inputs_blamed_for_overflow(X):
            self._core.predict(self._params, X, out)
        return out

    forward = predict

    def cost(self, X: Any, Y: Any) -> float:
        """Mean cost over the samples (no regularisation term).

        Y is class indices of shape (n_samples,) or targets of shape (n_samples, n_L);
        with a single output unit a 1-D Y holds the targets.
        """
        X, Y = self._data(X, Y)
        return self._core.cost(self._params, X, Y)

    def gradients(self, X: Any, Y: Any) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
        """Batch-averaged cost and its gradients by backpropagation.

        Returns
        -------
        cost : float
            Mean cost over the batch (no regularisation term).
        dW : list of ndarray, dC/dW^l of shape (n_l, n_{l-1})
        db : list of ndarray, dC/db^l of shape (n_l,)
        """
        X, Y = self._data(X, Y)
        grads = np.empty_like(self._params)
        cost = self._core.gradients(self._params, X, Y, grads)
        dW, db = self._layer_views(grads)
        return cost, dW, db

    def _layer_views(self, flat: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Views W^l (n_l, n_{l-1}) and b^l (n_l,) of a flat array in the parameter layout."""
        weights, biases = [], []
        offset = 0
        sizes = self._core.sizes
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            weights.append(flat[offset : offset + n_out * n_in].reshape(n_out, n_in))
            offset += n_out * n_in
            biases.append(flat[offset : offset + n_out])
            offset += n_out
        return weights, biases

    def sgd_step(self, X: Any, Y: Any, *, lr: float, lmbda: float = 0.0, n: int | None = None):
        """One in-place SGD step on the batch; returns its mean cost before the step.

        w <- (1 - lr*lmbda/n) w - lr dC/dw,  b <- b - lr dC/db; n defaults to the batch size.
        """
        X, Y = self._data(X, Y)
        sgd = optim.SGD(_check_float(lr, "lr", positive=True))
        n = X.shape[0] if n is None else _check_int(n, "n", 1)
        rule = sgd.rule(_check_float(lmbda, "lmbda") / n, 0.0)
        cost, diverged = self._core.train(
            self._params, [], sgd._step, X, Y, None, None, X.shape[0], rule
        )
        if diverged >= 0:
            raise DivergenceError("sgd_step: the cost or gradient is not finite", batch=0)
        return cost

    def _train_rows(self, data, order, start, stop, batch_size, rule, dropout, seed):
        """Train on rows start:stop of the epoch (of `order`, or of the data in storage
        order); data is (X, Y, sample_weight or None).

        Returns (mean cost, total weight, diverged batch of the epoch or None)."""
        X, Y, weights = data
        if order is None:
            rows = None
            X, Y = X[start:stop], Y[start:stop]
            weights = None if weights is None else weights[start:stop]
            weight = stop - start if weights is None else float(weights.sum())
        else:
            rows = order[start:stop]
            weight = stop - start if weights is None else float(weights[rows].sum())
        optimizer = self.optimizer
        first_batch = start // batch_size
        cost, diverged = self._core.train(
            self._params,
            optimizer.state,
            optimizer._step,
            X,
            Y,
            weights,
            rows,
            batch_size,
            rule,
            dropout,
            seed,
            first_batch,
        )
        return cost, weight, None if diverged < 0 else first_batch + diverged

    def predict_classes(self, X: Any) -> np.ndarray:
        """Predicted class of each sample: argmax(a^L), or a^L >= 0.5 with one output unit.

        Returns
        -------
        ndarray of int64, shape (n_samples,)
        """
        return self._classes(self.predict(X))

    def evaluate(self, X: Any, labels: Any) -> float:
        """Fraction of samples whose predicted class equals the label.

        The predicted class is argmax(a^L); with a single output unit it is a^L >= 0.5.
        """
        X = self._inputs(X)
        labels = self._labels(labels, X.shape[0], "labels")
        return float(np.mean(self.predict_classes(X) == labels))

    @staticmethod
    def _classes(outputs: np.ndarray) -> np.ndarray:
        if outputs.shape[1] == 1:
            return (outputs[:, 0] >= 0.5).astype(np.int64)
        return outputs.argmax(axis=1)

    def _accuracy(self, X: np.ndarray, Y: np.ndarray) -> float:
        """Accuracy against (n, n_L) targets, whose argmax (or >= 0.5) is the class."""
        outputs = np.empty_like(Y)
        self._core.predict(self._params, X, outputs)
        return float(np.mean(self._classes(outputs) == self._classes(Y)))

    def fit(
        self,
        X: Any,
        Y: Any,
        *,
        sample_weight: Any = None,
        epochs: int = 30,
        batch_size: int = 10,
        optimizer: str | optim.Optimizer | None = None,
        lr: float | None = None,
        momentum: float | None = None,
        lmbda: float = 0.0,
        l1: float = 0.0,
        dropout: float = 0.0,
        schedule: Any = "constant",
        validation_data: tuple[Any, Any] | None = None,
        validation_fraction: float = 0.0,
        early_stopping: bool = False,
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best_weights: bool = True,
        callbacks: Sequence[Callable[[int, dict[str, float]], Any]] = (),
        train_accuracy: bool = False,
        shuffle: bool = True,
        seed: int | None = 0,
        verbose: bool = False,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 1,
        resume: bool = False,
    ) -> dict[str, list[float]]:
        """Train by mini-batch gradient descent, in place.

        Each epoch runs in the core: the rows are visited in a permutation drawn from
        ``np.random.default_rng(seed)`` (``shuffle=False``: in order), in mini-batches of
        ``batch_size`` (the last may be smaller), each followed by an optimizer update.
        X and Y are checked and converted to the network's dtype and C order once per call.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_0)
        Y : array_like of shape (n_samples,) (class indices) or (n_samples, n_L) (targets)
        sample_weight : array_like of shape (n_samples,), optional
            Non-negative weights: each batch minimises sum_i w_i C_i / sum_i w_i.
        optimizer : {"sgd", "momentum", "nesterov", "adam", "adamw"}, Optimizer or None
            A name makes a new optimizer (with ``lr`` and ``momentum``); an `optim.Optimizer`
            is used with its state; None continues with the network's current optimizer
            (`Network.optimizer`, e.g. after `load`), or plain SGD if it has none.
        lr : float, optional
            Learning rate; None keeps the optimizer's (SGD 0.1, momentum 0.01, Adam 1e-3).
        lmbda, l1 : float
            L2 and L1 regularisation of the weights (not the biases), Nielsen's form: the
            gradient gains (lmbda/n) w + (l1/n) sign(w), n = number of training samples.
            With plain SGD this is network2.py's w <- (1 - lr*lmbda/n) w - lr dC/dw.
        dropout : float in [0, 1)
            Rate of inverted dropout on the hidden layers during training.
        schedule : "constant", "step", "adaptive", a `schedules.Schedule` or f(epoch) -> lr
        validation_data : pair (X_val, Y_val), optional
        validation_fraction : float in [0, 1)
            Hold out this fraction of (X, Y), chosen by ``seed``, as validation data.
        early_stopping : bool
            Stop after ``patience`` epochs whose validation cost does not fall by more than
            ``min_delta``, and then restore the best weights (``restore_best_weights``).
            Without validation data it holds out ``validation_fraction`` or else 10%.
        callbacks : sequence of callables ``f(epoch, metrics) -> bool``
            Called after each epoch with that epoch's metrics; a true result stops training.
        train_accuracy : bool
            Also record the training accuracy (one more pass over the data each epoch).
        verbose : bool
            Print one line per epoch, with a progress bar on a terminal.
        checkpoint : path, optional
            Save a training checkpoint there (atomically) every ``checkpoint_every`` epochs
            and after the last: the model, its optimizer, the random state and the history.
        resume : bool
            If ``checkpoint`` exists, continue from it (it must come from the same network
            and data): a run killed and resumed with the same arguments ends with the same
            weights as one that was never interrupted.

        Returns
        -------
        history : dict of per-epoch lists
            ``"cost"`` (mean cost of the batches during the epoch), ``"accuracy"`` (with
            ``train_accuracy``), ``"val_cost"`` and ``"val_accuracy"`` (with validation data;
            no accuracy for an identity output), ``"lr"`` and ``"time"`` (seconds).
        """
        X, Y = self._data(X, Y)
        weights = self._sample_weight(sample_weight, len(X))
        if not np.isfinite(self._params).all():
            raise ValueError("the network's parameters contain NaN or infinity")
        epochs = _check_int(epochs, "epochs", 0)
        # A batch larger than the data is the whole data (and fits the core's integers).
        batch_size = min(_check_int(batch_size, "batch_size", 1), len(X))
        rng = np.random.default_rng(seed)
        stopping = EarlyStopping(
            _check_int(patience, "patience", 1),
            _check_float(min_delta, "min_delta"),
            bool(restore_best_weights),
        )
        train, validation = self._split_validation(
            (X, Y, weights), validation_data, validation_fraction, early_stopping, seed
        )
        run = TrainingRun(
            net=self,
            data=train,
            validation=validation,
            epochs=epochs,
            batch_size=batch_size,
            optimizer=self._optimizer_for(optimizer, lr, momentum),
            lmbda=_check_float(lmbda, "lmbda"),
            l1=_check_float(l1, "l1"),
            dropout=_check_fraction(dropout, "dropout"),
            schedule=schedules.get(schedule),
            shuffle=bool(shuffle),
            rng=rng,
            early_stopping=stopping if early_stopping else None,
            callbacks=_check_callbacks(callbacks),
            train_accuracy=bool(train_accuracy),
            verbose=bool(verbose),
            checkpoint=None if checkpoint is None else os.fspath(checkpoint),
            checkpoint_every=_check_int(checkpoint_every, "checkpoint_every", 1),
            resume=bool(resume),
        )
        # Two fits of one network at once would interleave their batches: refuse.
        if not self._training.acquire(blocking=False):
            raise RuntimeError("this network is already being trained (in another thread)")
        try:
            return run.run()
        finally:
            self._training.release()

    def _optimizer_for(self, optimizer, lr, momentum) -> optim.Optimizer:
        if optimizer is None:
            chosen = self.optimizer if self.optimizer is not None else optim.SGD(lr)
            if lr is not None:
                chosen.lr = _check_float(lr, "lr", positive=True)
        else:
            chosen = optim.get(optimizer, lr=lr, momentum=momentum)
            if lr is not None and isinstance(optimizer, optim.Optimizer):
                chosen.lr = _check_float(lr, "lr", positive=True)
        chosen.bind(self._core.n_params, self.dtype)
        self.optimizer = chosen
        return chosen

    def _sample_weight(self, sample_weight: Any, n_samples: int) -> np.ndarray | None:
        if sample_weight is None:
            return None
        weights = _as_real_array(sample_weight, "sample_weight")
        if weights.shape != (n_samples,):
            raise ValueError(f"sample_weight: expected shape ({n_samples},), got {weights.shape}")
        weights = _to_core_layout(weights, self.dtype, "sample_weight")
        largest = weights.max()
        if (weights < 0).any() or largest <= 0:
            raise ValueError("sample_weight: weights must be >= 0 with a positive sum")
        # Only relative weights matter; scaled to at most 1, no sum of them overflows.
        return weights / largest

    def _split_validation(self, data, validation_data, fraction, early_stopping, seed):
        """(training data, validation (X, Y) or None) from the fit arguments; data is
        (X, Y, sample_weight or None)."""
        fraction = _check_fraction(fraction, "validation_fraction")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data: expected a pair (X_val, Y_val)")
            validation = self._data(*validation_data, "validation_data[0]", "validation_data[1]")
            return data, validation
        if fraction == 0 and early_stopping:
            fraction = 0.1
        if fraction == 0:
            return data, None
        X, Y, weights = data
        n_val = round(fraction * len(X))
        if n_val < 1 or n_val >= len(X):
            raise ValueError(
                f"validation_fraction: {fraction} of {len(X)} samples leaves an empty split"
            )
        split_seed = None if seed is None else [seed, 0x5EED]
        order = np.random.default_rng(split_seed).permutation(len(X))
        val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
        train_weights = None if weights is None else weights[train]
        return (X[train], Y[train], train_weights), (X[val], Y[val])


def _check_fraction(value: Any, argument: str) -> float:
    value = _check_float(value, argument)
    if value >= 1:
        raise ValueError(f"{argument}: expected a value in [0, 1), got {value}")
    return value


def _check_callbacks(callbacks: Any) -> tuple:
    if callable(callbacks):
        callbacks = (callbacks,)
    callbacks = tuple(callbacks)
    for callback in callbacks:
        if not callable(callback):
            raise TypeError(f"callbacks: expected callables, got {callback!r}")
    return callbacks


def _sizes_from_params(weights: list[np.ndarray], biases: list[np.ndarray]) -> list[int]:
    if len(weights) == 0 or len(weights) != len(biases):
        raise ValueError(
            f"weights, biases: expected one weight matrix and one bias vector per layer, "
            f"got {len(weights)} and {len(biases)}"
        )
    sizes = [weights[0].shape[1] if weights[0].ndim == 2 else -1]
    for l, (W, b) in enumerate(zip(weights, biases)):
        if W.ndim != 2 or W.shape[1] != sizes[-1] or W.shape[0] < 1:
            raise ValueError(
                f"weights[{l}]: expected shape (n_out, {sizes[-1]}) matching the previous "
                f"layer, got {W.shape}"
            )
        if b.shape != (W.shape[0],):
            raise ValueError(f"biases[{l}]: expected shape ({W.shape[0]},), got {b.shape}")
        sizes.append(W.shape[0])
    return sizes
