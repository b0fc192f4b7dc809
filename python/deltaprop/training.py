"""Training runs: `fit`, a short story of its rooms.

`fit` checks its arguments into one `FitSettings` value (`_settings`) and its data
(`_fit_data`), then runs a `MiniBatchRun` (`_minibatch`: the epoch loop around the core,
with `_checkpoints`) or a `FullBatchRun` (`_full_batch`: L-BFGS); both record the history,
ask callbacks and early stopping (`_run`, `_stopping`) and print progress (`_progress`).
One process is a group of one (`_distributed.Alone`); with ``comm``, the ranks' `Group`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable

from . import _class_weight, _fit_data, _scaling, optim
from ._fit_data import check_sample_weight as check_sample_weight
from ._fit_data import split_validation as split_validation
from ._full_batch import FullBatchRun
from ._minibatch import MiniBatchRun
from ._settings import (
    BATCH_SIZE,
    CHECKPOINT_EVERY,
    DROPOUT,
    MIN_DELTA,
    PATIENCE,
    SCHEDULE,
    FitSettings,
    bind_optimizer,
    l2_coefficient,
)
from ._settings import choose_optimizer as choose_optimizer
from ._stopping import DivergenceError, EarlyStopping, History

if TYPE_CHECKING:
    from . import _distributed

__all__ = ["DivergenceError", "EarlyStopping", "History", "fit", "l2_coefficient"]


def fit(
    net,
    X: Any,
    Y: Any,
    *,
    sample_weight: Any = None,
    class_weight: Any = None,
    standardize: bool = False,
    epochs: int = 30,
    batch_size: int | None = BATCH_SIZE,
    optimizer: str | optim.Optimizer | None = None,
    lr: float | None = None,
    momentum: float | None = None,
    lmbda: float = 0.0,
    l1: float = 0.0,
    dropout: float = DROPOUT,
    schedule: Any = SCHEDULE,
    validation_data: tuple[Any, Any] | None = None,
    validation_fraction: float = 0.0,
    early_stopping: bool | EarlyStopping = False,
    patience: int = PATIENCE,
    min_delta: float = MIN_DELTA,
    restore_best_weights: bool = True,
    callbacks: Sequence[Callable[[int, dict[str, float]], Any]] = (),
    metrics: dict[str, Callable[[Any, dict[str, float]], float]] | None = None,
    train_accuracy: bool = False,
    diagnostics: bool = False,
    shuffle: bool = True,
    seed: int | None = 0,
    verbose: bool = False,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = CHECKPOINT_EVERY,
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
    X : array_like or scipy.sparse CSR/CSC matrix of shape (n_samples, n_0)
        Inputs (sparse X is never made dense: see the guide's "Sparse inputs").
    Y : array_like of shape (n_samples,) or (n_samples, n_L)
        Class indices or targets; with one output unit a 1-D Y holds the targets.
    sample_weight : array_like of shape (n_samples,), float or None, default=None
        Non-negative weights, at least one positive (a scalar weighs every sample alike):
        each batch minimises sum_i w_i C_i / sum_i w_i. None: every sample weighs 1.
    class_weight : None, "balanced", dict or list, default=None
        Weights of the classes, multiplied with ``sample_weight``: a training row weighs
        ``sample_weight[i] * class_weight[its class]``. The class of a row is its class
        index, or the index of its one-hot row. A dict maps class indices to weights
        (classes it leaves out weigh 1); ``"balanced"`` is scikit-learn's
        ``n_samples / (n_classes * np.bincount(y))`` over the training rows (those of
        every rank with ``sharded``; not those held out for validation), and needs
        samples of every class. 0/1 multilabel targets (rows that are not one-hot) are
        weighed per output column: ``"balanced"`` or a list with one ``"balanced"`` or
        dict ``{0: w0, 1: w1}`` per column, a row weighing the product of its columns'
        weights (scikit-learn's ``compute_sample_weight`` for several outputs). The
        validation metrics are not weighed.
    standardize : bool, default=False
        Learn each input column's mean and standard deviation from X (weighted by
        ``sample_weight``; the whole X, before any validation rows are held out, as a
        pipeline's ``StandardScaler`` would see it) and train on ``(X - mean) / std``, as
        ``sklearn.preprocessing.StandardScaler`` scales (a constant column's std is 1;
        sparse X is only divided, as with ``with_mean=False``). The scaling is kept in the
        network (`Network.input_mean`, `Network.input_scale`) and applied to the inputs of
        every later computation: `Network.predict`, `Network.evaluate`, the costs and
        gradients, ``validation_data``, later fits, model files, checkpoints and ONNX
        exports. A later ``fit(standardize=True)`` learns it again from its own X (as
        scikit-learn refits a scaler); False keeps the network's scaling, if it has one.
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
    diagnostics : bool, default=False
        Also record, each epoch and for each layer l = 1..L, how it learns:
        ``"learning_speed"`` (||∂C/∂b^l||, the mean over the epoch's batches),
        ``"update_ratio"`` (||ΔW^l|| / ||W^l|| over the epoch), ``"saturated"`` (the
        fraction of a sigmoid or tanh layer's units, over the epoch's rows, whose sigma'(z)
        fell below 1% of its maximum) and ``"dead"`` (the fraction of a ReLU layer's
        units never active in the epoch); each history entry is then a list with one
        value per layer, None where the measure does not apply. Measured in the core
        from the batches' δ and z; with ``comm``, over every rank. Not with
        ``optimizer="lbfgs"``. See the guide's "Why my deep network does not learn".
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
        parameters. See the guide's "Distributed training" for the semantics.
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
        if none were); with ``verbose`` a last line says the same. With ``diagnostics``,
        also ``"learning_speed"``, ``"update_ratio"``, ``"saturated"`` and ``"dead"``,
        lists of per-layer lists.

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
    stopping, checkpoints, ``diagnostics``) do not apply and are refused.
    """
    # fit's arguments, its data aside: the first statement, so that locals() holds them alone.
    arguments = {name: value for name, value in locals().items() if name not in FitSettings.DATA}
    _warn_if_launched_without_comm(comm)
    group = _processes(comm, sharded)
    arguments["seed"] = group.broadcast_seed(seed)
    # Every rank checks its own arguments and data; with comm, all raise the first
    # failing rank's error before anything is trained.
    with group.agreeing():
        settings = FitSettings.from_arguments(net, arguments)
        kind = FullBatchRun if settings.full_batch else MiniBatchRun
        inputs_unchecked = kind.input_check(net, settings.optimizer, group)
        data = _fit_data.check(net, (X, Y, sample_weight), group, inputs_unchecked)
    # Every rank's data is valid: learning the input scaling of sharded data sums over them.
    group.check_same("standardize", settings.standardize)
    with group.agreeing():
        scaling = _scaling.FitScaling(net, settings.standardize)
        train, validation = _fit_data.prepare(
            net, data, validation_data, settings, group, inputs_unchecked, scaling
        )
        tally = _class_weight.tally(settings.class_weight, train[1])
    tallies = group.shard_values(tally)  # after the agreement: every rank gets here
    with group.agreeing():
        train = _class_weight.weigh(settings.class_weight, train, tallies, group.sharded)
        run = kind(net, settings, train, validation, group, inputs_unchecked)
        run.check_monitor()
        # Last: an invalid argument leaves the network's optimizer untouched.
        bind_optimizer(settings, net)
        scaling.keep()
    group.check_same("fit's arguments", run.shared_arguments())
    with net.exclusive():
        return run.run()


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


def _processes(comm: Any, sharded: Any) -> _distributed.Group | _distributed.Alone:
    """Return the processes of the run: the ranks of ``comm``, or this one alone."""
    from . import _distributed  # here only: 2 ms to import, with signal and traceback

    return _distributed.group(comm, sharded)
