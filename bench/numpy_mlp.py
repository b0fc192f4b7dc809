"""A hand-written, vectorised NumPy multilayer perceptron: the baseline deltaprop is timed against.

It implements the same equations as `deltaprop.reference`, but over a whole mini-batch at once
with matrix products, the way a competent user would write it by hand (no per-sample loops):

    forward:  Z^l = A^{l-1} (W^l)^T + b^l,   A^l = sigma(Z^l)             (A^0 = X)
    BP1:      delta^L = dC/dZ^L               (a - y for cross_entropy and log_likelihood)
    BP2:      delta^{l-1} = (delta^l W^l) * sigma'(Z^{l-1})
    BP3:      db^l = mean over the batch of delta^l
    BP4:      dW^l = (delta^l)^T A^{l-1} / B

Rows are samples: X is (B, n_0), Z^l, A^l and delta^l are (B, n_l), W^l is (n_l, n_{l-1}) and
b^l is (n_l,). Arrays stay in the dtype they are given (float32 or float64): Python scalars do
not promote NumPy arrays. Targets Y are (B, n_L); for ``log_likelihood`` each row sums to 1
(one-hot), so that BP1 is exactly a - y.
"""

from __future__ import annotations

import numpy as np

__all__ = ["forward", "gradients", "sgd_epoch"]


# ---------------------------------------------------------------- activations sigma(z), sigma'(z)
def _sigmoid(z: np.ndarray) -> np.ndarray:
    # exp(-|z|) never overflows (1 / (1 + exp(-z)) does for z < -88 in float32, and the
    # overflow warning is an error under the project's pytest settings).
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0, e) / (1.0 + e)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _activate(name: str, z: np.ndarray, leaky_slope: float) -> np.ndarray:
    if name == "sigmoid":
        return _sigmoid(z)
    if name == "softmax":
        return _softmax(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, leaky_slope * z)
    if name == "identity":
        return z
    raise ValueError(f"unknown activation {name!r}")


def _derivative(name: str, z: np.ndarray, a: np.ndarray, leaky_slope: float) -> np.ndarray:
    """sigma'(z) of an element-wise activation, given z and a = sigma(z)."""
    if name == "sigmoid":
        # The textbook a (1 - a): 1 - a loses relative precision for large z, but sigma' is
        # then below 1e-8 and its absolute error stays at the level of the rounding unit.
        return a * (1.0 - a)
    if name == "tanh":
        return 1.0 - a * a
    if name == "relu":
        return z > 0
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, leaky_slope).astype(z.dtype)
    if name == "identity":
        return np.ones_like(z)
    raise ValueError(f"no element-wise derivative for activation {name!r}")


def _softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)) without overflow."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


# ---------------------------------------------------------------- cost and output error (BP1)
def _cost_and_output_error(
    z: np.ndarray, a: np.ndarray, Y: np.ndarray, output: str, cost: str, leaky_slope: float
) -> tuple[float, np.ndarray]:
    """Summed cost of the batch and delta^L = dC/dz^L; z, a, Y and delta^L are (B, n_L)."""
    if cost == "quadratic":
        diff = a - Y
        total = 0.5 * float(np.vdot(diff, diff))
        if output == "softmax":
            # Softmax is not element-wise: delta_j = a_j (g_j - sum_k g_k a_k) with g = a - y.
            return total, a * (diff - (diff * a).sum(axis=1, keepdims=True))
        return total, diff * _derivative(output, z, a, leaky_slope)
    if cost == "cross_entropy":
        if output != "sigmoid":
            raise ValueError("cost='cross_entropy' needs output='sigmoid'")
        # -[y ln a + (1-y) ln(1-a)] = y softplus(-z) + (1-y) softplus(z) = softplus(z) - y z.
        total = float(np.sum(_softplus(z) - Y * z))
        return total, a - Y
    if cost == "log_likelihood":
        if output != "softmax":
            raise ValueError("cost='log_likelihood' needs output='softmax'")
        # -sum_j y_j ln a_j with ln a_j = z_j - logsumexp(z): no log(0) when a_j underflows.
        m = z.max(axis=1, keepdims=True)
        log_a = z - (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))
        return -float(np.vdot(Y, log_a)), a - Y
    raise ValueError(f"unknown cost {cost!r}")


# ---------------------------------------------------------------- forward, backward, SGD
def forward(
    weights: list[np.ndarray],
    biases: list[np.ndarray],
    X: np.ndarray,
    activation: str,
    output: str,
    leaky_slope: float = 0.01,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Weighted inputs and activations of every layer for the batch.

    Parameters
    ----------
    weights : list of ndarray, W^l of shape (n_l, n_{l-1})
    biases : list of ndarray, b^l of shape (n_l,)
    X : ndarray of shape (B, n_0)

    Returns
    -------
    zs : list of ndarray, Z^l of shape (B, n_l) for l = 1..L
    activations : list of ndarray, A^l of shape (B, n_l) for l = 0..L (A^0 = X)
    """
    zs, activations = [], [X]
    last = len(weights) - 1
    for l, (W, b) in enumerate(zip(weights, biases)):
        z = activations[-1] @ W.T  # (B, n_{l-1}) @ (n_{l-1}, n_l) -> (B, n_l)
        z += b
        zs.append(z)
        activations.append(_activate(output if l == last else activation, z, leaky_slope))
    return zs, activations


def gradients(
    weights: list[np.ndarray],
    biases: list[np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    activation: str,
    output: str,
    cost: str,
    leaky_slope: float = 0.01,
) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """Batch-mean cost and its gradients by backpropagation.

    Parameters
    ----------
    weights : list of ndarray, W^l of shape (n_l, n_{l-1})
    biases : list of ndarray, b^l of shape (n_l,)
    X : ndarray of shape (B, n_0)
    Y : ndarray of shape (B, n_L)
        Targets (one-hot rows for ``log_likelihood``).

    Returns
    -------
    cost : float
        Mean cost of the batch, without a regularisation term.
    dW : list of ndarray, dC/dW^l of shape (n_l, n_{l-1}), averaged over the batch
    db : list of ndarray, dC/db^l of shape (n_l,), averaged over the batch
    """
    B = X.shape[0]
    zs, activations = forward(weights, biases, X, activation, output, leaky_slope)
    total, delta = _cost_and_output_error(zs[-1], activations[-1], Y, output, cost, leaky_slope)
    L = len(weights)
    dW, db = [None] * L, [None] * L
    for l in range(L - 1, -1, -1):
        if l < L - 1:
            # BP2: (B, n_{l+1}) @ (n_{l+1}, n_l) -> (B, n_l), times sigma'(Z^l).
            delta = (delta @ weights[l + 1]) * _derivative(
                activation, zs[l], activations[l + 1], leaky_slope
            )
        dW[l] = (delta.T @ activations[l]) / B  # BP4: (n_l, B) @ (B, n_{l-1})
        db[l] = delta.sum(axis=0) / B  # BP3
    return total / B, dW, db


def sgd_epoch(
    weights: list[np.ndarray],
    biases: list[np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    order: np.ndarray | None,
    batch_size: int,
    lr: float,
    lmbda: float,
    n: int,
    activation: str,
    output: str,
    cost: str,
    leaky_slope: float = 0.01,
    momentum: float = 0.0,
    velocity: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
) -> float:
    """One epoch of mini-batch SGD with L2 weight decay, updating weights and biases in place.

    Rows are visited in ``order`` (None: storage order) in mini-batches of ``batch_size`` (the
    last may be smaller). Per batch, with gradients averaged over it (network2.py's rule):
    W <- (1 - lr*lmbda/n) W - lr dC/dW,  b <- b - lr dC/db.
    With ``momentum`` mu > 0, heavy-ball momentum as torch.optim.SGD and deltaprop's
    ``"momentum"`` optimizer: g = dC/dW + (lmbda/n) W (dC/db for b), v <- mu v + g, w <- w - lr v.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_0)
    Y : ndarray of shape (n_samples, n_L)
    order : ndarray of int of shape (n_samples,) or None
    velocity : (vW, vb), lists shaped like weights and biases, optional
        The momentum state, updated in place; None starts from zeros (and loses it).

    Returns
    -------
    float
        Mean cost of the batches as they were seen during the epoch.
    """
    n_samples = X.shape[0]
    decay = 1.0 - lr * lmbda / n
    if momentum > 0 and velocity is None:
        velocity = [np.zeros_like(W) for W in weights], [np.zeros_like(b) for b in biases]
    total = 0.0
    for start in range(0, n_samples, batch_size):
        if order is None:
            X_batch, Y_batch = X[start : start + batch_size], Y[start : start + batch_size]
        else:
            rows = order[start : start + batch_size]
            X_batch, Y_batch = X[rows], Y[rows]
        batch_cost, dW, db = gradients(
            weights, biases, X_batch, Y_batch, activation, output, cost, leaky_slope
        )
        total += batch_cost * X_batch.shape[0]
        if momentum > 0:
            for W, b, dW_l, db_l, vW, vb in zip(weights, biases, dW, db, *velocity):
                if lmbda != 0.0:
                    dW_l += (lmbda / n) * W
                vW *= momentum
                vW += dW_l
                vb *= momentum
                vb += db_l
                W -= lr * vW
                b -= lr * vb
            continue
        for W, b, dW_l, db_l in zip(weights, biases, dW, db):
            if decay != 1.0:
                W *= decay
            W -= lr * dW_l
            b -= lr * db_l
    return total / n_samples
