"""Training runs: `fit` and the epoch loop around the core.

`fit` checks its arguments and chooses the validation split and the optimizer; the epoch
loop handles schedules, validation, early stopping, callbacks, checkpoints and progress.
Each epoch itself runs in the core, through `Network.train_rows`.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from . import _data, io, optim, schedules
from ._checks import (
    as_real_array,
    check_callables,
    check_fraction,
    check_int,
    check_real,
)
from ._container import ModelFormatError
from ._fields import ComparedByFields

if TYPE_CHECKING:
    from . import _distributed

__all__ = ["DivergenceError", "EarlyStopping", "History", "fit", "l2_coefficient"]

# With a progress bar an epoch runs in about this many core calls, so the bar can move.
_PROGRESS_STEPS = 50
# Without one, an epoch runs in calls of about this many rows: Python sees Ctrl-C (and
# KeyboardInterrupt leaves the weights of the last batch done) between calls.
_ROWS_PER_CALL = 4096


class _Default:
    """Marks a default value of `fit`, so that it can be told from the same value given.

    L-BFGS refuses the mini-batch options a caller gives, ``batch_size=10`` (the default's
    value) included, and nothing it was not given. Its subclasses take their repr from the
    value's type, so `fit`'s signature shows ``10``, not a class.
    """


class _DefaultInt(_Default, int):
    """An int default of `fit`."""


class _DefaultFloat(_Default, float):
    """A float default of `fit`."""


class _DefaultStr(_Default, str):
    """A str default of `fit`."""


# fit's marked defaults (see _Default).
_BATCH_SIZE, _DROPOUT, _SCHEDULE = _DefaultInt(10), _DefaultFloat(0.0), _DefaultStr("constant")
_PATIENCE, _MIN_DELTA, _CHECKPOINT_EVERY = _DefaultInt(5), _DefaultFloat(0.0), _DefaultInt(1)


def _given(value: Any) -> bool:
    """Whether a `fit` argument was given (its default is marked `_Default`)."""
    return not isinstance(value, _Default)


def l2_coefficient(
    name: str,
    strength: float,
    *,
    n_samples: int = 1,
    batch_size: int = 1,
    mean_weight: float = 1.0,
) -> float:
    """Return the coefficient c of the L2 term ``c w`` added to the weights' gradient.

    The strength has a name, and a meaning, in each of three conventions:

    ================ ============================== ================================
    name             where                          c
    ================ ============================== ================================
    ``lmbda``        `Network.fit` (Nielsen)        lmbda / n_samples
    ``alpha``        scikit-learn's MLP             alpha / (batch_size mean_weight)
    ``weight_decay`` `deltaprop.optim`, torch.optim weight_decay
    ================ ============================== ================================

    Parameters
    ----------
    name : {"lmbda", "alpha", "weight_decay"}
        The convention of ``strength``.
    strength : float
        The L2 strength under that name.
    n_samples : int, default=1
        Training samples (``"lmbda"`` only).
    batch_size : int, default=1
        Mini-batch size (``"alpha"`` only).
    mean_weight : float, default=1.0
        Mean sample weight (``"alpha"`` only); c is 0 when it is not positive.

    Returns
    -------
    float
        The coefficient c.

    Raises
    ------
    ValueError
        An unknown ``name``.
    """
    if name == "lmbda":
        return strength / n_samples
    if name == "alpha":
        return strength / (batch_size * mean_weight) if mean_weight > 0 else 0.0
    if name == "weight_decay":
        return strength
    raise ValueError(f"name: expected 'lmbda', 'alpha' or 'weight_decay', got {name!r}")


class DivergenceError(FloatingPointError):
    """Training produced a non-finite cost, gradient or parameter.

    The network keeps the parameters (and optimizer state) it had before the batch to blame;
    ``epoch`` and ``batch`` (both from 0) name that batch, and ``history`` holds the metrics
    of the epochs completed before it.

    Parameters
    ----------
    message : str
        The error message.
    epoch : int or None, default=None
        Epoch of the batch to blame; None outside an epoch (`Network.sgd_step`).
    batch : int
        Index of the batch to blame within its epoch.
    history : dict of str to list of float, or None, default=None
        The training history up to the epoch before; None outside `fit`.

    Attributes
    ----------
    epoch, batch, history
        As given.
    """

    def __init__(
        self,
        message: str,
        *,
        epoch: int | None = None,
        batch: int,
        history: dict[str, list[float]] | None = None,
    ) -> None:
        super().__init__(message)
        self.epoch, self.batch, self.history = epoch, batch, history


class History(dict):
    """What `fit` returns: the per-epoch lists of metrics, and how training ended.

    A dict of str to list of float (see `fit`), with two attributes.

    Attributes
    ----------
    stopped_epoch : int or None
        The epoch (from 0) after which early stopping or a callback ended training before
        its ``epochs``; None when it ran them all.
    restored_epoch : int or None
        The epoch (from 0) whose parameters early stopping gave back to the network at the
        end (``restore_best_weights``); None when the network has those of its last epoch.
    """

    stopped_epoch: int | None = None
    restored_epoch: int | None = None


class EarlyStopping(ComparedByFields):
    """Stop when a metric of the history has not improved for ``patience`` epochs.

    Parameters
    ----------
    patience : int or math.inf, default=5
        Epochs without improvement after which training stops.
    min_delta : float, default=0.0
        How much the metric must improve to count.
    restore_best : bool, default=True
        Give the network back the parameters of the best epoch when training ends.
    monitor : str, default="val_cost"
        The history's key to watch.
    mode : {"min", "max"}, default="min"
        Whether lower or higher values are better.
    running_best : bool, default=False
        False (Keras's rule): the best value moves only on an improvement by more than
        ``min_delta``. True (scikit-learn MLP's rule): the best value is the best seen so
        far, and an improvement by at least ``min_delta`` (ties included) counts.
    best_cost : float, default=inf
        State: the best value so far, negated for mode "max" (see `best`).
    best_params : ndarray or None, default=None
        State: a copy of the parameters of the best epoch, kept with ``restore_best``.
    epochs_without_improvement : int, default=0
        State: epochs since the last improvement.
    stopped_epoch : int or None, default=None
        State: the epoch (from 0) after which it stopped training; None if it has not.
    best_epoch : int or None, default=None
        State: the epoch (from 0) of the best value; None before any.

    Raises
    ------
    TypeError, ValueError
        An invalid ``patience``, ``min_delta`` or ``mode``.

    Notes
    -----
    Compared (``==``) and shown (``repr``) by its fields, as a dataclass would be
    (`ComparedByFields`), without loading `dataclasses`.
    """

    _FIELDS = (
        "patience",
        "min_delta",
        "restore_best",
        "monitor",
        "mode",
        "running_best",
        "best_cost",
        "best_params",
        "epochs_without_improvement",
        "stopped_epoch",
        "best_epoch",
    )

    def __init__(
        self,
        patience: float = 5,
        min_delta: float = 0.0,
        restore_best: bool = True,
        monitor: str = "val_cost",
        mode: str = "min",
        running_best: bool = False,
        best_cost: float = math.inf,  # the best value, negated for mode "max"
        best_params: np.ndarray | None = None,
        epochs_without_improvement: int = 0,
        stopped_epoch: int | None = None,
        best_epoch: int | None = None,
    ) -> None:
        self.patience = patience if patience == math.inf else check_int(patience, "patience", 1)
        self.min_delta = check_real(min_delta, "min_delta", 0.0)
        if mode not in ("min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
        self.restore_best, self.monitor, self.mode = restore_best, monitor, mode
        self.running_best, self.best_cost, self.best_params = running_best, best_cost, best_params
        self.epochs_without_improvement = epochs_without_improvement
        self.stopped_epoch, self.best_epoch = stopped_epoch, best_epoch

    @property
    def best(self) -> float:
        """The best value of the monitored metric so far (inf or -inf before any)."""
        return self.best_cost if self.mode == "min" else -self.best_cost

    def should_stop(self, epoch: int, params: np.ndarray, metrics: dict[str, float]) -> bool:
        """Take an epoch's metrics and tell whether training should stop.

        Parameters
        ----------
        epoch : int
            The epoch, from 0.
        params : ndarray
            The network's parameters after the epoch; copied when they are the best and
            ``restore_best`` is set.
        metrics : dict of str to float
            The epoch's metrics; ``monitor`` must be among them.

        Returns
        -------
        bool
            True once ``patience`` epochs in a row have not improved the metric.

        Raises
        ------
        KeyError
            ``metrics`` has no ``monitor``.
        """
        value = metrics[self.monitor] if self.mode == "min" else -metrics[self.monitor]
        if self.running_best:
            improved = value <= self.best_cost - self.min_delta  # False for NaN
            better = value < self.best_cost
        else:
            improved = better = value < self.best_cost - self.min_delta
        if better:
            self.best_cost, self.best_epoch = value, epoch
            if self.restore_best:
                self.best_params = params.copy()
        self.epochs_without_improvement = 0 if improved else self.epochs_without_improvement + 1
        if self.epochs_without_improvement >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def restore(self, params: np.ndarray) -> bool:
        """Put the best epoch's parameters back, if kept.

        Parameters
        ----------
        params : ndarray
            The network's parameters, overwritten in place.

        Returns
        -------
        bool
            Whether they were put back (``best_epoch`` says whose they are).
        """
        if self.restore_best and self.best_params is not None:
            params[...] = self.best_params
            return True
        return False

    def state(self) -> dict[str, Any]:
        """Return what a checkpoint keeps of the state (the best parameters go beside it).

        Returns
        -------
        dict
            JSON-able: ``best_cost`` (None while infinite), ``best_epoch`` and
            ``epochs_without_improvement``.
        """
        best = None if math.isinf(self.best_cost) else self.best_cost
        return {
            "best_cost": best,
            "best_epoch": self.best_epoch,
            "epochs_without_improvement": self.epochs_without_improvement,
        }

    def set_state(self, state: dict[str, Any], best_params: np.ndarray | None) -> None:
        """Continue from a checkpoint's `state`.

        Parameters
        ----------
        state : dict
            What `state` returned.
        best_params : ndarray or None
            The best parameters saved beside it.

        Raises
        ------
        KeyError, TypeError, ValueError
            ``state`` is malformed.
        """
        self.best_cost = math.inf if state["best_cost"] is None else float(state["best_cost"])
        self.epochs_without_improvement = int(state["epochs_without_improvement"])
        best_epoch = state.get("best_epoch")  # absent from checkpoints of version 0.1.0
        self.best_epoch = None if best_epoch is None else int(best_epoch)
        self.best_params = best_params


def fit(
    net,
    X: Any,
    Y: Any,
    *,
    sample_weight: Any = None,
    epochs: int = 30,
    batch_size: int | None = _BATCH_SIZE,
    optimizer: str | optim.Optimizer | None = None,
    lr: float | None = None,
    momentum: float | None = None,
    lmbda: float = 0.0,
    l1: float = 0.0,
    dropout: float = _DROPOUT,
    schedule: Any = _SCHEDULE,
    validation_data: tuple[Any, Any] | None = None,
    validation_fraction: float = 0.0,
    early_stopping: bool | EarlyStopping = False,
    patience: int = _PATIENCE,
    min_delta: float = _MIN_DELTA,
    restore_best_weights: bool = True,
    callbacks: Sequence[Callable[[int, dict[str, float]], Any]] = (),
    metrics: dict[str, Callable[[Any, dict[str, float]], float]] | None = None,
    train_accuracy: bool = False,
    shuffle: bool = True,
    seed: int | None = 0,
    verbose: bool = False,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = _CHECKPOINT_EVERY,
    resume: bool = False,
    max_fun: int = 15000,
    tol: float = 1e-4,
    comm: Any = None,
    sharded: bool = False,
) -> dict[str, list[float]]:
    """Train by mini-batch gradient descent, in place.

    Each epoch runs in the core: the rows are visited in a permutation drawn from
    ``np.random.default_rng(seed)`` (``shuffle=False``: in order), in mini-batches of
    ``batch_size`` (the last may be smaller), each followed by an optimizer update.
    X and Y are checked and converted to the network's dtype and C order once per call.

    Parameters
    ----------
    net : Network
        The network to train (``self`` when called as ``net.fit``).
    X : array_like of shape (n_samples, n_0)
        Inputs.
    Y : array_like of shape (n_samples,) or (n_samples, n_L)
        Class indices or targets; with one output unit a 1-D Y holds the targets.
    sample_weight : array_like of shape (n_samples,), float or None, default=None
        Non-negative weights, at least one positive (a scalar weighs every sample alike):
        each batch minimises sum_i w_i C_i / sum_i w_i. None: every sample weighs 1.
    epochs : int, default=30
        Number of passes over the data (0 trains nothing).
    batch_size : int or None, default=10
        Rows per mini-batch; None, or more than the data, means the whole data (full-batch
        training, as for Rprop).
    optimizer : {"sgd", "momentum", "nesterov", "adam", "adamw", "rprop"}, Optimizer or None, \
default=None
        A name makes a new optimizer (with ``lr`` and ``momentum``); an `optim.Optimizer`
        is used with its state; None continues with the network's optimizer
        (`Network.optimizer`, e.g. after `load`), or plain SGD if it has none.
    lr : float or None, default=None
        Learning rate, > 0; it replaces the rate of the optimizer, whichever it is. None
        keeps the optimizer's (for a new one its default: SGD 0.1, momentum and Nesterov
        0.01, Adam and AdamW 1e-3, Rprop's initial step 0.01).
    momentum : float or None, default=None
        Momentum of a new "momentum" or "nesterov" optimizer, in [0, 1); None: 0.9.
        Ignored when ``optimizer`` is not such a name.
    lmbda : float, default=0.0
        L2 regularisation of the weights (not the biases), Nielsen's form: the gradient
        gains (lmbda/n) w, n = number of training samples. With plain SGD this is
        network2.py's w <- (1 - lr*lmbda/n) w - lr dC/dw.
    l1 : float, default=0.0
        L1 regularisation of the weights (not the biases), in the same form: the gradient
        gains (l1/n) sign(w).
    dropout : float, default=0.0
        Rate of inverted dropout on the hidden layers during training, in [0, 1).
    schedule : {"constant", "step", "adaptive"}, Schedule or callable, default="constant"
        The learning rate of each epoch: a name (see `schedules.get`), a
        `schedules.Schedule`, or a function ``f(epoch) -> lr``.
    validation_data : tuple (X_val, Y_val) or None, default=None
        Data whose cost (and accuracy) is recorded after each epoch; checked as X and Y.
    validation_fraction : float, default=0.0
        Without ``validation_data``: hold out this fraction of (X, Y), in [0, 1), chosen
        by ``seed``, as validation data. 0 holds out nothing.
    early_stopping : bool or EarlyStopping, default=False
        True: stop after ``patience`` epochs whose validation cost does not fall by more
        than ``min_delta`` below the best so far; at the end of training the network gets
        the parameters of the best epoch back (``restore_best_weights``). Without
        validation data it holds out ``validation_fraction``, or else 10%. An
        `EarlyStopping` object monitors any metric, and keeps its state between calls;
        ``patience``, ``min_delta`` and ``restore_best_weights`` then do not apply.
    patience : int, default=5
        Epochs without improvement after which ``early_stopping`` stops, >= 1.
    min_delta : float, default=0.0
        Improvement of the validation cost that counts for ``early_stopping``, >= 0.
    restore_best_weights : bool, default=True
        With ``early_stopping``, end with the parameters of the best epoch rather than
        those of the last one.
    callbacks : callable or sequence of callable, default=()
        Functions ``f(epoch, metrics) -> bool`` called after each epoch (counted from 0)
        with that epoch's metrics (the last value of each list of the history); a true
        result stops training after that epoch.
    metrics : dict of str to callable, or None, default=None
        More metrics to record after each epoch, in the history and for callbacks and
        early stopping: ``f(net, metrics) -> float``, where ``metrics`` holds the epoch's
        built-in metrics (cost, accuracy, val_cost, val_accuracy, lr, time) and those of
        the metrics before it in the dict. Their names must differ from those of the
        built-in metrics the run records (``"lr"`` and ``"time"`` included). With ``comm``
        every rank records rank 0's value of each (a metric of rank-local data included),
        so that early stopping stops and restores the same epoch on every rank.
    train_accuracy : bool, default=False
        Also record the training accuracy (one more pass over the data each epoch).
    shuffle : bool, default=True
        Visit the rows in a new random order each epoch.
    seed : int or None, default=0
        Seed of the row orders, the validation split and the dropout masks; None draws
        fresh entropy.
    verbose : bool, default=False
        Print one line per epoch, with a progress bar on a terminal.
    checkpoint : str, os.PathLike or None, default=None
        Save a training checkpoint there (atomically) every ``checkpoint_every`` epochs,
        after the last and when training stops early: the model, its optimizer, the
        random state and the history. With ``comm``, rank 0 writes it, and every rank
        gives a checkpoint (its path may differ between ranks) or none: a checkpoint on
        some ranks only is refused on every rank.
    checkpoint_every : int, default=1
        Epochs between checkpoints, >= 1.
    resume : bool, default=False
        If ``checkpoint`` exists, continue from it (it must come from the same network
        and data): a run killed and resumed with the same arguments ends with the same
        weights as one that was never interrupted. With ``comm``, rank 0's checkpoint
        is read and broadcast to every rank (the other ranks' files are not read).
    max_fun : int, default=15000
        With ``optimizer="lbfgs"``: at most this many evaluations of the objective
        (scikit-learn's ``max_fun``); ``epochs`` is then the most iterations.
    tol : float, default=1e-4
        With ``optimizer="lbfgs"``: stop when the largest gradient component falls to
        ``tol`` (scipy's ``gtol``, as scikit-learn passes it).
    comm : mpi4py.MPI.Intracomm or None, default=None
        Data-parallel training over MPI: every rank of ``comm`` calls `fit` with the same
        arguments, trains its share of every mini-batch, and the gradients are summed over
        the ranks once per batch; ``batch_size`` is the global batch. Rank 0's parameters
        and optimizer state are the starting point of all; every rank ends with the same
        parameters. See the README's "Distributed training" for the semantics.
    sharded : bool, default=False
        With ``comm``: each rank passes only its own rows (shards of any sizes, none
        too), instead of every rank the same full data.

    Returns
    -------
    history : History
        A dict of per-epoch lists: ``"cost"`` (mean cost of the batches during the epoch),
        ``"accuracy"`` (with ``train_accuracy``), ``"val_cost"`` and ``"val_accuracy"``
        (with validation data; no ``"val_accuracy"`` for an identity output), those of
        ``metrics``, ``"lr"`` and ``"time"`` (seconds). The same lists are in
        ``net.history``, also after an interruption: Ctrl-C or an exception from a
        callback leaves the weights of the last batch done and the metrics of the
        completed epochs. ``history.stopped_epoch`` is the epoch (from 0) after which early
        stopping or a callback ended training (None if it ran every epoch), and
        ``history.restored_epoch`` the epoch whose parameters early stopping restored (None
        if none were); with ``verbose`` a last line says the same.

    Raises
    ------
    TypeError, ValueError
        Invalid data or options; the network is left as it was. NaN or infinity in X is
        found in the first epoch's forward pass (in one process), whose training is undone.
    ModelFormatError
        With ``resume``: the checkpoint is damaged or is a model file.
    DivergenceError
        A non-finite cost, gradient or parameter; the network keeps the parameters of
        before the batch to blame.
    RuntimeError
        The network is being trained in another thread.
    OSError
        A checkpoint cannot be written.
    ImportError
        ``optimizer="lbfgs"`` without scipy installed.

    Notes
    -----
    ``optimizer="lbfgs"`` minimises `Network.objective` over all rows with scipy's
    L-BFGS-B (``scipy.optimize.minimize(method="L-BFGS-B", jac=True)``, as scikit-learn's
    MLP does): one history entry per iteration, callbacks may stop it, and it ends with
    the parameters of the best iteration (also after Ctrl-C or a divergence). Mini-batch
    options (``batch_size``, ``dropout``, ``schedule``, ``lr``, ``momentum``, early
    stopping, checkpoints) do not apply and are refused.
    """
    if isinstance(optimizer, str) and optimizer == "lbfgs":
        return _fit_lbfgs(
            net,
            X,
            Y,
            sample_weight=sample_weight,
            max_iter=epochs,
            max_fun=max_fun,
            tol=tol,
            lmbda=lmbda,
            l1=l1,
            validation_data=validation_data,
            validation_fraction=validation_fraction,
            callbacks=callbacks,
            metrics=metrics,
            train_accuracy=train_accuracy,
            seed=seed,
            verbose=verbose,
            group=_group(comm, sharded),
            # Given, whatever their value (None for batch_size: every row, as L-BFGS takes).
            refused={
                "batch_size": _given(batch_size) and batch_size is not None,
                "lr": lr is not None,
                "momentum": momentum is not None,
                "dropout": _given(dropout),
                "schedule": _given(schedule),
                "early_stopping": bool(early_stopping),
                "patience": _given(patience),
                "min_delta": _given(min_delta),
                "checkpoint": checkpoint is not None,
                "checkpoint_every": _given(checkpoint_every),
                "resume": bool(resume),
            },
        )
    _warn_if_launched_without_comm(comm)
    group = _group(comm, sharded)
    seed = group.broadcast_seed(seed)
    # Every rank checks its own arguments and data; with comm, all raise the first
    # failing rank's error before anything is trained. One process checks X for NaN and
    # infinity during the first epoch instead (see _FirstEpochChecksX).
    inputs_unchecked = group.defer_input_check(lambda: _FirstEpochChecksX(net, optimizer))
    with group.agreeing():
        X, Y, sample_weight = _checked_data(
            net, X, Y, sample_weight, group, check_finite=inputs_unchecked is None
        )
        if not np.isfinite(net.params).all():
            raise ValueError("the network's parameters contain NaN or infinity")
        stopping = _early_stopping(early_stopping, patience, min_delta, restore_best_weights)
        holds_out = stopping is not None and stopping.monitor in ("val_cost", "val_accuracy")
        train, validation = split_validation(
            net,
            (X, Y, sample_weight),
            validation_data,
            validation_fraction,
            holds_out,
            seed,
            stream=group.split_stream,
        )
        if inputs_unchecked is not None and validation is not None and validation_data is None:
            _data.require_finite(validation[0], "X")  # held out of X: never trained on
        run = TrainingRun(
            net=net,
            data=train,
            validation=validation,
            epochs=check_int(epochs, "epochs", 0),
            batch_size=_batch_size(batch_size),
            lmbda=check_real(lmbda, "lmbda", 0.0),
            l1=check_real(l1, "l1", 0.0),
            dropout=check_fraction(dropout, "dropout"),
            schedule=schedules.get(schedule),
            shuffle=bool(shuffle),
            rng=np.random.default_rng(seed),
            early_stopping=stopping,
            callbacks=check_callables(callbacks, "callbacks"),
            metrics=_check_metrics(metrics),
            train_accuracy=bool(train_accuracy),
            verbose=bool(verbose) and group.rank == 0,
            checkpoint=None if checkpoint is None else os.fspath(checkpoint),
            checkpoint_every=check_int(checkpoint_every, "checkpoint_every", 1),
            resume=bool(resume),
            group=group,
            inputs_unchecked=inputs_unchecked,
        )
        run.check_monitor()
        # Chosen last: an invalid argument leaves the network's optimizer untouched.
        run.optimizer = choose_optimizer(net, optimizer, lr, momentum)
    group.check_same("fit's arguments", run.shared_arguments())
    with net.exclusive():
        net.optimizer = run.optimizer
        return run.run()


class _FirstEpochChecksX:
    """The network as `fit` found it, until its first epoch has shown X to be finite.

    Checking X for NaN and infinity before training reads all of it, as much memory traffic
    as an epoch's gathering of the rows (7% of an epoch of 784-pixel images in batches of
    10). One process skips that pass: a non-finite input makes every z^1 of its row
    non-finite (NaN times any weight is NaN, infinity times a weight infinite or NaN), which
    the core reports as a divergence, and every row goes through the first epoch's forward
    pass. Only after a divergence is X examined; if it holds NaN or infinity, the network
    (its parameters, optimizer, history) and the optimizers fit was given return to what
    they were, and fit raises the ValueError a check before training would have.
    """

    def __init__(self, net, optimizer: Any) -> None:
        self.net, self.params = net, net.params.copy()
        self.optimizer, self.history, self.comm = net.optimizer, net.history, net.comm
        chosen = {id(o): o for o in (net.optimizer, optimizer) if isinstance(o, optim.Optimizer)}
        self.optimizers = [
            (o, o.lr, o.step, [array.copy() for array in o.state]) for o in chosen.values()
        ]

    def raise_if_not_finite(self, X: np.ndarray) -> None:
        """Raise ValueError, with everything restored, if X holds NaN or infinity."""
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


# What MPI launchers put in each process's environment: the number of processes of the
# job (MPICH and Intel MPI's hydra, Open MPI, MVAPICH), and the process's rank among them.
_LAUNCHER_SIZES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_LAUNCHER_RANKS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")
_warned_of_launcher = False


def _launched_processes(environ: Any = os.environ) -> tuple[int, int]:
    """Return the number of processes an MPI launcher started, and this one's rank.

    (1, 0) outside a launcher. Read from the environment, so that MPI is not started.
    """

    def first_int(names: tuple[str, ...], default: int) -> int:
        for name in names:
            with contextlib.suppress(KeyError, ValueError):
                return int(environ[name])
        return default

    return first_int(_LAUNCHER_SIZES, 1), first_int(_LAUNCHER_RANKS, 0)


def _warn_if_launched_without_comm(comm: Any) -> None:
    """Warn, once and on rank 0, when fit runs alone in each process of an MPI job.

    ``mpiexec -n 2 python train.py`` whose fit has no ``comm`` runs independent, identical
    trainings that each print everything: almost always a forgotten ``comm=`` (or the
    command line's ``--distributed``).
    """
    global _warned_of_launcher
    if comm is not None or _warned_of_launcher:
        return
    size, rank = _launched_processes()
    if size > 1 and rank == 0:
        _warned_of_launcher = True
        warnings.warn(
            f"fit: runs under an MPI launcher with {size} processes but without comm: each "
            "process trains alone, on its own; give comm=MPI.COMM_WORLD (deltaprop train: "
            "--distributed) for data-parallel training",
            RuntimeWarning,
            stacklevel=3,
        )


def _group(comm: Any, sharded: Any) -> _distributed.Group | _distributed.Alone:
    """Return the processes of the run: the ranks of ``comm``, or this one alone."""
    from . import _distributed  # here only: 2 ms to import, with signal and traceback

    return _distributed.group(comm, sharded)


def _checked_data(net, X: Any, Y: Any, sample_weight: Any, group, check_finite: bool = True):
    """Return X, Y and the sample weights of this rank, checked (see `Group.validate`)."""
    X, Y = group.validate(net, X, Y, check_finite)
    return X, Y, check_sample_weight(sample_weight, len(X), net.dtype, group.sharded)


def _batch_size(batch_size: Any) -> int:
    """Return the global batch size as given; 0 (None) means all rows.

    A batch larger than the data is the whole data: the run knows the rows of every rank
    when it starts (see `TrainingRun.start`).
    """
    if batch_size is None:
        return 0
    return check_int(batch_size, "batch_size", 1)


def _fit_lbfgs(
    net,
    X,
    Y,
    *,
    sample_weight,
    max_iter,
    max_fun,
    tol,
    lmbda,
    l1,
    validation_data,
    validation_fraction,
    callbacks,
    metrics,
    train_accuracy,
    seed,
    verbose,
    group,
    refused,
):
    """fit(optimizer="lbfgs"): scipy's L-BFGS-B on the full-batch objective."""
    given = [name for name, is_given in refused.items() if is_given]
    if given:
        raise ValueError(
            f"{given[0]}: does not apply to optimizer='lbfgs', which trains on all rows "
            "at once (leave it out)"
        )
    try:
        from scipy.optimize import minimize
    except ImportError as error:
        raise ImportError(
            "optimizer='lbfgs' needs scipy: pip install 'deltaprop[scipy]'"
        ) from error
    seed = group.broadcast_seed(seed)
    with group.agreeing():
        X, Y, sample_weight = _checked_data(net, X, Y, sample_weight, group)
        train, validation = split_validation(
            net,
            (X, Y, sample_weight),
            validation_data,
            validation_fraction,
            False,
            seed,
            stream=group.split_stream,
        )
        X, Y, sample_weight = train
        max_iter, max_fun = check_int(max_iter, "epochs", 0), check_int(max_fun, "max_fun", 1)
        tol, lmbda, l1 = (
            check_real(v, name, 0.0) for v, name in ((tol, "tol"), (lmbda, "lmbda"), (l1, "l1"))
        )
        run = TrainingRun(
            net=net,
            data=train,
            validation=validation,
            epochs=max_iter,
            batch_size=0,  # no mini-batches: every row at each evaluation
            lmbda=lmbda,
            l1=l1,
            dropout=0.0,
            schedule=schedules.Constant(),
            shuffle=False,
            rng=np.random.default_rng(seed),
            early_stopping=None,
            callbacks=check_callables(callbacks, "callbacks"),
            metrics=_check_metrics(metrics),
            train_accuracy=bool(train_accuracy),
            verbose=bool(verbose) and group.rank == 0,
            group=group,
        )
        run.check_monitor()
    group.check_same("fit's arguments", {**run.shared_arguments(), "max_fun": max_fun, "tol": tol})
    with net.exclusive():
        return run.run_lbfgs(minimize, max_fun, tol)


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


def choose_optimizer(net, optimizer: Any, lr: float | None, momentum: float | None):
    """Choose the optimizer of a run and bind its state to the network.

    Parameters
    ----------
    net : Network
        The network to train.
    optimizer : str, Optimizer or None
        A name makes a new optimizer; an `optim.Optimizer` is used as it is; None takes
        the network's own, or a new plain SGD if it has none.
    lr : float or None
        Replaces the chosen optimizer's rate (also of a given or the network's
        optimizer); None keeps it.
    momentum : float or None
        Momentum of a new "momentum" or "nesterov" optimizer; None: its default.

    Returns
    -------
    Optimizer
        With state for the network's parameters.

    Raises
    ------
    TypeError, ValueError
        An unknown name, an invalid ``lr`` or ``momentum``, or optimizer state that
        belongs to another network.
    """
    if optimizer is None:
        chosen = net.optimizer if net.optimizer is not None else optim.SGD(lr)
    else:
        chosen = optim.get(optimizer, lr=lr, momentum=momentum)
    lr = None if lr is None else check_real(lr, "lr", 0.0, low_open=True)
    chosen.bind(net.params.size, net.dtype)
    if lr is not None:
        chosen.lr = lr
    return chosen


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


def _early_stopping(early_stopping, patience, min_delta, restore_best) -> EarlyStopping | None:
    patience = check_int(patience, "patience", 1)
    min_delta = check_real(min_delta, "min_delta", 0.0)
    if isinstance(early_stopping, EarlyStopping):
        return early_stopping
    return EarlyStopping(patience, min_delta, bool(restore_best)) if early_stopping else None


def _check_metrics(metrics: Any) -> dict[str, Callable]:
    if metrics is None:
        return {}
    if not isinstance(metrics, dict) or not all(
        isinstance(name, str) and callable(f) for name, f in metrics.items()
    ):
        raise TypeError(f"metrics: expected a dict of names to callables, got {metrics!r}")
    return dict(metrics)


# A plain class: no == or repr is wanted (it holds arrays), and a dataclass would make
# `import deltaprop` load `dataclasses`.
class TrainingRun:
    """Everything one call of `fit` needs, validated, and its epoch loop.

    Fields not described here are `fit`'s arguments of the same name, checked.

    Parameters
    ----------
    net : Network
        The network to train.
    data : tuple (X, Y, sample_weight or None)
        The training data, checked and in the core's layout.
    validation : tuple (X_val, Y_val) or None
        The validation data, checked.
    epochs, batch_size : int
        As for `fit`; ``batch_size`` at most the number of training samples.
    optimizer : Optimizer
        Bound to the network (see `choose_optimizer`).
    lmbda, l1, dropout : float
        As for `fit`.
    schedule : Schedule
        The learning-rate schedule.
    shuffle : bool
        As for `fit`.
    rng : numpy.random.Generator
        Source of the row orders and dropout seeds.
    early_stopping : EarlyStopping or None
        The stopping rule; None: none.
    callbacks : tuple of callable
        As for `fit`.
    metrics : dict of str to callable
        As for `fit` (empty for None).
    train_accuracy, verbose : bool
        As for `fit`.
    checkpoint : str or None, default=None
        As for `fit`.
    checkpoint_every : int, default=1
        As for `fit`.
    resume : bool, default=False
        As for `fit`.
    group : Group or Alone
        The ranks of data-parallel training (``fit``'s ``comm``), or one process alone.

    Attributes
    ----------
    history : dict of str to list of float
        Filled by `run`.
    """

    def __init__(
        self,
        *,
        net: Any,
        data: tuple[np.ndarray, np.ndarray, np.ndarray | None],  # X, Y, sample weights
        validation: tuple[np.ndarray, np.ndarray] | None,
        epochs: int,
        batch_size: int,
        lmbda: float,
        l1: float,
        dropout: float,
        schedule: schedules.Schedule,
        shuffle: bool,
        rng: np.random.Generator,
        early_stopping: EarlyStopping | None,
        callbacks: Sequence[Callable[[int, dict[str, float]], Any]],
        metrics: dict[str, Callable[[Any, dict[str, float]], float]],
        train_accuracy: bool,
        verbose: bool,
        checkpoint: str | None = None,
        checkpoint_every: int = 1,
        resume: bool = False,
        group: _distributed.Group | _distributed.Alone,
        optimizer: optim.Optimizer | None = None,  # chosen last (see fit)
        inputs_unchecked: _FirstEpochChecksX | None = None,
    ) -> None:
        self.net, self.data, self.validation = net, data, validation
        self.epochs, self.batch_size = epochs, batch_size
        self.lmbda, self.l1, self.dropout = lmbda, l1, dropout
        self.schedule, self.shuffle, self.rng = schedule, shuffle, rng
        self.early_stopping, self.callbacks, self.metrics = early_stopping, callbacks, metrics
        self.train_accuracy, self.verbose = train_accuracy, verbose
        self.checkpoint, self.checkpoint_every, self.resume = checkpoint, checkpoint_every, resume
        self.group, self.optimizer = group, optimizer
        # Until an epoch ends: X was not checked for NaN and infinity (see fit).
        self.inputs_unchecked = inputs_unchecked
        self.history: dict[str, list[float]] = {}
        # Training rows of an epoch over every rank, and the sizes of sharded data's shards.
        self.n_samples = len(data[0])

    def check_monitor(self) -> None:
        """Check that early stopping watches a metric this run records.

        Raises
        ------
        ValueError
            Early stopping monitors a metric this run does not record, or ``metrics``
            reuses the name of a built-in metric.
        """
        keys = self._history_keys()
        stopping = self.early_stopping
        if stopping is not None and stopping.monitor not in keys:
            raise ValueError(
                f"early_stopping: monitors {stopping.monitor!r}, which this run does not "
                f"record (it records {', '.join(keys)})"
            )
        clashes = set(self.metrics) & set(self._history_keys(extra=False))
        if clashes:
            raise ValueError(f"metrics: {sorted(clashes)} are built-in metrics")

    def run(self) -> dict[str, list[float]]:
        """Train every epoch (from a checkpoint, when resuming).

        Returns
        -------
        dict of str to list of float
            The history, also in the network's ``history``.

        Raises
        ------
        DivergenceError, ModelFormatError, OSError
            See `fit`.
        """
        # The network's own history grows epoch by epoch, so that an interrupted fit
        # leaves the metrics of the epochs it completed in net.history.
        self.history = self.net.history = History((key, []) for key in self._history_keys())
        self.net.comm = self.group.comm
        with self.group.aborting_on_lone_errors(), self.group.catching_interrupts():
            self.start()
            return self._run()

    def _run(self) -> dict[str, list[float]]:
        start, stopped = 0, False
        if self.resume and self.checkpoint and self._checkpoint_exists():
            with self.group.agreeing():
                record = io.read(self.checkpoint) if self._writes_files() else None
            # Rank 0's checkpoint, whatever the others' files hold.
            record = self.group.broadcast_value(record)
            with self.group.agreeing():
                start, stopped = self._resume(record)
        for epoch in range(start, self.epochs):
            if stopped:
                break
            self.optimizer.lr = float(self.schedule(epoch, self.optimizer.lr, self.history))
            started = time.perf_counter()
            cost = self._train_epoch(epoch)
            self.inputs_unchecked = None  # every row went through a forward pass
            self._record(cost, time.perf_counter() - started)
            if self.verbose:
                _print_progress(epoch, self.epochs, self.history)
            stopped = self._should_stop(epoch)
            if self.checkpoint and (
                stopped or (epoch + 1) % self.checkpoint_every == 0 or epoch + 1 == self.epochs
            ):
                with self.group.agreeing():
                    if self._writes_files():
                        self._save_checkpoint(epoch + 1, stopped)
        if self.inputs_unchecked is not None:  # no epoch was trained
            self.inputs_unchecked.raise_if_not_finite(self.data[0])
        self._end(stopped)
        return self.history

    def shared_arguments(self) -> dict[str, Any]:
        """Return what every rank of data-parallel training must agree on.

        Returns
        -------
        dict
            `arguments`, the epochs, the number of samples of replicated data, the
            network's architecture and precision, the optimizer's class and
            hyper-parameters, early stopping whole, checkpointing and resuming (whether a
            checkpoint is given: only its path may differ between ranks), and whether the
            data is sharded.
        """
        net, stopping, optimizer = self.net, self.early_stopping, self.optimizer
        architecture = net.architecture
        shared = {
            **self.arguments(),
            "epochs": self.epochs,
            "architecture": {
                **dict(zip(architecture._FIELDS, architecture._values())),
                "dtype": str(np.dtype(net.dtype)),
                "matmul_precision": getattr(net, "matmul_precision", "highest"),
            },
            "optimizer": "lbfgs"
            if optimizer is None
            else {"class": type(optimizer).__qualname__, **optimizer.hyperparameters()},
            "early_stopping": None
            if stopping is None
            else {  # its state too (an object kept between calls), but not its parameters
                name: value
                for name, value in zip(stopping._FIELDS, stopping._values())
                if name != "best_params"
            },
            "checkpoint": self.checkpoint is not None,
            "checkpoint_every": self.checkpoint_every,
            "resume": self.resume,
            "sharded": self.group.sharded,
        }
        if not self.group.sharded:
            shared["n_samples"] = self.n_samples
        return shared

    # ------------------------------------------------------- data-parallel training
    def start(self) -> None:
        """Rank 0's parameters and optimizer state to every rank; the rows of every rank.

        Replicated data: every rank evaluates metrics on its share of the rows, and the
        shares are summed. Sharded data: each rank's shard is its share. One process: its
        rows are all.
        """
        group, net = self.group, self.net
        group.broadcast([net.params])
        if self.optimizer is not None:  # L-BFGS has none
            self.optimizer.bind(net.params.size, net.dtype)
            group.broadcast(self.optimizer.state)
            self.optimizer.step = group.broadcast_value(self.optimizer.step)
        self._scale_sample_weight()
        self.n_samples = group.total_rows(len(self.data[0]))
        self.batch_size = min(self.batch_size or self.n_samples, self.n_samples)
        if self.validation is not None:
            self.validation = group.own_rows(self.validation)

    def _scale_sample_weight(self) -> None:
        """Scale the sample weights to at most 1 by their largest (over every rank).

        Only relative weights matter; scaled to at most 1, no sum of them overflows.
        """
        weights = self.data[2]
        largest = self.group.largest(-1.0 if weights is None else float(weights.max(initial=0.0)))
        if largest == 0:
            raise self.group.raised_by_all(
                ValueError("sample_weight: all the weights are zero; expected a positive sum")
            )
        if weights is not None:
            weights /= largest

    def _metric(self, metric: Callable[..., float], X: np.ndarray, Y: np.ndarray) -> float:
        """Return a mean metric over rows (of every rank), NaN if its forward pass overflows."""
        return self.group.mean(lambda *rows: _nan_on_overflow(metric, *rows), X, Y)

    def _writes_files(self) -> bool:
        """Whether this process writes checkpoints: rank 0 of data-parallel training."""
        return self.group.rank == 0

    def _checkpoint_exists(self) -> bool:
        """Whether rank 0 (the process that writes checkpoints) has one to resume from."""
        exists = self._writes_files() and os.path.exists(self.checkpoint)
        return self.group.broadcast_value(exists)

    def _end(self, stopped: bool) -> None:
        """Give the network its best epoch's parameters back; record and tell how it ended."""
        history, stopping = self.history, self.early_stopping
        epochs_done = len(history["cost"])
        if stopped and epochs_done < self.epochs:
            history.stopped_epoch = epochs_done - 1
        if stopping is not None and stopping.restore(self.net.params):
            history.restored_epoch = stopping.best_epoch
        if self.verbose and (
            history.stopped_epoch is not None or history.restored_epoch is not None
        ):
            print(_ending(history, stopping, self.epochs), flush=True)

    def run_lbfgs(self, minimize, max_fun: int, tol: float):
        """Minimise the full-batch objective with scipy's L-BFGS-B.

        One history entry per iteration; the network ends with the parameters of the best
        iteration (also after Ctrl-C, a stopping callback or a divergence). With ``group``,
        each evaluation of the objective sums every rank's rows in one reduction, and every
        rank runs the same iterations.

        Parameters
        ----------
        minimize : callable
            ``scipy.optimize.minimize``.
        max_fun : int
            Most evaluations of the objective.
        tol : float
            Gradient tolerance (scipy's ``gtol``).

        Returns
        -------
        dict of str to list of float
            The history.
        """
        net = self.net
        self.history = net.history = History(
            (key, []) for key in self._history_keys() if key != "lr"
        )
        net.comm = self.group.comm
        with self.group.aborting_on_lone_errors(), self.group.catching_interrupts():
            self.start()
            return self._run_lbfgs(minimize, max_fun, tol)

    def _run_lbfgs(self, minimize, max_fun: int, tol: float):
        net = self.net
        best = {"cost": math.inf, "params": net.params.copy()}
        started = [time.perf_counter()]

        def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
            net.params[...] = x
            try:
                cost, gradient = self._objective()
            except ValueError as error:  # the cost or its gradient overflowed
                raise self.group.raised_by_all(
                    DivergenceError(
                        f"L-BFGS diverged in iteration {len(self.history['cost'])}: {error}; the "
                        "network keeps the parameters of its best iteration",
                        epoch=len(self.history["cost"]),
                        batch=0,
                        history=self.history,
                    )
                ) from error
            return cost, gradient.astype(np.float64)

        def end_of_iteration(intermediate_result) -> None:
            net.params[...] = intermediate_result.x
            cost = float(intermediate_result.fun)
            if cost < best["cost"]:
                best["cost"], best["params"] = cost, net.params.copy()
            self._record(cost, time.perf_counter() - started[0])
            started[0] = time.perf_counter()
            if self.verbose:
                _print_progress(len(self.history["cost"]) - 1, self.epochs, self.history)
            if self._should_stop(len(self.history["cost"]) - 1):
                raise StopIteration

        try:
            if self.epochs > 0:
                minimize(
                    objective,
                    net.params.astype(np.float64),
                    jac=True,
                    method="L-BFGS-B",
                    callback=end_of_iteration,
                    # Only tol and the budgets end it: scipy's relative-decrease test
                    # (ftol) set as low as scikit-learn's LogisticRegression sets it.
                    options={
                        "maxiter": self.epochs,
                        "maxfun": max_fun,
                        "gtol": tol,
                        "ftol": 64 * np.finfo(np.float64).eps,
                    },
                )
        finally:
            net.params[...] = best["params"]
        return self.history

    def _objective(self) -> tuple[float, np.ndarray]:
        """Return the full-batch objective and its gradient, over the rows of every rank."""
        rows = self.group.own_rows(self.data)
        return self.group.objective(self.net, rows, self.lmbda, self.l1, self.n_samples)

    # ------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, epochs_done: int, stopped: bool) -> None:
        """Everything a resumed run needs to continue exactly as this one would."""
        stopping = self.early_stopping
        progress = {
            "epochs_done": epochs_done,
            "stopped": stopped,
            "n_samples": self.n_samples,
            "rng": self.rng.bit_generator.state,
            "history": self.history,
            "schedule": self.schedule.state(),
            "early_stopping": None if stopping is None else stopping.state(),
            "arguments": self.arguments(),
        }
        net = self.net
        best = None if stopping is None else stopping.best_params
        record = io.ModelRecord(net.architecture, net.params, net.optimizer, progress, best)
        io.write(self.checkpoint, record)

    def _resume(self, record: io.ModelRecord) -> tuple[int, bool]:
        """Continue from the checkpoint: parameters, optimizer, random state, history."""
        if record.training is None:
            raise ModelFormatError(f"{self.checkpoint}: a model file, not a training checkpoint")
        net, progress = self.net, record.training
        if record.architecture != net.architecture:
            raise ValueError(
                f"checkpoint: {self.checkpoint} holds {record.architecture}, not {net!r}"
            )
        self._check_same_arguments(progress.get("arguments"))
        try:
            if progress["n_samples"] != self.n_samples:
                raise ValueError(
                    f"checkpoint: {self.checkpoint} was trained on {progress['n_samples']} "
                    f"samples, not {self.n_samples}"
                )
            self.rng.bit_generator.state = progress["rng"]
            self.history.clear()
            self.history.update(progress["history"])
            self.schedule.set_state(progress["schedule"])
            if self.early_stopping is not None:
                self.early_stopping.set_state(progress["early_stopping"], record.best_params)
            epochs_done, stopped = int(progress["epochs_done"]), bool(progress["stopped"])
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, ValueError) and str(error).startswith("checkpoint:"):
                raise
            raise ModelFormatError(
                f"{self.checkpoint}: its training progress is malformed ({error!r})"
            ) from error
        net.params[...] = record.params
        net.optimizer = self.optimizer = record.optimizer or self.optimizer
        return epochs_done, stopped

    def arguments(self) -> dict[str, Any]:
        """Return the arguments a resumed run must share with the run it continues.

        Returns
        -------
        dict
            JSON-able: batch size, shuffling, dropout, regularisation, optimizer name,
            schedule, validation, training accuracy, extra metrics, early stopping.
        """
        stopping = self.early_stopping
        return {
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "dropout": self.dropout,
            "lmbda": self.lmbda,
            "l1": self.l1,
            "optimizer": "lbfgs" if self.optimizer is None else self.optimizer.name,
            "schedule": self.schedule.describe(),
            "validation_data": self.validation is not None,
            "train_accuracy": self.train_accuracy,
            "metrics": sorted(self.metrics),
            "early_stopping": None
            if stopping is None
            else [stopping.monitor, stopping.mode, stopping.patience, stopping.min_delta],
        }

    def _check_same_arguments(self, saved: Any) -> None:
        """Before anything is trained: the checkpoint's run had the same arguments."""
        if not isinstance(saved, dict):
            return  # written before checkpoints kept their arguments
        import json  # here only: json is costly to import, and resuming is rare

        now = json.loads(json.dumps(self.arguments()))  # as the file holds them
        for key, value in now.items():
            if key in saved and saved[key] != value:
                raise ValueError(
                    f"checkpoint: {self.checkpoint} was trained with {key} {saved[key]!r}, "
                    f"this run has {value!r}: resume with the arguments of that run, or "
                    "start again without resume=True"
                )

    def _history_keys(self, extra: bool = True) -> list[str]:
        keys = ["cost"]
        if self.train_accuracy:
            keys.append("accuracy")
        if self.validation is not None:
            keys.append("val_cost")
            if self.net.output != "identity":
                keys.append("val_accuracy")
        if extra:
            keys.extend(self.metrics)
        return [*keys, "lr", "time"]

    def _train_epoch(self, epoch: int) -> float:
        n = self.n_samples
        bar = _progress_bar(epoch, self.epochs, n) if self.verbose else None
        rows_per_call = self._rows_per_call(n, bar is not None)
        calls = self.group.epoch_calls(
            self.data, n, self.batch_size, rows_per_call, self.rng, self.shuffle
        )
        dropout_seed = int(self.rng.integers(2**63))
        l2 = l2_coefficient("lmbda", self.lmbda, n_samples=n)
        l1 = self.l1 / n  # Nielsen's form, as for L2
        total_cost = total_weight = 0.0
        try:
            for rows, arguments in calls:
                cost, weight, diverged = self.net.train_rows(
                    **arguments,
                    batch_size=self.batch_size,
                    l2=l2,
                    l1=l1,
                    dropout=self.dropout,
                    seed=dropout_seed,
                )
                if diverged is not None:
                    if self.inputs_unchecked is not None:
                        self.inputs_unchecked.raise_if_not_finite(self.data[0])
                    raise self.group.raised_by_all(
                        DivergenceError(
                            f"training diverged in epoch {epoch}, batch {diverged}: a non-finite "
                            "cost, gradient or parameter; the network keeps the weights it had "
                            "before that batch",
                            epoch=epoch,
                            batch=diverged,
                            history=self.history,
                        )
                    )
                self.group.raise_if_interrupted(self.group.stop_seen)
                total_cost, total_weight = total_cost + cost * weight, total_weight + weight
                if bar is not None:
                    bar.update(rows)
                    running = total_cost / total_weight if total_weight else 0.0
                    bar.set_postfix(cost=f"{running:.4f}", refresh=False)
            if bar is not None:
                bar.refresh()  # tqdm skips redraws within 0.1 s: show the epoch's end
        finally:
            if bar is not None:
                bar.close()
        return total_cost / total_weight if total_weight else 0.0

    def _rows_per_call(self, n: int, progress: bool) -> int:
        """Return the rows per core call, in whole batches.

        About _ROWS_PER_CALL rows, or 1/50 of the epoch when a progress bar shows.
        """
        n_batches = -(-n // self.batch_size)
        if progress:
            batches = max(1, n_batches // _PROGRESS_STEPS)
        else:
            batches = max(1, _ROWS_PER_CALL // self.batch_size)
        return batches * self.batch_size

    def _record(self, cost: float, seconds: float) -> None:
        net = self.net
        current = {"cost": cost}
        if self.train_accuracy:
            current["accuracy"] = self._metric(net.evaluate, *self.group.own_rows(self.data)[:2])
        if self.validation is not None:
            X_val, Y_val = self.validation
            current["val_cost"] = self._metric(net.cost, X_val, Y_val)
            if "val_accuracy" in self.history:
                current["val_accuracy"] = self._metric(net.evaluate, X_val, Y_val)
        if self.optimizer is not None:  # L-BFGS has no learning rate
            current["lr"] = self.optimizer.lr
        current["time"] = seconds
        for name, metric in self.metrics.items():  # each sees the epoch's metrics so far
            value = float(_nan_on_overflow(metric, net, dict(current)))
            # A metric may see rank-local data: every rank takes rank 0's, so that early
            # stopping stops, and restores, the same epoch everywhere.
            current[name] = self.group.broadcast_value(value)
        for key, values in self.history.items():
            values.append(current[key])

    def _should_stop(self, epoch: int) -> bool:
        """Ask the callbacks and early stopping; with comm, agree with every rank."""
        stop, error = False, None
        try:
            stop = self._asked_to_stop(epoch)
        except Exception as raised:  # raised on every rank by check_stop
            error = raised
        return self.group.check_stop(stop, error)

    def _asked_to_stop(self, epoch: int) -> bool:
        metrics = {key: values[-1] for key, values in self.history.items()}
        stop = False
        for callback in self.callbacks:
            stop = bool(callback(epoch, metrics)) or stop
        if self.early_stopping is not None:
            stop = self.early_stopping.should_stop(epoch, self.net.params, metrics) or stop
        return stop


def _nan_on_overflow(metric: Callable[..., float], *args: Any) -> float:
    """Compute a metric of data checked already; NaN if its forward pass overflows.

    Its only possible ValueError is a forward pass that overflows (weights grown too large
    for these inputs). The epoch's metric is then NaN, which no early stopping counts as an
    improvement; training itself stops with a DivergenceError at the first batch whose
    forward pass overflows.
    """
    try:
        return metric(*args)
    except ValueError:
        return math.nan


def _progress_bar(epoch: int, epochs: int, n: int):
    """Return a tqdm bar on a terminal; None elsewhere, so logs get one line per epoch."""
    from tqdm.auto import tqdm

    bar = tqdm(
        total=n,
        desc=f"epoch {epoch + 1}/{epochs}",
        unit=" samples",
        leave=False,
        disable=None,
        file=sys.stderr,
    )
    if bar.disable:
        bar.close()
        return None
    return bar


def _ending(history: History, stopping: EarlyStopping | None, epochs: int) -> str:
    """Say, in the per-epoch lines' numbering (from 1), how a run ended."""
    parts = []
    if history.stopped_epoch is not None:
        done = history.stopped_epoch + 1
        if stopping is not None and stopping.stopped_epoch == history.stopped_epoch:
            parts.append(
                f"early stopping after epoch {done}/{epochs}: {stopping.monitor} has not "
                f"improved for {stopping.epochs_without_improvement} epochs"
            )
        else:
            parts.append(f"a callback stopped training after epoch {done}/{epochs}")
    if history.restored_epoch is not None:
        parts.append(
            f"restored the weights of epoch {history.restored_epoch + 1} "
            f"({stopping.monitor} {stopping.best:.4f})"
        )
    return "; ".join(parts)


def _print_progress(epoch: int, epochs: int, history: dict[str, list[float]]) -> None:
    parts = [f"epoch {epoch + 1}/{epochs}"]
    for key in ("cost", "accuracy", "val_cost", "val_accuracy"):
        if key in history:
            parts.append(f"{key} {history[key][-1]:.4f}")
    if "lr" in history:
        parts.append(f"lr {history['lr'][-1]:.3g}")
    parts.append(f"{history['time'][-1]:.2f} s")
    print("  ".join(parts), flush=True)
