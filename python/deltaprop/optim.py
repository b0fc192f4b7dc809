"""Optimizers: hyper-parameters, validated here, and state, updated in place by the core.

Every optimizer is one general update applied after each mini-batch, element-wise and in
C++ (cpp/optimizers.hpp), with PyTorch's semantics:

- ``SGD``: w <- w - lr g
- ``Momentum``: v <- mu v + g; w <- w - lr v
- ``Nesterov``: v <- mu v + g; w <- w - lr (g + mu v)
- ``Adam``: m <- b1 m + (1-b1) g; v <- b2 v + (1-b2) g^2;
  w <- w - lr m_hat / (sqrt(v_hat) + eps) with bias-corrected m_hat, v_hat.

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

import numbers
from typing import Any

import numpy as np

from . import _core

__all__ = ["SGD", "Adam", "AdamW", "Momentum", "Nesterov", "Optimizer", "get"]


def _check_real(value: Any, name: str, low: float, high: float = np.inf, *, open_low=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    value = float(value)
    too_low = value <= low if open_low else value < low
    if not np.isfinite(value) or too_low or value >= high:
        if high == np.inf:
            expected = f"a finite number {'>' if open_low else '>='} {low:g}"
        else:
            expected = f"a value in {'(' if open_low else '['}{low:g}, {high:g})"
        raise ValueError(f"{name}: expected {expected}, got {value}")
    return value


class Optimizer:
    """Base class: a learning rate, an L2 ``weight_decay`` and the state of the update."""

    name = "sgd"  # the name optim.get() and saved model files know it by
    method = "sgd"  # the core's update
    n_state = 0  # state arrays, each shaped like the network's parameters
    default_lr = 0.1

    def __init__(self, lr: float | None = None, *, weight_decay: float = 0.0) -> None:
        self.lr = _check_real(self.default_lr if lr is None else lr, "lr", 0.0, open_low=True)
        self.weight_decay = _check_real(weight_decay, "weight_decay", 0.0)
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
        """The constructor arguments, e.g. for saving: ``type(opt)(**opt.hyperparameters())``."""
        return {"lr": self.lr, "weight_decay": self.weight_decay}

    def _rule_arguments(self) -> dict[str, float]:
        return {}

    def rule(self, l2: float, l1: float) -> _core.UpdateRule:
        """The core's update rule, with Nielsen's scaled lmbda/n and l1/n added."""
        return _core.UpdateRule(
            self.method, self.lr, l2=l2 + self._coupled_decay(), l1=l1, **self._rule_arguments()
        )

    def _coupled_decay(self) -> float:
        return self.weight_decay

    def bind(self, n_params: int, dtype: np.dtype) -> None:
        """Allocate zero state for a network, or check that the existing state fits it."""
        if not self.state:
            self.state = [np.zeros(n_params, dtype=dtype) for _ in range(self.n_state)]
            return
        first = self.state[0]
        if first.shape != (n_params,) or first.dtype != dtype:
            raise ValueError(
                f"optimizer: its state belongs to a network with {first.size} {first.dtype} "
                f"parameters, not {n_params} {np.dtype(dtype)}; use a new optimizer"
            )

    def reset(self) -> None:
        """Forget the state (velocity, moments, step count)."""
        self.state, self.step = [], 0

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({arguments})"


class SGD(Optimizer):
    """Plain mini-batch SGD: w <- w - lr g (with lmbda only, the update is fused into BP4)."""


class Momentum(Optimizer):
    """Heavy-ball momentum (torch.optim.SGD with momentum): v <- mu v + g; w <- w - lr v."""

    name = method = "momentum"
    n_state = 1
    default_lr = 0.01

    def __init__(self, lr=None, momentum: float = 0.9, *, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay=weight_decay)
        self.momentum = _check_real(momentum, "momentum", 0.0, 1.0)

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "momentum": self.momentum}

    def _rule_arguments(self) -> dict[str, float]:
        return {"momentum": self.momentum}


class Nesterov(Momentum):
    """Nesterov momentum (torch.optim.SGD with nesterov=True): w <- w - lr (g + mu v)."""

    name = method = "nesterov"


class Adam(Optimizer):
    """Adam (torch.optim.Adam defaults); ``decoupled=True`` gives AdamW's weight decay."""

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
            _check_real(betas[0], "betas[0]", 0.0, 1.0),
            _check_real(betas[1], "betas[1]", 0.0, 1.0),
        )
        self.eps = _check_real(eps, "eps", 0.0, open_low=True)
        self.decoupled = bool(decoupled)

    def hyperparameters(self) -> dict[str, Any]:
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
    """Adam with decoupled weight decay (torch.optim.AdamW defaults: weight_decay=0.01)."""

    name = "adamw"

    def __init__(
        self, lr=None, betas=(0.9, 0.999), eps=1e-8, *, weight_decay=0.01, decoupled=True
    ) -> None:
        if decoupled is not True:
            raise ValueError("decoupled: AdamW always decouples its weight decay")
        super().__init__(lr, betas, eps, weight_decay=weight_decay, decoupled=True)


_BY_NAME = {cls.name: cls for cls in (SGD, Momentum, Nesterov, Adam, AdamW)}


def get(optimizer: str | Optimizer, **hyperparameters: Any) -> Optimizer:
    """An optimizer from its name (``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"``,
    ``"adamw"``) and hyper-parameters (None values are left at their defaults), or the
    given optimizer object itself."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if not isinstance(optimizer, str) or optimizer not in _BY_NAME:
        raise ValueError(
            f"optimizer: expected one of {', '.join(_BY_NAME)} or an Optimizer, got {optimizer!r}"
        )
    cls = _BY_NAME[optimizer]
    given = {k: v for k, v in hyperparameters.items() if v is not None}
    if "momentum" in given and not issubclass(cls, Momentum):
        del given["momentum"]
    return cls(**given)
