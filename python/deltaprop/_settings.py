"""The settings of one `fit`: every argument but the data, checked once into one value.

`FitSettings.from_arguments` checks `fit`'s arguments (and chooses the optimizer, the
schedule and the early stopping they name) without touching the network; `bind_optimizer`
then gives the chosen optimizer its state, last, so that an invalid argument leaves the
network's optimizer as it was. The ranks of data-parallel training compare
`FitSettings.shared` once, before anything is trained.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from . import _class_weight, optim, schedules
from ._checks import check_bool, check_callables, check_fraction, check_int, check_real
from ._fields import ComparedByFields
from ._stopping import EarlyStopping

__all__ = ["FitSettings", "bind_optimizer", "choose_optimizer", "given", "l2_coefficient"]


class Default:
    """Marks a default value of `fit`, so that it can be told from the same value given.

    L-BFGS refuses the mini-batch options a caller gives, ``batch_size=10`` (the default's
    value) included, and nothing it was not given. Its subclasses take their repr from the
    value's type, so `fit`'s signature shows ``10``, not a class.
    """


class DefaultInt(Default, int):
    """An int default of `fit`."""


class DefaultFloat(Default, float):
    """A float default of `fit`."""


class DefaultStr(Default, str):
    """A str default of `fit`."""


# fit's marked defaults (see Default).
BATCH_SIZE, DROPOUT, SCHEDULE = DefaultInt(10), DefaultFloat(0.0), DefaultStr("constant")
PATIENCE, MIN_DELTA, CHECKPOINT_EVERY = DefaultInt(5), DefaultFloat(0.0), DefaultInt(1)


def given(value: Any) -> bool:
    """Return whether a `fit` argument was given (its default is marked `Default`).

    Parameters
    ----------
    value : object
        The argument.

    Returns
    -------
    bool
    """
    return not isinstance(value, Default)


# What full-batch training refuses when given: whether each argument was given.
_MINI_BATCH_ONLY: dict[str, Callable[[Any], bool]] = {
    "batch_size": lambda value: given(value) and value is not None,  # None: every row
    "lr": lambda value: value is not None,
    "momentum": lambda value: value is not None,
    "dropout": given,
    "schedule": given,
    "early_stopping": bool,
    "patience": given,
    "min_delta": given,
    "checkpoint": lambda value: value is not None,
    "checkpoint_every": given,
    "resume": bool,
    "diagnostics": lambda value: value is True,  # a wrong type is the TypeError's
}


# A plain class with frozen attributes, not a dataclass: `dataclasses` would cost
# `import deltaprop` a millisecond (see `ComparedByFields`).
class FitSettings(ComparedByFields):
    """Every argument of one `fit` call but its data, checked; frozen.

    The fields are `fit`'s parameters of the same names (`DATA` aside), checked and
    converted (``schedule`` a `schedules.Schedule`, ``early_stopping`` an `EarlyStopping`
    or None, ``optimizer`` the `optim.Optimizer` the run uses, None for L-BFGS,
    ``callbacks`` a tuple, ``metrics`` a dict, ``checkpoint`` a str or None,
    ``batch_size`` 0 for all rows), and two that describe the run: ``full_batch``
    (``optimizer="lbfgs"``) and ``architecture`` (the network's sizes, activations, cost,
    dtype and matmul precision). A later option (class weights, diagnostics) is one more
    field: a parameter of `fit`, a line in `from_arguments`, and, unless `RANK_LOCAL` or
    `FOLDED`, compared across ranks by `shared` without more code.

    Parameters
    ----------
    **fields
        One value per name of ``_FIELDS``.

    Raises
    ------
    TypeError
        A field is missing or unknown.
    """

    # fit's parameters that are its data, not settings.
    DATA = ("net", "X", "Y", "sample_weight", "validation_data")
    _FIELDS = (
        "standardize",
        "epochs",
        "batch_size",
        "optimizer",
        "lr",
        "momentum",
        "lmbda",
        "l1",
        "dropout",
        "schedule",
        "validation_fraction",
        "early_stopping",
        "patience",
        "min_delta",
        "restore_best_weights",
        "callbacks",
        "metrics",
        "train_accuracy",
        "shuffle",
        "seed",
        "verbose",
        "checkpoint",
        "checkpoint_every",
        "resume",
        "max_fun",
        "tol",
        "comm",
        "sharded",
        "class_weight",
        "diagnostics",
        "full_batch",
        "architecture",
    )
    # Fields each rank may hold its own: what it prints and calls back, its communicator.
    RANK_LOCAL = ("verbose", "callbacks", "comm")
    # Fields compared through another: the optimizer's hyper-parameters hold lr and
    # momentum, the early stopping its patience, min_delta and restore_best_weights.
    FOLDED = ("lr", "momentum", "patience", "min_delta", "restore_best_weights")

    def __init__(self, **fields: Any) -> None:
        missing = [name for name in self._FIELDS if name not in fields]
        unknown = [name for name in fields if name not in self._FIELDS]
        if missing or unknown:
            raise TypeError(f"FitSettings: missing {missing}, unknown {unknown}")
        for name in self._FIELDS:
            object.__setattr__(self, name, fields[name])

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"FitSettings is frozen: {name} cannot be set")

    @classmethod
    def from_arguments(cls, net: Any, arguments: dict[str, Any]) -> FitSettings:
        """Check `fit`'s arguments (all but its data) into settings; the network is untouched.

        Parameters
        ----------
        net : Network
            The network to train.
        arguments : dict
            `fit`'s arguments by name, without `DATA`.

        Returns
        -------
        FitSettings

        Raises
        ------
        TypeError, ValueError
            An invalid argument, or a mini-batch option given to ``optimizer="lbfgs"``.
        """
        a = arguments
        full_batch = isinstance(a["optimizer"], str) and a["optimizer"] == "lbfgs"
        if full_batch:
            _refuse_mini_batch_options(a)
        checked = dict(
            a,
            standardize=bool(a["standardize"]),
            epochs=check_int(a["epochs"], "epochs", 0),
            batch_size=_batch_size(a["batch_size"]),
            lmbda=check_real(a["lmbda"], "lmbda", 0.0),
            l1=check_real(a["l1"], "l1", 0.0),
            dropout=check_fraction(a["dropout"], "dropout"),
            schedule=schedules.get(a["schedule"]),
            validation_fraction=check_fraction(a["validation_fraction"], "validation_fraction"),
            patience=check_int(a["patience"], "patience", 1),
            min_delta=check_real(a["min_delta"], "min_delta", 0.0),
            restore_best_weights=bool(a["restore_best_weights"]),
            callbacks=check_callables(a["callbacks"], "callbacks"),
            metrics=_checked_metrics(a["metrics"]),
            train_accuracy=bool(a["train_accuracy"]),
            shuffle=bool(a["shuffle"]),
            verbose=bool(a["verbose"]),
            checkpoint=None if a["checkpoint"] is None else os.fspath(a["checkpoint"]),
            checkpoint_every=check_int(a["checkpoint_every"], "checkpoint_every", 1),
            resume=bool(a["resume"]),
            max_fun=check_int(a["max_fun"], "max_fun", 1),
            tol=check_real(a["tol"], "tol", 0.0),
            sharded=bool(a["sharded"]),
            class_weight=_class_weight.check(a["class_weight"], net.architecture.sizes[-1]),
            diagnostics=check_bool(a["diagnostics"], "diagnostics"),
            full_batch=full_batch,
            architecture=_architecture(net),
        )
        checked["early_stopping"] = _early_stopping(checked, a["early_stopping"])
        checked["optimizer"] = (
            None if full_batch else _resolve_optimizer(net, a["optimizer"], a["lr"], a["momentum"])
        )
        checked["lr"] = None if a["lr"] is None else check_real(a["lr"], "lr", 0.0, low_open=True)
        return cls(**checked)

    def shared(self) -> dict[str, Any]:
        """Return what every rank of data-parallel training must agree on, by field.

        Returns
        -------
        dict
            Every field but `RANK_LOCAL` and `FOLDED` ones, in order, as comparable values:
            the optimizer's class and hyper-parameters ("lbfgs" for none), the schedule's
            description, the early stopping's fields and state (its best parameters
            aside), whether a checkpoint is given (its path may differ between ranks), the
            metrics' names.
        """
        skipped = set(self.RANK_LOCAL) | set(self.FOLDED)
        return {
            name: _comparable(name, getattr(self, name))
            for name in self._FIELDS
            if name not in skipped
        }


def _batch_size(batch_size: Any) -> int:
    """Return the global batch size as given; 0 (None) means all rows.

    A batch larger than the data is the whole data: the run knows the rows of every rank
    when it starts (see `Run.start`).
    """
    return 0 if batch_size is None else check_int(batch_size, "batch_size", 1)


def _comparable(name: str, value: Any) -> Any:
    """Return a field as ranks compare it (see `FitSettings.shared`)."""
    if name == "optimizer":
        if value is None:
            return "lbfgs"
        return {"class": type(value).__qualname__, **value.hyperparameters()}
    if name == "schedule":
        return value.describe()
    if name == "early_stopping" and value is not None:
        fields = zip(value._FIELDS, value._values())
        return {field: inner for field, inner in fields if field != "best_params"}
    if name == "checkpoint":
        return value is not None
    if name == "metrics":
        return sorted(value)
    if name == "class_weight":
        return _class_weight.describe(value)
    return value


def _refuse_mini_batch_options(arguments: dict[str, Any]) -> None:
    """Refuse, for L-BFGS, the mini-batch options given (whatever their value)."""
    for name, was_given in _MINI_BATCH_ONLY.items():
        if was_given(arguments[name]):
            raise ValueError(
                f"{name}: does not apply to optimizer='lbfgs', which trains on all rows "
                "at once (leave it out)"
            )


def _architecture(net: Any) -> dict[str, Any]:
    """Return the network's architecture, dtype and matmul precision, as compared."""
    architecture = net.architecture
    return {
        **dict(zip(architecture._FIELDS, architecture._values())),
        "dtype": str(np.dtype(net.dtype)),
        "matmul_precision": getattr(net, "matmul_precision", "highest"),
    }


def _early_stopping(checked: dict[str, Any], early_stopping: Any) -> EarlyStopping | None:
    """Return the run's stopping rule: fit's own (``early_stopping=True``), a given one, or None."""
    if isinstance(early_stopping, EarlyStopping):
        return early_stopping
    if not early_stopping:
        return None
    return EarlyStopping(checked["patience"], checked["min_delta"], checked["restore_best_weights"])


def _checked_metrics(metrics: Any) -> dict[str, Callable]:
    if metrics is None:
        return {}
    if not isinstance(metrics, dict) or not all(
        isinstance(name, str) and callable(f) for name, f in metrics.items()
    ):
        raise TypeError(f"metrics: expected a dict of names to callables, got {metrics!r}")
    return dict(metrics)


def _resolve_optimizer(net: Any, optimizer: Any, lr: Any, momentum: Any) -> optim.Optimizer:
    """Return the optimizer a run uses; nothing is bound or changed yet."""
    if optimizer is None:
        chosen = net.optimizer if net.optimizer is not None else optim.SGD(lr)
    else:
        chosen = optim.get(optimizer, lr=lr, momentum=momentum)
    return chosen


def bind_optimizer(settings: FitSettings, net: Any) -> None:
    """Give the settings' optimizer its state for the network, and ``lr`` if one was given.

    Parameters
    ----------
    settings : FitSettings
        The run's settings.
    net : Network
        The network to train.

    Raises
    ------
    ValueError
        The optimizer's state belongs to another network.
    """
    chosen = settings.optimizer
    if chosen is None:  # L-BFGS
        return
    chosen.bind(net.params.size, net.dtype)
    if settings.lr is not None:
        chosen.lr = settings.lr


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
    chosen = _resolve_optimizer(net, optimizer, lr, momentum)
    lr = None if lr is None else check_real(lr, "lr", 0.0, low_open=True)
    chosen.bind(net.params.size, net.dtype)
    if lr is not None:
        chosen.lr = lr
    return chosen


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
