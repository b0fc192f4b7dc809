"""Optimizers: hyper-parameters, validated here, and state, updated in place by the core.

Each optimizer is its own element-wise update after each mini-batch, in C++
(cpp/optimizers.hpp: one pass per method over a segment of the parameters; plain SGD and
momentum take their gradient in the BP4 GEMM itself, the others from a gradient buffer),
with PyTorch's semantics:

- ``SGD``: w <- w - lr g
- ``Momentum``: v <- mu v + g; w <- w - lr v
- ``Nesterov``: v <- mu v + g; w <- w - lr (g + mu v)
- ``Adam``: m <- b1 m + (1-b1) g; v <- b2 v + (1-b2) g^2;
  w <- w - lr m_hat / (sqrt(v_hat) + eps) with bias-corrected m_hat, v_hat.
- ``Rprop``: a step per parameter, grown while the gradient keeps its sign and shrunk when
  it flips; w <- w - sign(g) step.

Regularisation touches the weights only, never the biases. ``weight_decay`` is an L2 term
added to the gradient (g + weight_decay w, as torch.optim.SGD and torch.optim.Adam do);
``AdamW`` (``Adam(decoupled=True)``) instead shrinks the weights outside the gradient,
w <- (1 - lr weight_decay) w, as torch.optim.AdamW does. ``Network.fit``'s ``lmbda`` and
``l1`` are Nielsen's per-sample-scaled terms and add (lmbda/n) w and (l1/n) sign(w) to the
gradient for every optimizer.

The state (velocity, or Adam's moments, as flat arrays laid out like ``Network.params``, and
the step count) is part of the model: it is saved with it and training resumes from it.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from . import _core
from ._checks import check_real

__all__ = [
    "NAMES",
    "SGD",
    "Adam",
    "AdamW",
    "Momentum",
    "Nesterov",
    "Optimizer",
    "Rprop",
    "from_description",
    "get",
]


class Optimizer:
    """Base class: a learning rate, an L2 ``weight_decay`` and the state of the update.

    As it is, plain SGD. A subclass sets the class attributes below and, for more
    hyper-parameters, extends the constructor and `hyperparameters`.

    Parameters
    ----------
    lr : float or None, default=None
        Learning rate, > 0; None: the class's ``default_lr``.
    weight_decay : float, default=0.0
        L2 term added to the gradient of the weights (not the biases), >= 0.

    Attributes
    ----------
    name : str
        The name `get` and model files know the optimizer by.
    method : str
        The core's update.
    n_state : int
        Number of state arrays, each shaped like the network's parameters.
    default_lr : float
        The learning rate when none is given.
    lr : float
        The learning rate; `Network.fit` may change it (``lr`` and ``schedule``).
    weight_decay : float
        As given.
    state : list of ndarray
        The state arrays (velocity, moments), laid out like `Network.params`; empty
        until `bind` allocates them.

    Raises
    ------
    TypeError, ValueError
        An invalid hyper-parameter.
    """

    name = "sgd"  # the name optim.get() and saved model files know it by
    method = "sgd"  # the core's update
    n_state = 0  # state arrays, each shaped like the network's parameters
    default_lr = 0.1

    def __init__(self, lr: float | None = None, *, weight_decay: float = 0.0) -> None:
        self.lr = check_real(self.default_lr if lr is None else lr, "lr", 0.0, low_open=True)
        self.weight_decay = check_real(weight_decay, "weight_decay", 0.0)
        self.state: list[np.ndarray] = []
        # Updated in place by the core, with the parameters: always their true count.
        self._step = np.zeros(1, dtype=np.int64)

    @property
    def step(self) -> int:
        """Number of updates made (Adam's t)."""
        return int(self._step[0])

    @step.setter
    def step(self, value: int) -> None:
        self._step[0] = value

    def hyperparameters(self) -> dict[str, Any]:
        """Return the constructor arguments: ``type(opt)(**opt.hyperparameters())`` rebuilds it.

        Returns
        -------
        dict of str to object
            The hyper-parameters, by name (the state is not among them).
        """
        return {"lr": self.lr, "weight_decay": self.weight_decay}

    def _rule_arguments(self) -> dict[str, float]:
        return {}

    def rule(self, l2: float, l1: float) -> _core.UpdateRule:
        """Return the core's update rule, with Nielsen's scaled lmbda/n and l1/n added.

        Parameters
        ----------
        l2 : float
            L2 coefficient (lmbda/n) added to ``weight_decay``, unless it is decoupled.
        l1 : float
            L1 coefficient (l1/n).

        Returns
        -------
        deltaprop._core.UpdateRule
            The update with the current hyper-parameters, ``lr`` included.
        """
        return _core.UpdateRule(
            self.method, self.lr, l2=l2 + self._coupled_decay(), l1=l1, **self._rule_arguments()
        )

    def _coupled_decay(self) -> float:
        return self.weight_decay

    def bind(self, n_params: int, dtype: np.dtype) -> None:
        """Allocate initial state for a network, or check that the existing state fits it.

        Parameters
        ----------
        n_params : int
            The network's number of parameters.
        dtype : numpy.dtype
            The network's dtype.

        Raises
        ------
        ValueError
            The existing state belongs to a network of another size or dtype.
        """
        if not self.state:
            self.state = self._initial_state(n_params, np.dtype(dtype))
            return
        first = self.state[0]
        if first.shape != (n_params,) or first.dtype != dtype:
            raise ValueError(
                f"optimizer: its state belongs to a network with {first.size} {first.dtype} "
                f"parameters, not {n_params} {np.dtype(dtype)}; use a new optimizer"
            )

    def _initial_state(self, n_params: int, dtype: np.dtype) -> list[np.ndarray]:
        return [np.zeros(n_params, dtype=dtype) for _ in range(self.n_state)]

    def describe(self) -> dict[str, Any]:
        """Describe the optimizer as a model file's header holds it.

        The state arrays go beside the description, in the file's arrays.

        Returns
        -------
        dict
            JSON-able: ``name``, ``hyperparameters``, ``step`` and ``n_state``.

        Raises
        ------
        ValueError
            The optimizer is not one of the built-in ones (only those can be rebuilt).
        """
        if type(self) is not _BY_NAME.get(self.name):
            raise ValueError(
                f"optimizer: only the built-in optimizers ({', '.join(NAMES)}) can be saved, "
                f"got {type(self).__name__}"
            )
        return {
            "name": self.name,
            "hyperparameters": {
                key: list(value) if isinstance(value, tuple) else value
                for key, value in self.hyperparameters().items()
            },
            "step": self.step,
            "n_state": len(self.state),
        }

    def copy(self) -> Optimizer:
        """Return an independent copy: same hyper-parameters, a copy of state and step.

        Returns
        -------
        Optimizer
            The copy.
        """
        import copy  # here only: saving and pickling need it, `import deltaprop` does not

        twin = copy.copy(self)
        twin.state = [array.copy() for array in self.state]
        twin._step = self._step.copy()
        return twin

    def reset(self) -> None:
        """Forget the state (velocity, moments, step count)."""
        self.state, self.step = [], 0

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({arguments})"


class SGD(Optimizer):
    """Plain mini-batch SGD: w <- w - lr g (with lmbda only, the update is fused into BP4).

    Parameters
    ----------
    lr : float or None, default=None
        Learning rate, > 0; None: 0.1.
    weight_decay : float, default=0.0
        L2 term added to the gradient of the weights, >= 0 (as torch.optim.SGD).
    """


class Momentum(Optimizer):
    """Heavy-ball momentum (torch.optim.SGD with momentum): v <- mu v + g; w <- w - lr v.

    Parameters
    ----------
    lr : float or None, default=None
        Learning rate, > 0; None: 0.01.
    momentum : float, default=0.9
        The factor mu, in [0, 1).
    weight_decay : float, default=0.0
        L2 term added to the gradient of the weights, >= 0.
    """

    name = method = "momentum"
    n_state = 1
    default_lr = 0.01

    def __init__(self, lr=None, momentum: float = 0.9, *, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay=weight_decay)
        self.momentum = check_real(momentum, "momentum", 0.0, 1.0)

    def hyperparameters(self) -> dict[str, Any]:
        """Return the constructor arguments, ``momentum`` included (see `Optimizer`).

        Returns
        -------
        dict of str to object
            The hyper-parameters, by name.
        """
        return {**super().hyperparameters(), "momentum": self.momentum}

    def _rule_arguments(self) -> dict[str, float]:
        return {"momentum": self.momentum}


class Nesterov(Momentum):
    """Nesterov momentum (torch.optim.SGD with nesterov=True): w <- w - lr (g + mu v).

    The velocity is updated as for `Momentum`: v <- mu v + g.

    Parameters
    ----------
    lr : float or None, default=None
        Learning rate, > 0; None: 0.01.
    momentum : float, default=0.9
        The factor mu, in [0, 1).
    weight_decay : float, default=0.0
        L2 term added to the gradient of the weights, >= 0.
    """

    name = method = "nesterov"


class Adam(Optimizer):
    """Adam (torch.optim.Adam defaults); ``decoupled=True`` gives AdamW's weight decay.

    Parameters
    ----------
    lr : float or None, default=None
        Learning rate, > 0; None: 1e-3.
    betas : tuple (float, float), default=(0.9, 0.999)
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float, default=1e-8
        Added to the denominator, > 0.
    weight_decay : float, default=0.0
        Decay of the weights (not the biases), >= 0.
    decoupled : bool, default=False
        False: an L2 term added to the gradient (torch.optim.Adam). True: the weights
        shrink outside the gradient, w <- (1 - lr weight_decay) w (torch.optim.AdamW).

    Raises
    ------
    TypeError, ValueError
        An invalid hyper-parameter (``betas`` not a pair included).
    """

    name = method = "adam"
    n_state = 2
    default_lr = 1e-3

    def __init__(
        self,
        lr=None,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        *,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ) -> None:
        super().__init__(lr, weight_decay=weight_decay)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        self.betas = (
            check_real(betas[0], "betas[0]", 0.0, 1.0),
            check_real(betas[1], "betas[1]", 0.0, 1.0),
        )
        self.eps = check_real(eps, "eps", 0.0, low_open=True)
        self.decoupled = bool(decoupled)

    def hyperparameters(self) -> dict[str, Any]:
        """Return the constructor arguments, Adam's included (see `Optimizer`).

        Returns
        -------
        dict of str to object
            The hyper-parameters, by name.
        """
        return {
            **super().hyperparameters(),
            "betas": self.betas,
            "eps": self.eps,
            "decoupled": self.decoupled,
        }

    def _coupled_decay(self) -> float:
        return 0.0 if self.decoupled else self.weight_decay

    def _rule_arguments(self) -> dict[str, float]:
        return {
            "beta1": self.betas[0],
            "beta2": self.betas[1],
            "eps": self.eps,
            "decoupled_decay": self.weight_decay if self.decoupled else 0.0,
        }


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW defaults: weight_decay=0.01).

    Parameters
    ----------
    lr : float or None, default=None
        Learning rate, > 0; None: 1e-3.
    betas : tuple (float, float), default=(0.9, 0.999)
        As for `Adam`.
    eps : float, default=1e-8
        As for `Adam`.
    weight_decay : float, default=0.01
        Decoupled decay of the weights (not the biases), >= 0.
    decoupled : bool, default=True
        Must be True (the name `Adam` gives to its option).

    Raises
    ------
    ValueError
        ``decoupled`` is not True, or an invalid hyper-parameter.
    TypeError
        A hyper-parameter of the wrong type.
    """

    name = "adamw"

    def __init__(
        self, lr=None, betas=(0.9, 0.999), eps=1e-8, *, weight_decay=0.01, decoupled=True
    ) -> None:
        if decoupled is not True:
            raise ValueError("decoupled: AdamW always decouples its weight decay")
        super().__init__(lr, betas, eps, weight_decay=weight_decay, decoupled=True)


class Rprop(Optimizer):
    """Resilient backpropagation (torch.optim.Rprop, its variant and defaults).

    Each parameter has its own step, starting at ``lr``: multiplied by ``etas[1]`` while
    its gradient keeps its sign, by ``etas[0]`` when the sign flips (and then that
    gradient counts as zero: no move), and kept within ``step_sizes``; the parameter moves
    by its step against the sign of its gradient. Meant for full-batch training
    (``fit(batch_size=None)``), usable with mini-batches as PyTorch allows.

    Parameters
    ----------
    lr : float or None, default=None
        The initial step of every parameter, > 0; None: 0.01.
    etas : tuple (float, float), default=(0.5, 1.2)
        (eta_minus, eta_plus), with 0 < eta_minus < 1 < eta_plus.
    step_sizes : tuple (float, float), default=(1e-6, 50)
        (smallest, largest) step, with 0 < smallest <= largest.
    weight_decay : float, default=0.0
        L2 term added to the gradient of the weights, >= 0.

    Raises
    ------
    TypeError, ValueError
        A hyper-parameter of the wrong type or value.
    """

    name = method = "rprop"
    n_state = 2  # the previous gradient, and the steps
    default_lr = 0.01

    def __init__(
        self,
        lr=None,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr, weight_decay=weight_decay)
        self.etas = (
            check_real(_pair(etas, "etas")[0], "etas[0]", 0.0, 1.0, low_open=True),
            check_real(etas[1], "etas[1]", 1.0, low_open=True),
        )
        smallest = check_real(
            _pair(step_sizes, "step_sizes")[0], "step_sizes[0]", 0.0, low_open=True
        )
        self.step_sizes = (smallest, check_real(step_sizes[1], "step_sizes[1]", smallest))

    def hyperparameters(self) -> dict[str, Any]:
        """Return the constructor arguments.

        Returns
        -------
        dict
            ``lr``, ``weight_decay``, ``etas`` and ``step_sizes``.
        """
        return {**super().hyperparameters(), "etas": self.etas, "step_sizes": self.step_sizes}

    def _rule_arguments(self) -> dict[str, float]:
        return {
            "eta_minus": self.etas[0],
            "eta_plus": self.etas[1],
            "step_min": self.step_sizes[0],
            "step_max": self.step_sizes[1],
        }

    def _initial_state(self, n_params: int, dtype: np.dtype) -> list[np.ndarray]:
        # No previous gradient yet; every step starts at lr (PyTorch's initial step).
        return [np.zeros(n_params, dtype=dtype), np.full(n_params, self.lr, dtype=dtype)]


def _pair(value: Any, name: str) -> tuple[Any, Any]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name}: expected a pair of numbers, got {value!r}")
    return value[0], value[1]


_BY_NAME = {cls.name: cls for cls in (SGD, Momentum, Nesterov, Adam, AdamW, Rprop)}
NAMES = tuple(_BY_NAME)
_DESCRIPTION_FIELDS = {"name", "hyperparameters", "step", "n_state"}
_MAX_STEP = 2**63 - 1  # the core's int64 step count


def get(optimizer: str | Optimizer, **hyperparameters: Any) -> Optimizer:
    """Make an optimizer from its name and hyper-parameters, or pass an optimizer through.

    Hyper-parameters that are None, or that the named optimizer does not take (``momentum``
    for ``"adam"``, say), are left out: one set of options can serve every name.

    Parameters
    ----------
    optimizer : {"sgd", "momentum", "nesterov", "adam", "adamw", "rprop"} or Optimizer
        A name (one of `NAMES`), or an optimizer, returned as it is.
    **hyperparameters
        Constructor arguments of the named optimizer (``lr``, ``momentum``, ``betas``...);
        ignored for an optimizer object.

    Returns
    -------
    Optimizer
        A new optimizer, or ``optimizer`` itself.

    Raises
    ------
    ValueError
        An unknown name, or an invalid hyper-parameter.
    TypeError
        A hyper-parameter of the wrong type.
    """
    if isinstance(optimizer, Optimizer):
        return optimizer
    if not isinstance(optimizer, str) or optimizer not in _BY_NAME:
        raise ValueError(
            f"optimizer: expected one of {', '.join(NAMES)} or an Optimizer, got {optimizer!r}"
        )
    cls = _BY_NAME[optimizer]
    accepted = inspect.signature(cls).parameters
    given = {k: v for k, v in hyperparameters.items() if v is not None and k in accepted}
    return cls(**given)


def from_description(description: Any, state: list[np.ndarray]) -> Optimizer:
    """Rebuild the optimizer that `Optimizer.describe` described, with its state arrays.

    Parameters
    ----------
    description : object
        The header's ``optimizer`` field (any JSON value: it is checked).
    state : list of ndarray
        The state arrays read beside it, as many as its ``n_state`` announces.

    Returns
    -------
    Optimizer
        With the described hyper-parameters and step, and ``state`` as its state.

    Raises
    ------
    ValueError
        The description is malformed or its values are invalid.
    """
    cls = _described_class(description)
    if described_state_count(description) != len(state):
        raise ValueError(f"optimizer: n_state is {description['n_state']}, got {len(state)} arrays")
    hyperparameters = description["hyperparameters"]
    if not isinstance(hyperparameters, dict):
        raise ValueError("optimizer: hyperparameters must be an object")
    step = description["step"]
    if type(step) is not int or not 0 <= step <= _MAX_STEP:
        raise ValueError(f"optimizer: step must be a non-negative integer, got {step!r}")
    hyperparameters = {  # JSON holds the pairs (betas, etas, step_sizes) as lists
        key: tuple(value) if isinstance(value, list) else value
        for key, value in hyperparameters.items()
    }
    try:
        optimizer = cls(**hyperparameters)
    except (TypeError, OverflowError) as error:
        raise ValueError(f"optimizer hyper-parameters are invalid: {error}") from error
    if isinstance(optimizer, Adam) and state and (state[1] < 0).any():
        raise ValueError("optimizer: Adam's second moments must not be negative")
    if isinstance(optimizer, Rprop) and state and not (state[1] > 0).all():
        raise ValueError("optimizer: Rprop's steps must be positive")
    optimizer.state, optimizer.step = list(state), step
    return optimizer


def described_state_count(description: Any) -> int:
    """Return the number of state arrays a description announces, checked.

    It is checked against the optimizer's own count before the arrays are read.

    Parameters
    ----------
    description : object
        The header's ``optimizer`` field: None, or what `Optimizer.describe` returns.

    Returns
    -------
    int
        0 for None; else 0 or the optimizer's ``n_state``.

    Raises
    ------
    ValueError
        The description is malformed, or its ``n_state`` is neither.
    """
    if description is None:
        return 0
    cls = _described_class(description)
    n_state = description["n_state"]
    if type(n_state) is not int or n_state not in (0, cls.n_state):
        raise ValueError(
            f"optimizer: n_state of {cls.name} must be 0 or {cls.n_state}, got {n_state!r}"
        )
    return n_state


def _described_class(description: Any) -> type[Optimizer]:
    if not isinstance(description, dict) or description.keys() != _DESCRIPTION_FIELDS:
        raise ValueError(
            f"optimizer: expected null or an object with {sorted(_DESCRIPTION_FIELDS)}"
        )
    name = description["name"]
    if not isinstance(name, str) or name not in _BY_NAME:
        raise ValueError(f"optimizer: name must be one of {', '.join(NAMES)}, got {name!r}")
    return _BY_NAME[name]
