"""One runner per implementation, all with the same interface::

    peer = make(implementation, config, rows)   # rows: a _common.Data
    peer.reset()                # back to the initial parameters, fresh optimizer state
    cost = peer.epoch(seed)     # one epoch over X; rows in epoch_order(n, seed), None: in order
    weights, biases = peer.parameters()   # float64 copies in deltaprop's layout
    outputs = peer.predict(X)             # a^L of shape (n, n_L)

Every runner starts from the parameters of the same deltaprop network (make_network), takes
its rows in the layout it trains on (the network's dtype, C order; one-hot targets or labels)
and uses as many threads as deltaprop's BLAS. Each is written as a competent user would:

* deltaprop: ``Network.fit(X, Y, epochs=1, ...)``.
* torch: ``nn.Sequential`` of ``nn.Linear`` and activations, ``torch.optim.SGD``, a hand-written
  loop over a pre-shuffled index; no DataLoader; in the bfloat16 rows
  ``torch.autocast("cpu", dtype=torch.bfloat16)`` around the forward pass and the loss.
* sklearn: ``MLPClassifier`` and one ``partial_fit`` per epoch.
* numpy: the equations below, vectorised by hand over each mini-batch.
* reference: ``deltaprop.reference``, pure Python, plain SGD only (no momentum).
"""

from __future__ import annotations

import importlib.metadata

import numpy as np
from _common import Config, Data, epoch_order, make_network, make_optimizer, threads
from threadpoolctl import threadpool_limits

import deltaprop as dp
from deltaprop import reference


def available() -> dict[str, str | None]:
    """Implementation -> version, None when it is not installed."""
    versions = {"deltaprop": dp.__version__, "numpy": np.__version__, "reference": dp.__version__}
    for implementation, distribution in (("torch", "torch"), ("sklearn", "scikit-learn")):
        try:
            versions[implementation] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            versions[implementation] = None
    return versions


def make(implementation: str, config: Config, rows: Data):
    """A runner for `config` on `rows`."""
    runners = {"deltaprop": Deltaprop, "torch": Torch, "sklearn": Sklearn, "numpy": Numpy}
    return runners.get(implementation, Reference)(config, rows)


def _float64(layers) -> list[np.ndarray]:
    return [np.array(layer, dtype=np.float64) for layer in layers]


class Peer:
    """What every runner keeps: the configuration, its rows and the starting parameters."""

    def __init__(self, config: Config, rows: Data) -> None:
        self.config, self.X, self.Y, self.labels = config, rows.X, rows.Y, rows.labels
        start = make_network(config)
        self.initial = [W.copy() for W in start.weights], [b.copy() for b in start.biases]
        self.build()
        self.reset()

    def build(self) -> None:
        """Create what lives as long as the runner (model, converted data)."""

    def parameters(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Float64 copies of the weights and biases, in deltaprop's layout."""
        return _float64(self.weights), _float64(self.biases)


class Deltaprop(Peer):
    weights = property(lambda self: self.net.weights)
    biases = property(lambda self: self.net.biases)

    def build(self) -> None:
        self.net = make_network(self.config)
        self.start = self.net.params.copy()
        self.fit_seconds = []  # each epoch's time as fit measures it, without its input checks

    def reset(self) -> None:
        self.net.params[...] = self.start
        self.optimizer = make_optimizer(self.config)  # its state carries over between epochs

    def epoch(self, seed: int | None) -> float:
        order = {"shuffle": False} if seed is None else {"seed": seed}
        history = self.net.fit(
            self.X, self.Y, epochs=1, batch_size=self.config.batch_size,
            optimizer=self.optimizer, lmbda=self.config.lmbda, **order,
        )  # fmt: skip
        self.fit_seconds.append(history["time"][0])
        return history["cost"][0]

    def predict(self, X) -> np.ndarray:
        return self.net.predict(X)


class Torch(Peer):
    """Losses: A ``0.5 * ((sigmoid(z) - y)**2).sum(1).mean()``, B binary cross-entropy summed
    over the outputs, mean over the batch, C and D ``F.cross_entropy``. Nielsen's L2
    (lmbda / n) W is ``weight_decay = lmbda / n`` on the weights only, as deltaprop."""

    def build(self) -> None:
        import torch

        self.torch = torch
        torch.set_num_threads(threads())
        dtype = getattr(torch, self.config.dtype)
        hidden = {"sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU}[self.config.activation]
        self.linears = [torch.nn.Linear(*W.shape[::-1], dtype=dtype) for W in self.initial[0]]
        layers = [m for linear in self.linears for m in (linear, hidden())][:-1]
        self.model = torch.nn.Sequential(*layers)  # the output activation is in the loss
        self.X = torch.from_numpy(self.X)
        one_hot = self.config.cost != "log_likelihood"
        self.T = torch.from_numpy(self.Y if one_hot else self.labels)

    def reset(self) -> None:
        with self.torch.no_grad():
            for linear, W, b in zip(self.linears, *self.initial):
                linear.weight.copy_(self.torch.from_numpy(W))
                linear.bias.copy_(self.torch.from_numpy(b))
        weights, biases = [m.weight for m in self.linears], [m.bias for m in self.linears]
        decay = self.config.lmbda / len(self.X)
        self.optimizer = self.torch.optim.SGD(
            [{"params": weights, "weight_decay": decay}, {"params": biases, "weight_decay": 0.0}],
            lr=self.config.lr,
            momentum=self.config.momentum,
        )

    def _loss(self, z, target):
        F = self.torch.nn.functional
        if self.config.cost == "quadratic":
            return 0.5 * ((self.torch.sigmoid(z) - target) ** 2).sum(1).mean()
        if self.config.cost == "cross_entropy":
            return F.binary_cross_entropy_with_logits(z, target, reduction="none").sum(1).mean()
        return F.cross_entropy(z, target)

    def _autocast(self):
        bf16 = self.config.precision == "bfloat16"
        return self.torch.autocast("cpu", dtype=self.torch.bfloat16, enabled=bf16)

    def epoch(self, seed: int | None) -> float:
        n, B = len(self.X), self.config.batch_size
        order = epoch_order(n, seed)
        order = self.torch.arange(n) if order is None else self.torch.from_numpy(order)
        total = self.torch.zeros((), dtype=self.torch.float64)
        for start in range(0, n, B):
            rows = order[start : start + B]
            with self._autocast():
                loss = self._loss(self.model(self.X[rows]), self.T[rows])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach() * len(rows)
        return float(total) / n

    def parameters(self):
        as_numpy = lambda tensors: [t.detach().double().numpy().copy() for t in tensors]  # noqa: E731
        return as_numpy(m.weight for m in self.linears), as_numpy(m.bias for m in self.linears)

    def predict(self, X) -> np.ndarray:
        with self.torch.inference_mode(), self._autocast():
            z = self.model(self.torch.from_numpy(X)).float()
            softmax = self.config.output == "softmax"
            return (self.torch.softmax(z, dim=1) if softmax else self.torch.sigmoid(z)).numpy()


class Sklearn(Peer):
    """It has no quadratic cost: with one-hot targets (a multilabel problem) A trains with its
    sigmoid outputs and binary log-loss, B's cost. ``alpha = lmbda * B / n`` is Nielsen's L2
    (scikit-learn adds alpha W / B to the batch-mean gradient)."""

    def build(self) -> None:
        from sklearn.neural_network import MLPClassifier

        c, n = self.config, len(self.X)
        self.y = self.labels if c.output == "softmax" else self.Y.astype(np.int64)
        self.model = MLPClassifier(
            hidden_layer_sizes=c.sizes[1:-1],
            activation={"sigmoid": "logistic", "relu": "relu"}[c.activation],
            solver="adam" if c.optimizer == "adam" else "sgd",
            learning_rate_init=c.lr,
            momentum=c.momentum,
            nesterovs_momentum=False,
            batch_size=c.batch_size,
            alpha=c.lmbda * c.batch_size / n,
            random_state=0,
            tol=0.0,
            n_iter_no_change=2**31 - 1,
        )
        # The first partial_fit creates the arrays; reset() overwrites them with the start.
        with threadpool_limits(threads(), user_api="blas"):
            first = slice(c.batch_size)
            self.model.partial_fit(self.X[first], self.y[first], classes=np.arange(c.sizes[-1]))

    def reset(self) -> None:
        for coef, intercept, W, b in zip(self.model.coefs_, self.model.intercepts_, *self.initial):
            coef[...], intercept[...] = W.T, b  # coefs_ are (n_in, n_out)
        # partial_fit makes a new optimizer, with zero velocities, when there is none.
        vars(self.model).pop("_optimizer", None)

    def epoch(self, seed: int | None) -> float:
        self.model.shuffle, self.model.random_state = seed is not None, seed
        with threadpool_limits(threads(), user_api="blas"):
            self.model.partial_fit(self.X, self.y)
        return float(self.model.loss_)

    def parameters(self):
        return [coef.T.astype(np.float64) for coef in self.model.coefs_], _float64(
            self.model.intercepts_
        )

    def predict(self, X) -> np.ndarray:
        with threadpool_limits(threads(), user_api="blas"):
            return self.model.predict_proba(X)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))  # never overflows, unlike exp(-z)
    return np.where(z >= 0, 1.0, e) / (1.0 + e)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


_ACTIVATIONS = {"sigmoid": _sigmoid, "relu": lambda z: np.maximum(z, 0), "softmax": _softmax}


class Numpy(Peer):
    """The same equations as deltaprop, vectorised over a mini-batch of B rows::

    forward   Z^l = A^{l-1} (W^l)^T + b^l,  A^l = sigma(Z^l)     (A^0 = X)
    BP1       delta^L = dC/dZ^L                (a - y for cross-entropy, log-likelihood)
    BP2       delta^{l-1} = (delta^l W^l) * sigma'(Z^{l-1})
    BP3, BP4  db^l = mean of delta^l,  dW^l = (delta^l)^T A^{l-1} / B
    update    g = dW + (lmbda / n) W,  v <- mu v + g (mu > 0),  W <- W - lr v
    """

    def reset(self) -> None:
        self.weights, self.biases = ([p.copy() for p in layers] for layers in self.initial)
        self.velocity = [np.zeros_like(p) for p in self.weights + self.biases]

    def _forward(self, X: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Z^l for l = 1..L and A^l for l = 0..L, each of shape (B, n_l)."""
        zs, activations = [], [X]
        for l, (W, b) in enumerate(zip(self.weights, self.biases)):
            z = activations[-1] @ W.T  # (B, n_{l-1}) @ (n_{l-1}, n_l)
            z += b
            last = l == len(self.weights) - 1
            zs.append(z)
            sigma = _ACTIVATIONS[self.config.output if last else self.config.activation]
            activations.append(sigma(z))
        return zs, activations

    def _output_error(self, z, a, Y) -> tuple[float, np.ndarray]:
        """Summed cost of the batch and delta^L (BP1); all (B, n_L)."""
        if self.config.cost == "quadratic":  # sigmoid output
            diff = a - Y
            return 0.5 * float(np.vdot(diff, diff)), diff * a * (1.0 - a)
        if self.config.cost == "cross_entropy":  # -[y ln a + (1-y) ln(1-a)] = softplus(z) - y z
            softplus = np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))
            return float(np.sum(softplus - Y * z)), a - Y
        m = z.max(axis=1, keepdims=True)  # log-likelihood with log a = z - logsumexp(z)
        return -float(np.vdot(Y, z - (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True))))), a - Y

    def _gradients(self, X, Y) -> tuple[float, list[np.ndarray]]:
        """Summed cost and the batch-mean gradients, dW^1..dW^L then db^1..db^L."""
        zs, activations = self._forward(X)
        cost, delta = self._output_error(zs[-1], activations[-1], Y)
        L, B = len(self.weights), len(X)
        dW, db = [None] * L, [None] * L
        for l in range(L - 1, -1, -1):
            if l < L - 1:  # BP2, (B, n_{l+1}) @ (n_{l+1}, n_l); relu' is z > 0, sigmoid' a(1-a)
                a = activations[l + 1]
                derivative = zs[l] > 0 if self.config.activation == "relu" else a * (1.0 - a)
                delta = (delta @ self.weights[l + 1]) * derivative
            dW[l] = (delta.T @ activations[l]) / B  # BP4, (n_l, B) @ (B, n_{l-1})
            db[l] = delta.sum(axis=0) / B  # BP3
        return cost, dW + db

    def epoch(self, seed: int | None) -> float:
        c, n = self.config, len(self.X)
        order = np.arange(n) if seed is None else epoch_order(n, seed)
        total = 0.0
        with threadpool_limits(threads(), user_api="blas"):
            for start in range(0, n, c.batch_size):
                rows = order[start : start + c.batch_size]
                cost, gradients = self._gradients(self.X[rows], self.Y[rows])
                total += cost
                for l, W in enumerate(self.weights if c.lmbda else []):
                    gradients[l] += (c.lmbda / n) * W
                for p, g, v in zip(self.weights + self.biases, gradients, self.velocity):
                    if c.momentum:
                        v *= c.momentum
                        v += g
                        g = v
                    p -= c.lr * g
        return total / n

    def predict(self, X) -> np.ndarray:
        with threadpool_limits(threads(), user_api="blas"):
            return self._forward(X)[1][-1]


class Reference(Peer):
    """deltaprop.reference on nested lists, each epoch's rows converted once (see prepare)."""

    def build(self) -> None:
        self.lists = {}  # seed -> (X rows, Y rows) as lists, in that epoch's order

    def reset(self) -> None:
        self.weights, self.biases = ([p.tolist() for p in layers] for layers in self.initial)

    def prepare(self, seed: int | None) -> tuple[list, list]:
        """The rows in `seed`'s order as lists (call before timing: the conversion is slow)."""
        if seed not in self.lists:
            order = epoch_order(len(self.X), seed)
            order = slice(None) if order is None else order
            self.lists[seed] = self.X[order].tolist(), self.Y[order].tolist()
        return self.lists[seed]

    def epoch(self, seed: int | None) -> float:
        X, Y = self.prepare(seed)
        c = self.config
        self.weights, self.biases = reference.sgd_epoch(
            self.weights, self.biases, X, Y, batch_size=c.batch_size, lr=c.lr, lmbda=c.lmbda,
            n=len(X), **c.names,
        )  # fmt: skip
        return float("nan")  # the reference's epoch reports no cost

    def predict(self, X) -> np.ndarray:
        names = {"activation": self.config.activation, "output": self.config.output}
        return np.array(reference.predict(self.weights, self.biases, X.tolist(), **names))
