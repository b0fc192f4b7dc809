"""One training-epoch runner per implementation, all with the same interface.

    peer = make(implementation, config, X, Y, labels, initial)   # initial: a dp.Network
    peer.reset()            # back to the initial parameters, fresh optimizer state
    cost = peer.epoch(seed) # one epoch over all rows of X, rows in a permutation from seed
    weights, biases = peer.parameters()   # float64 copies, deltaprop's layout
    outputs = peer.predict(X)             # a^L, shape (n, n_L)

Every runner starts from the parameters of the same deltaprop network, takes its data in
the layout it trains on without converting (the network's dtype, C order; one-hot targets or
labels, whichever it wants) and uses as many BLAS / OpenMP threads as deltaprop. Each is
written the way a competent user of that library would write the loop:

* ``deltaprop``: ``Network.fit(X, Y, epochs=1, ...)``.
* ``torch``: a ``torch.nn.Sequential`` of ``nn.Linear`` layers and activations, a
  hand-written loop over a pre-shuffled index (``X[idx[i:i + B]]``), ``torch.optim.SGD``;
  no DataLoader, no autocast. Weight decay (Nielsen's lmbda / n) on the weights only, as
  deltaprop does. Losses: A ``0.5 * ((a - y)**2).sum(1).mean()``; B per-unit binary
  cross-entropy summed over the outputs, mean over the batch; C, D ``F.cross_entropy``.
* ``sklearn``: ``MLPClassifier(solver="sgd")`` and one ``partial_fit`` per epoch. It has no
  quadratic cost: A trains with its binary log-loss (sigmoid outputs, one-hot targets as a
  multilabel problem), which is B's cost; C and D use its softmax + log-loss on labels.
  ``alpha = lmbda * B / n`` gives Nielsen's (lmbda / n) W (scikit-learn adds alpha W / B).
* ``numpy``: numpy_mlp.py, the vectorised NumPy MLP of the same equations.
* ``reference``: deltaprop.reference, pure Python, on the few rows it is given (timed on a
  subset and extrapolated by the caller). It has plain SGD only: for C and D it runs SGD
  without momentum, whose update costs the same order as momentum's.
"""

from __future__ import annotations

import importlib.metadata

import numpy as np
import numpy_mlp
from _common import Config, threads
from threadpoolctl import threadpool_limits

import deltaprop as dp
from deltaprop import reference

__all__ = ["available", "make"]

# The peers that are optional, with the package whose version says they are installed.
_DISTRIBUTIONS = {"torch": "torch", "sklearn": "scikit-learn"}


def available() -> dict[str, str | None]:
    """Implementation -> version, or None if it is not installed (then it is absent)."""
    versions = {"deltaprop": dp.__version__, "numpy": np.__version__, "reference": dp.__version__}
    for implementation, distribution in _DISTRIBUTIONS.items():
        try:
            versions[implementation] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            versions[implementation] = None
    return versions


def make(implementation: str, config: Config, X, Y, labels, initial: dp.Network):
    """A runner for `config` on rows X (n, n_0), one-hot Y (n, n_L) and labels (n,).

    `initial` is the deltaprop network whose parameters every runner starts from; it is not
    modified.
    """
    cls = {
        "deltaprop": DeltapropPeer,
        "torch": TorchPeer,
        "sklearn": SklearnPeer,
        "numpy": NumpyPeer,
        "reference": ReferencePeer,
    }[implementation]
    return cls(config, X, Y, labels, initial)


def _initial_params(net: dp.Network) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return [W.copy() for W in net.weights], [b.copy() for b in net.biases]


def _float64(layers) -> list[np.ndarray]:
    return [np.array(layer, dtype=np.float64) for layer in layers]


# ---------------------------------------------------------------------------------- deltaprop
class DeltapropPeer:
    name = "deltaprop"

    def __init__(self, config, X, Y, labels, initial):
        self.config, self.X, self.Y = config, X, Y
        self.net = dp.Network.from_params(
            *_initial_params(initial), dtype=config.dtype, **config.names
        )
        self.initial = self.net.params.copy()
        self.fit_seconds = []  # each epoch's time as fit measures it (history["time"])
        self.reset()

    def reset(self) -> None:
        c = self.config
        self.net.params[...] = self.initial
        # One optimizer object for the run, as torch's: its state carries over between epochs.
        momentum = c.momentum if c.optimizer == "momentum" else None
        self.optimizer = dp.optim.get(c.optimizer, lr=c.lr, momentum=momentum)

    def _fit(self, **order) -> float:
        c = self.config
        history = self.net.fit(
            self.X, self.Y, epochs=1, batch_size=c.batch_size, optimizer=self.optimizer,
            lmbda=c.lmbda, **order,
        )  # fmt: skip
        self.fit_seconds.append(history["time"][0])
        return history["cost"][0]

    def epoch(self, seed: int) -> float:
        return self._fit(seed=seed)  # rows in np.random.default_rng(seed).permutation(n)

    def epoch_in_order(self) -> float:
        """One epoch with the rows in storage order (for comparisons)."""
        return self._fit(shuffle=False)

    def parameters(self):
        return _float64(self.net.weights), _float64(self.net.biases)

    def predict(self, X) -> np.ndarray:
        return self.net.predict(X)


# ---------------------------------------------------------------------------------- PyTorch
class TorchPeer:
    name = "torch"

    def __init__(self, config, X, Y, labels, initial):
        import torch

        self.torch = torch
        torch.set_num_threads(threads())
        self.config = config
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[config.dtype]
        layers = []
        weights, biases = _initial_params(initial)
        for l, W in enumerate(weights):
            layers.append(torch.nn.Linear(W.shape[1], W.shape[0], dtype=self.dtype))
            if l < len(weights) - 1:
                hidden = {"sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU}[config.activation]
                layers.append(hidden())
        # The output activation is part of the loss (and of predict).
        self.model = torch.nn.Sequential(*layers)
        self.linears = [layer for layer in layers if isinstance(layer, torch.nn.Linear)]
        self.initial = (weights, biases)
        self.X = torch.from_numpy(X)
        # Targets as each loss wants them: one-hot for A and B, class indices for C and D.
        self.T = torch.from_numpy(labels if config.cost == "log_likelihood" else Y)
        self.n = X.shape[0]
        self.reset()

    def reset(self) -> None:
        torch = self.torch
        with torch.no_grad():
            for linear, W, b in zip(self.linears, *self.initial):
                linear.weight.copy_(torch.from_numpy(W))
                linear.bias.copy_(torch.from_numpy(b))
        c = self.config
        groups = [
            # Nielsen's L2, (lmbda / n) W on the weights only: torch adds weight_decay * w
            # to the batch-mean gradient.
            {"params": [m.weight for m in self.linears], "weight_decay": c.lmbda / self.n},
            {"params": [m.bias for m in self.linears], "weight_decay": 0.0},
        ]
        self.optimizer = torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum)

    def _loss(self, z, target):
        F = self.torch.nn.functional
        cost = self.config.cost
        if cost == "quadratic":  # 1/2 ||sigmoid(z) - y||^2, mean over the batch
            return 0.5 * ((self.torch.sigmoid(z) - target) ** 2).sum(1).mean()
        if cost == "cross_entropy":  # per output unit, summed; mean over the batch
            return F.binary_cross_entropy_with_logits(z, target, reduction="none").sum(1).mean()
        return F.cross_entropy(z, target)  # softmax + log-likelihood

    def _batches(self, order):
        torch, B = self.torch, self.config.batch_size
        model, optimizer, X, T = self.model, self.optimizer, self.X, self.T
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, self.n, B):
            rows = order[start : start + B]
            loss = self._loss(model(X[rows]), T[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(rows)
        return float(total) / self.n

    def epoch(self, seed: int) -> float:
        # deltaprop's row order (np.random.default_rng(seed).permutation), as an index tensor.
        return self._batches(self.torch.from_numpy(np.random.default_rng(seed).permutation(self.n)))

    def epoch_in_order(self) -> float:
        return self._batches(self.torch.arange(self.n))

    def parameters(self):
        weights = [m.weight.detach().double().numpy().copy() for m in self.linears]
        biases = [m.bias.detach().double().numpy().copy() for m in self.linears]
        return weights, biases

    def predict(self, X) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            z = self.model(torch.from_numpy(X))
            output = self.config.output
            a = torch.softmax(z, dim=1) if output == "softmax" else torch.sigmoid(z)
            return a.numpy()


# ---------------------------------------------------------------------------------- scikit-learn
class SklearnPeer:
    name = "sklearn"

    def __init__(self, config, X, Y, labels, initial):
        from sklearn.neural_network import MLPClassifier

        c = self.config = config
        self.X = X
        # A and B: one-hot targets make a multilabel problem, which scikit-learn trains with
        # sigmoid outputs and the per-unit binary log-loss (B's cost; A's quadratic cost it
        # does not have). C and D: labels, softmax and log-loss.
        self.y = labels if c.output == "softmax" else Y.astype(np.int64)
        self.model = MLPClassifier(
            hidden_layer_sizes=c.sizes[1:-1],
            activation={"sigmoid": "logistic", "relu": "relu"}[c.activation],
            solver="sgd",
            learning_rate="constant",
            learning_rate_init=c.lr,
            momentum=c.momentum,
            nesterovs_momentum=False,
            batch_size=c.batch_size,
            # scikit-learn's gradient gains alpha W / B: Nielsen's (lmbda / n) W.
            alpha=c.lmbda * c.batch_size / X.shape[0],
            shuffle=True,
            random_state=0,
            tol=0.0,
            n_iter_no_change=2**31 - 1,
        )
        # The first partial_fit initialises the model (and trains it on one batch); the
        # parameters are then overwritten by the common start in reset().
        with threadpool_limits(threads(), user_api="blas"):
            self.model.partial_fit(
                X[: c.batch_size], self.y[: c.batch_size], classes=np.arange(c.sizes[-1])
            )
        self.initial = _initial_params(initial)
        self.reset()

    def reset(self) -> None:
        model = self.model
        for coef, intercept, W, b in zip(model.coefs_, model.intercepts_, *self.initial):
            coef[...] = W.T  # scikit-learn's coefs_ are (n_in, n_out)
            intercept[...] = b
        # The optimizer updates coefs_ in place; dropping it makes partial_fit start a new
        # one on the same arrays, with zero velocities.
        if hasattr(model, "_optimizer"):
            del model._optimizer

    def epoch(self, seed: int) -> float:
        self.model.random_state = seed  # of partial_fit's shuffle
        with threadpool_limits(threads(), user_api="blas"):
            self.model.partial_fit(self.X, self.y)
        return float(self.model.loss_)

    def epoch_in_order(self) -> float:
        self.model.shuffle = False
        try:
            return self.epoch(0)
        finally:
            self.model.shuffle = True

    def parameters(self):
        return (
            [np.array(coef.T, dtype=np.float64) for coef in self.model.coefs_],
            _float64(self.model.intercepts_),
        )

    def predict(self, X) -> np.ndarray:
        with threadpool_limits(threads(), user_api="blas"):
            return self.model.predict_proba(X)


# ---------------------------------------------------------------------------------- NumPy
class NumpyPeer:
    name = "numpy"

    def __init__(self, config, X, Y, labels, initial):
        self.config, self.X, self.Y = config, X, Y
        self.initial = _initial_params(initial)
        self.reset()

    def reset(self) -> None:
        self.weights = [W.copy() for W in self.initial[0]]
        self.biases = [b.copy() for b in self.initial[1]]
        self.velocity = (
            [np.zeros_like(W) for W in self.weights],
            [np.zeros_like(b) for b in self.biases],
        )

    def _epoch(self, order) -> float:
        c = self.config
        with threadpool_limits(threads(), user_api="blas"):
            return numpy_mlp.sgd_epoch(
                self.weights, self.biases, self.X, self.Y, order, batch_size=c.batch_size,
                lr=c.lr, lmbda=c.lmbda, n=self.X.shape[0], momentum=c.momentum,
                velocity=self.velocity, **c.names,
            )  # fmt: skip

    def epoch(self, seed: int) -> float:
        return self._epoch(np.random.default_rng(seed).permutation(self.X.shape[0]))

    def epoch_in_order(self) -> float:
        return self._epoch(None)

    def parameters(self):
        return _float64(self.weights), _float64(self.biases)

    def predict(self, X) -> np.ndarray:
        with threadpool_limits(threads(), user_api="blas"):
            return numpy_mlp.forward(self.weights, self.biases, X, **self._forward_names())[1][-1]

    def _forward_names(self):
        return {"activation": self.config.activation, "output": self.config.output}


# ---------------------------------------------------------------------------------- reference
class ReferencePeer:
    """deltaprop.reference on nested lists; the rows are converted once, here."""

    name = "reference"

    def __init__(self, config, X, Y, labels, initial):
        self.config = config
        self.X, self.Y = X, Y
        self.initial = ([W.tolist() for W in initial.weights], [b.tolist() for b in initial.biases])
        self.rows = {}  # seed -> (X rows, Y rows) as lists, in that epoch's order
        self.reset()

    def reset(self) -> None:
        self.weights, self.biases = self.initial

    def _lists(self, seed):
        if seed not in self.rows:
            order = np.arange(len(self.X)) if seed is None else (
                np.random.default_rng(seed).permutation(len(self.X))
            )  # fmt: skip
            self.rows[seed] = self.X[order].tolist(), self.Y[order].tolist()
        return self.rows[seed]

    def prepare(self, seed: int) -> None:
        """Convert the rows of `seed`'s order to lists now (outside any timing)."""
        self._lists(seed)

    def _epoch(self, seed) -> float:
        c = self.config
        X, Y = self._lists(seed)
        # Plain SGD: the reference has no momentum. n: the rows trained on, as fit's lmbda.
        self.weights, self.biases = reference.sgd_epoch(
            self.weights, self.biases, X, Y, batch_size=c.batch_size, lr=c.lr, lmbda=c.lmbda,
            n=len(X), **c.names,
        )  # fmt: skip
        return float("nan")  # the reference's epoch does not report a cost

    def epoch(self, seed: int) -> float:
        return self._epoch(seed)

    def epoch_in_order(self) -> float:
        return self._epoch(None)

    def parameters(self):
        return _float64(self.weights), _float64(self.biases)

    def predict(self, X) -> np.ndarray:
        names = {"activation": self.config.activation, "output": self.config.output}
        return np.array(reference.predict(self.weights, self.biases, X.tolist(), **names))
