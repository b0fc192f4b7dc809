r"""Pure-Python reference implementation of backpropagation.

This module is the readable statement of the mathematics behind deltaprop and
the oracle the C++ core is tested against.  It uses plain Python floats and
lists only, and loops over samples and over the neuron indices ``j`` and ``k``
exactly as the four fundamental equations are written in index form in
Nielsen's notation (chapter 2 of *Neural Networks and Deep Learning*):

.. math::

    z^l_j = \sum_k w^l_{jk} a^{l-1}_k + b^l_j, \qquad a^l_j = \sigma(z^l_j)

    \text{BP1:}\quad \delta^L_j = \frac{\partial C}{\partial a^L_j}\,\sigma'(z^L_j)

    \text{BP2:}\quad \delta^l_k = \Big(\sum_j w^{l+1}_{jk}\,\delta^{l+1}_j\Big)\,\sigma'(z^l_k)

    \text{BP3:}\quad \frac{\partial C}{\partial b^l_j} = \delta^l_j

    \text{BP4:}\quad \frac{\partial C}{\partial w^l_{jk}} = \delta^l_j\, a^{l-1}_k

Data layout
-----------
weights : list of L matrices
    ``weights[l]`` is a list of ``n_{l+1}`` rows, each a list of ``n_l``
    floats, i.e. W has shape (n_out, n_in) and row ``j`` holds the weights
    into neuron ``j``.  ``weights[l]`` is Nielsen's :math:`w^{l+1}`: it maps
    the activations ``a^l`` (``a^0 = x``) to the weighted inputs ``z^{l+1}``.
biases : list of L vectors
    ``biases[l]`` holds ``n_{l+1}`` floats.
X : list of samples
    Each sample is a list of ``n_0`` floats.
Y : list of targets
    Each target is a list of ``n_L`` floats (no class labels here).

Names
-----
activation (hidden layers)
    ``"sigmoid"``, ``"tanh"``, ``"relu"``, ``"leaky_relu"``, ``"identity"``: one
    name for every hidden layer, or a list of one per hidden layer (``sigma`` of
    hidden layer l is then ``activation[l - 1]``, and BP2 takes each layer's own
    ``sigma'``).  ``leaky_slope`` likewise: one number, or one per hidden layer.
output (output layer)
    ``"sigmoid"``, ``"softmax"``, ``"identity"``.
cost
    ``"quadratic"`` (any output), ``"cross_entropy"`` (sigmoid output only),
    ``"log_likelihood"`` (softmax output only).  Softmax needs at least two
    output units.

Every cost is the batch *mean* of a per-sample cost and every gradient is the
batch mean of the per-sample gradients.  All formulas are written in
numerically stable forms, so saturated units (``|z| >= 30`` and far beyond)
give finite, accurate results.
"""

from __future__ import annotations

import math

__all__ = ["cost", "deltas", "forward", "gradients", "layers", "predict", "sgd_epoch"]

_HIDDEN_ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")
_OUTPUT_ACTIVATIONS = ("sigmoid", "softmax", "identity")
_COSTS = ("quadratic", "cross_entropy", "log_likelihood")
# Costs that are only defined for one output activation.
_OUTPUT_REQUIRED_BY_COST = {"cross_entropy": "sigmoid", "log_likelihood": "softmax"}

# Beyond this |z|, cosh(z)**2 overflows a double (math.cosh raises
# OverflowError near |z| = 710), while 1 / cosh(z)**2 < 1e-300 is already 0
# for every practical purpose.
_TANH_PRIME_CUTOFF = 350.0


# ---------------------------------------------------------------------------
# Scalar activation functions sigma(z) and their derivatives sigma'(z)
# ---------------------------------------------------------------------------


def _sigmoid(z: float) -> float:
    """Logistic function 1 / (1 + exp(-z)), evaluated without overflow."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    # For z < 0, exp(-z) could overflow; the equivalent e / (1 + e) cannot.
    e = math.exp(z)
    return e / (1.0 + e)


def _sigmoid_prime(z: float) -> float:
    """Return the derivative sigma(z) * (1 - sigma(z)) of the logistic function.

    Evaluated as ``e / (1 + e)**2`` with ``e = exp(-|z|)`` (sigma' is even).
    Forming ``1 - sigma(z)`` directly would cancel catastrophically for large
    z (sigma(30) = 1 - 9.4e-14 keeps only ~3 correct digits of 1 - sigma).
    """
    e = math.exp(-abs(z))
    one_plus_e = 1.0 + e
    return e / (one_plus_e * one_plus_e)


def _tanh(z: float) -> float:
    """Hyperbolic tangent."""
    return math.tanh(z)


def _tanh_prime(z: float) -> float:
    """Return the derivative 1 / cosh(z)**2 of tanh, guarded against overflow of cosh."""
    if abs(z) > _TANH_PRIME_CUTOFF:
        return 0.0
    cosh_z = math.cosh(z)
    return 1.0 / (cosh_z * cosh_z)


def _relu(z: float) -> float:
    """Rectified linear unit max(z, 0)."""
    return z if z > 0.0 else 0.0


def _relu_prime(z: float) -> float:
    """Return the derivative of relu; the value at the kink z == 0 is taken to be 0."""
    return 1.0 if z > 0.0 else 0.0


def _leaky_relu(z: float, leaky_slope: float) -> float:
    """Leaky relu: z for z > 0, leaky_slope * z otherwise."""
    return z if z > 0.0 else leaky_slope * z


def _leaky_relu_prime(z: float, leaky_slope: float) -> float:
    """Return the derivative of leaky relu: 1 for z > 0, leaky_slope otherwise."""
    return 1.0 if z > 0.0 else leaky_slope


def _identity(z: float) -> float:
    """Identity activation a = z."""
    return z


def _identity_prime(z: float) -> float:
    """Return the derivative of the identity activation: 1."""
    return 1.0


_ELEMENTWISE_ACTIVATIONS = {
    "sigmoid": (_sigmoid, _sigmoid_prime),
    "tanh": (_tanh, _tanh_prime),
    "relu": (_relu, _relu_prime),
    "identity": (_identity, _identity_prime),
}


def _elementwise_activation(name: str, leaky_slope: float):
    """Return the pair (sigma, sigma_prime) of scalar functions for ``name``.

    Parameters
    ----------
    name : str
        An element-wise activation (any hidden activation, or a non-softmax
        output activation).
    leaky_slope : float
        Slope of ``"leaky_relu"`` for z <= 0; ignored by other activations.

    Returns
    -------
    tuple of callable
        ``sigma(z) -> float`` and ``sigma_prime(z) -> float``.
    """
    if name == "leaky_relu":
        return (
            lambda z: _leaky_relu(z, leaky_slope),
            lambda z: _leaky_relu_prime(z, leaky_slope),
        )
    return _ELEMENTWISE_ACTIVATIONS[name]


# ---------------------------------------------------------------------------
# Vector helpers for the softmax layer and the stable costs
# ---------------------------------------------------------------------------


def _softplus(x: float) -> float:
    """softplus(x) = ln(1 + exp(x)), as max(x, 0) + log1p(exp(-|x|))."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _logsumexp(z: list[float]) -> float:
    """ln(sum_k exp(z_k)), shifted by m = max z so no exp overflows."""
    m = max(z)
    total = 0.0
    for z_k in z:
        total += math.exp(z_k - m)
    return m + math.log(total)


def _softmax(z: list[float]) -> list[float]:
    """a_j = exp(z_j - m) / sum_k exp(z_k - m), with m = max z."""
    m = max(z)
    exps = [math.exp(z_j - m) for z_j in z]
    total = 0.0
    for e_k in exps:
        total += e_k
    return [e_j / total for e_j in exps]


def _activate(name: str, z: list[float], leaky_slope: float) -> list[float]:
    """Apply the activation ``name`` to the weighted inputs z of one layer."""
    if name == "softmax":
        return _softmax(z)
    sigma, _ = _elementwise_activation(name, leaky_slope)
    return [sigma(z_j) for z_j in z]


# ---------------------------------------------------------------------------
# Argument validation
# ---------------------------------------------------------------------------


def _hidden_layers(activation, leaky_slope, weights: list) -> tuple[list, list]:
    """Return one activation name and one leaky slope per hidden layer.

    ``activation`` and ``leaky_slope`` are each one value for every hidden
    layer or a list (or tuple) of one per hidden layer; a wrong length or an
    unknown name (even for a network without hidden layers) raises ValueError.
    """
    n_hidden = len(weights) - 1
    names = _one_per_hidden_layer(activation, n_hidden, "activation")
    slopes = _one_per_hidden_layer(leaky_slope, n_hidden, "leaky_slope")
    per_layer = isinstance(activation, (list, tuple))
    for l, name in enumerate(names if per_layer else [activation], start=1):
        if name not in _HIDDEN_ACTIVATIONS:
            where = f" of hidden layer {l}" if per_layer else ""
            raise ValueError(
                f"activation{where} must be one of {_HIDDEN_ACTIVATIONS}, got {name!r}"
            )
    return names, [float(slope) for slope in slopes]


def _one_per_hidden_layer(value, n_hidden: int, argument: str) -> list:
    """``value`` repeated for every hidden layer, or the list of one per layer given."""
    if not isinstance(value, (list, tuple)):
        return [value] * n_hidden
    if len(value) != n_hidden:
        raise ValueError(
            f"{argument} must be one value or one per hidden layer ({n_hidden}), "
            f"got {len(value)} values"
        )
    return list(value)


def _check_names(output: str, cost_name: str | None = None) -> None:
    """Raise ValueError for an unknown name or an invalid (output, cost) pairing."""
    if output not in _OUTPUT_ACTIVATIONS:
        raise ValueError(f"output must be one of {_OUTPUT_ACTIVATIONS}, got {output!r}")
    if cost_name is None:
        return
    if cost_name not in _COSTS:
        raise ValueError(f"cost must be one of {_COSTS}, got {cost_name!r}")
    required_output = _OUTPUT_REQUIRED_BY_COST.get(cost_name)
    if required_output is not None and output != required_output:
        raise ValueError(
            f"cost={cost_name!r} requires output={required_output!r}, got output={output!r}"
        )


def _check_network(weights: list, biases: list, output: str) -> None:
    """Raise ValueError if weights and biases do not describe a valid network."""
    if len(weights) == 0:
        raise ValueError("weights must contain at least one layer")
    if len(biases) != len(weights):
        raise ValueError(f"biases has {len(biases)} layers but weights has {len(weights)}")
    n_in = len(weights[0][0]) if len(weights[0]) > 0 else 0
    for l, (w, b) in enumerate(zip(weights, biases)):
        if len(w) == 0 or len(b) != len(w):
            raise ValueError(
                f"weights[{l}] has {len(w)} rows but biases[{l}] has {len(b)} entries "
                "(both must equal the non-zero layer width)"
            )
        for j, row in enumerate(w):
            if len(row) != n_in:
                raise ValueError(f"weights[{l}][{j}] has {len(row)} entries, expected {n_in}")
        n_in = len(w)
    if output == "softmax" and len(weights[-1]) < 2:
        raise ValueError("output='softmax' needs at least 2 output units")


def _check_samples(weights: list, X: list, Y: list | None = None) -> None:
    """Raise ValueError if X (and Y) do not match the network's layer widths."""
    if len(X) == 0:
        raise ValueError("X must contain at least one sample")
    n_in = len(weights[0][0])
    for i, x in enumerate(X):
        if len(x) != n_in:
            raise ValueError(f"X[{i}] has {len(x)} entries, expected {n_in}")
    if Y is None:
        return
    if len(Y) != len(X):
        raise ValueError(f"Y has {len(Y)} targets but X has {len(X)} samples")
    n_out = len(weights[-1])
    for i, y in enumerate(Y):
        if len(y) != n_out:
            raise ValueError(f"Y[{i}] has {len(y)} entries, expected {n_out}")


# ---------------------------------------------------------------------------
# Feedforward
# ---------------------------------------------------------------------------


def _weighted_input(w: list, b: list[float], a_prev: list[float]) -> list[float]:
    """z_j = sum_k w_jk a_k + b_j for every neuron j of one layer."""
    z = []
    for j, w_j in enumerate(w):
        total = 0.0
        for k, a_k in enumerate(a_prev):
            total += w_j[k] * a_k
        z.append(total + b[j])
    return z


def _feedforward(
    weights: list,
    biases: list,
    x: list[float],
    activations: list[str],
    output: str,
    leaky_slopes: list[float],
) -> tuple[list, list]:
    """Run one sample through the network, keeping every z and a.

    ``activations[l]`` and ``leaky_slopes[l]`` are those of the hidden layer
    that ``weights[l]`` leads to.

    Returns
    -------
    zs : list of list of float
        ``zs[l]`` is the weighted input of layer ``l + 1`` (``len(weights)``
        entries).
    activations : list of list of float
        ``activations[0]`` is x and ``activations[l + 1]`` is sigma(zs[l])
        (``len(weights) + 1`` entries).
    """
    a = [[float(x_k) for x_k in x]]
    zs = []
    output_layer = len(weights) - 1
    for l, (w, b) in enumerate(zip(weights, biases)):
        z = _weighted_input(w, b, a[-1])
        if l == output_layer:
            a_l = _activate(output, z, 0.0)  # no output is a leaky relu
        else:
            a_l = _activate(activations[l], z, leaky_slopes[l])
        zs.append(z)
        a.append(a_l)
    return zs, a


# ---------------------------------------------------------------------------
# Cost of one sample and the output error (BP1)
# ---------------------------------------------------------------------------


def _cost_of_sample(z: list[float], a: list[float], y: list[float], cost_name: str) -> float:
    """Per-sample cost C(a^L, y), written from z^L where that avoids log(0).

    Parameters
    ----------
    z, a : list of float
        Weighted input and activation of the output layer.
    y : list of float
        Target vector.
    cost_name : str
        ``"quadratic"``, ``"cross_entropy"`` or ``"log_likelihood"``.
    """
    total = 0.0
    if cost_name == "quadratic":
        # C = 1/2 sum_j (a_j - y_j)^2
        for a_j, y_j in zip(a, y):
            diff = a_j - y_j
            total += diff * diff
        return 0.5 * total
    if cost_name == "cross_entropy":
        # C = -sum_j [y_j ln a_j + (1 - y_j) ln(1 - a_j)] with a_j = sigmoid(z_j).
        # ln a = -softplus(-z) and ln(1 - a) = -softplus(z) never take log(0).
        for z_j, y_j in zip(z, y):
            total += y_j * _softplus(-z_j) + (1.0 - y_j) * _softplus(z_j)
        return total
    # log_likelihood: C = -sum_j y_j ln a_j with a = softmax(z), so that
    # ln a_j = z_j - logsumexp(z) exactly, even where a_j underflows to 0.
    log_normalizer = _logsumexp(z)
    for z_j, y_j in zip(z, y):
        total -= y_j * (z_j - log_normalizer)
    return total


def _output_error(
    z: list[float],
    a: list[float],
    y: list[float],
    output: str,
    cost_name: str,
) -> list[float]:
    """Output error delta^L_j = dC/dz^L_j of one sample (BP1).

    The (output, cost) pairs whose factors cancel analytically use the
    cancelled form, which stays exact when the outputs saturate.
    """
    if cost_name == "cross_entropy":
        # dC/da_j = (a_j - y_j) / (a_j (1 - a_j)) and sigma'(z_j) = a_j (1 - a_j).
        return [a_j - y_j for a_j, y_j in zip(a, y)]
    if cost_name == "log_likelihood":
        # dC/dz_j = sum_k y_k a_j - y_j: a - y for one-hot targets, and still
        # exact for targets whose entries do not sum to 1.
        y_sum = 0.0
        for y_k in y:
            y_sum += y_k
        return [a_j * y_sum - y_j for a_j, y_j in zip(a, y)]
    if output == "softmax":
        # Quadratic cost through softmax.  Softmax is not element-wise, so BP1
        # sums over its Jacobian da_k/dz_j = a_k ([j == k] - a_j):
        # delta_j = sum_k g_k a_k ([j == k] - a_j) with g = a - y.  Because
        # sum_k a_k = 1 this is a_j sum_{k != j} (g_j - g_k) a_k, the form used
        # here: the first one cancels catastrophically when a_j ~ 1.
        g = [a_k - y_k for a_k, y_k in zip(a, y)]
        delta = []
        for j, a_j in enumerate(a):
            total = 0.0
            for k, a_k in enumerate(a):
                if k != j:
                    total += (g[j] - g[k]) * a_k
            delta.append(a_j * total)
        return delta
    # Quadratic cost, element-wise output: delta_j = (a_j - y_j) sigma'(z_j).
    _, sigma_prime = _elementwise_activation(output, 0.0)  # no output is a leaky relu
    return [(a_j - y_j) * sigma_prime(z_j) for z_j, a_j, y_j in zip(z, a, y)]


# ---------------------------------------------------------------------------
# Backpropagation (BP2-BP4)
# ---------------------------------------------------------------------------


def _backpropagate_error(
    w_next: list,
    delta_next: list[float],
    z: list[float],
    sigma_prime,
) -> list[float]:
    """delta^l_k = (sum_j w^(l+1)_jk delta^(l+1)_j) sigma'(z^l_k)  (BP2)."""
    delta = []
    for k, z_k in enumerate(z):
        total = 0.0
        for j, delta_j in enumerate(delta_next):
            total += w_next[j][k] * delta_j
        delta.append(total * sigma_prime(z_k))
    return delta


def _weight_gradient(delta: list[float], a_prev: list[float]) -> list[list[float]]:
    """dC/dw^l_jk = delta^l_j a^(l-1)_k  (BP4)."""
    return [[delta_j * a_k for a_k in a_prev] for delta_j in delta]


def _backprop_sample(
    weights: list,
    biases: list,
    x: list[float],
    y: list[float],
    activations: list[str],
    output: str,
    cost_name: str,
    leaky_slopes: list[float],
) -> tuple[float, list, list]:
    """Cost and gradients (dW, db) of a single sample.

    Returns
    -------
    tuple
        ``(cost, dW, db)`` with ``dW[l]`` shaped like ``weights[l]`` and
        ``db[l]`` shaped like ``biases[l]``.
    """
    zs, a = _feedforward(weights, biases, x, activations, output, leaky_slopes)
    sample_cost = _cost_of_sample(zs[-1], a[-1], y, cost_name)

    n_layers = len(weights)
    dW = [None] * n_layers
    db = [None] * n_layers
    delta = _output_error(zs[-1], a[-1], y, output, cost_name)
    for l in range(n_layers - 1, -1, -1):
        if l < n_layers - 1:
            # BP2 with this hidden layer's own sigma'.
            _, sigma_prime = _elementwise_activation(activations[l], leaky_slopes[l])
            delta = _backpropagate_error(weights[l + 1], delta, zs[l], sigma_prime)
        db[l] = list(delta)  # BP3: dC/db^l_j = delta^l_j
        dW[l] = _weight_gradient(delta, a[l])  # a[l] is a^(l-1)
    return sample_cost, dW, db


def _zeros_like(nested):
    """Return nested lists shaped like ``nested``, filled with 0.0."""
    if isinstance(nested, (list, tuple)):
        return [_zeros_like(item) for item in nested]
    return 0.0


def _mean_cost(weights, biases, X, Y, activations, output, cost_name, leaky_slopes) -> float:
    """Batch mean of the per-sample cost (arguments already validated)."""
    total = 0.0
    for x, y in zip(X, Y):
        zs, a = _feedforward(weights, biases, x, activations, output, leaky_slopes)
        total += _cost_of_sample(zs[-1], a[-1], y, cost_name)
    return total / len(X)


def _mean_gradients(
    weights,
    biases,
    X,
    Y,
    activations,
    output,
    cost_name,
    leaky_slopes,
) -> tuple[float, list, list]:
    """Batch means of cost, dW and db (arguments already validated)."""
    total_cost = 0.0
    sum_dW = _zeros_like(weights)
    sum_db = _zeros_like(biases)
    for x, y in zip(X, Y):
        sample_cost, dW, db = _backprop_sample(
            weights, biases, x, y, activations, output, cost_name, leaky_slopes
        )
        total_cost += sample_cost
        for l in range(len(weights)):
            for j in range(len(dW[l])):
                sum_db[l][j] += db[l][j]
                for k in range(len(dW[l][j])):
                    sum_dW[l][j][k] += dW[l][j][k]
    m = len(X)
    mean_dW = [[[g / m for g in row] for row in layer] for layer in sum_dW]
    mean_db = [[g / m for g in layer] for layer in sum_db]
    return total_cost / m, mean_dW, mean_db


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def forward(weights, biases, x, *, activation, output, leaky_slope=0.01) -> list[float]:
    """Output activation a^L of the network for one sample.

    Parameters
    ----------
    weights : list of list of list of float
        ``weights[l]`` has shape (n_out, n_in) as nested lists.
    biases : list of list of float
        ``biases[l]`` has n_out entries.
    x : list of float
        One input sample of n_0 entries.
    activation : str or list of str
        Hidden-layer activation: ``"sigmoid"``, ``"tanh"``, ``"relu"``,
        ``"leaky_relu"`` or ``"identity"``; one for every hidden layer, or a
        list of one per hidden layer.
    output : str
        Output activation: ``"sigmoid"``, ``"softmax"`` or ``"identity"``.
    leaky_slope : float or list of float, default=0.01
        Slope of ``"leaky_relu"`` for z <= 0; one, or one per hidden layer.

    Returns
    -------
    list of float
        a^L, with n_L entries.

    Raises
    ------
    ValueError
        For an unknown activation name or inconsistent shapes.
    """
    _, activations = layers(
        weights, biases, x, activation=activation, output=output, leaky_slope=leaky_slope
    )
    return activations[-1]


def layers(weights, biases, x, *, activation, output, leaky_slope=0.01) -> tuple[list, list]:
    """Return the weighted inputs z^l and activations a^l of every layer for one sample.

    Parameters
    ----------
    weights, biases, x, activation, output, leaky_slope
        As for `forward`.

    Returns
    -------
    zs : list of list of float
        ``zs[l - 1]`` is z^l = W^l a^(l-1) + b^l, l = 1..L.
    activations : list of list of float
        ``activations[l - 1]`` is a^l = sigma(z^l), l = 1..L (x, a^0, not included).

    Raises
    ------
    ValueError
        For an unknown activation name or inconsistent shapes.
    """
    _check_names(output)
    _check_network(weights, biases, output)
    names, slopes = _hidden_layers(activation, leaky_slope, weights)
    _check_samples(weights, [x])
    zs, a = _feedforward(weights, biases, x, names, output, slopes)
    return zs, a[1:]


def deltas(weights, biases, x, y, *, activation, output, cost, leaky_slope=0.01) -> list:
    """Return every layer's error delta^l = dC_x/dz^l for one sample: BP1, then BP2 down.

    Parameters
    ----------
    weights, biases, x, activation, output, leaky_slope
        As for `forward`.
    y : list of float
        The sample's target, n_L entries.
    cost : str
        ``"quadratic"``, ``"cross_entropy"`` or ``"log_likelihood"``.

    Returns
    -------
    list of list of float
        ``deltas[l - 1]`` is delta^l, l = 1..L.

    Raises
    ------
    ValueError
        For unknown names, pairings or inconsistent shapes.
    """
    _check_names(output, cost)
    _check_network(weights, biases, output)
    names, slopes = _hidden_layers(activation, leaky_slope, weights)
    _check_samples(weights, [x], [y])
    zs, a = _feedforward(weights, biases, x, names, output, slopes)
    delta = _output_error(zs[-1], a[-1], y, output, cost)  # BP1
    found = [delta]
    for l in range(len(weights) - 2, -1, -1):
        _, sigma_prime = _elementwise_activation(names[l], slopes[l])  # this layer's own
        delta = _backpropagate_error(weights[l + 1], delta, zs[l], sigma_prime)  # BP2
        found.insert(0, delta)
    return found


def predict(weights, biases, X, *, activation, output, leaky_slope=0.01) -> list[list[float]]:
    """Output activations a^L for every sample of X.

    Parameters
    ----------
    weights : list of list of list of float
        ``weights[l]`` has shape (n_out, n_in) as nested lists (see :func:`forward`).
    biases : list of list of float
        ``biases[l]`` has n_out entries.
    X : list of list of float
        Samples, each of n_0 entries; at least one.
    activation : str or list of str
        Hidden-layer activation, one or one per hidden layer, see :func:`forward`.
    output : str
        Output activation, see :func:`forward`.
    leaky_slope : float or list of float, default=0.01
        Slope of ``"leaky_relu"`` for z <= 0, one or one per hidden layer.

    Returns
    -------
    list of list of float
        One a^L per sample, in the order of X.

    Raises
    ------
    ValueError
        For an unknown activation name or inconsistent shapes.
    """
    _check_names(output)
    _check_network(weights, biases, output)
    names, slopes = _hidden_layers(activation, leaky_slope, weights)
    _check_samples(weights, X)
    return [_feedforward(weights, biases, x, names, output, slopes)[1][-1] for x in X]


def cost(weights, biases, X, Y, *, activation, output, cost, leaky_slope=0.01) -> float:
    """Batch mean of the per-sample cost.

    Parameters
    ----------
    weights : list of list of list of float
        ``weights[l]`` has shape (n_out, n_in) as nested lists (see :func:`forward`).
    biases : list of list of float
        ``biases[l]`` has n_out entries.
    X : list of list of float
        Samples, each of n_0 entries; at least one.
    Y : list of list of float
        Targets, each of n_L entries, one per sample.
    activation : str or list of str
        Hidden-layer activation, one or one per hidden layer, see :func:`forward`.
    output : str
        Output activation, see :func:`forward`.
    cost : str
        ``"quadratic"`` (any output), ``"cross_entropy"`` (sigmoid output) or
        ``"log_likelihood"`` (softmax output).
    leaky_slope : float or list of float, default=0.01
        Slope of ``"leaky_relu"`` for z <= 0, one or one per hidden layer.

    Returns
    -------
    float
        (1/m) sum_x C_x over the m samples; no regularisation term.

    Raises
    ------
    ValueError
        For an unknown name, an invalid (output, cost) pairing or
        inconsistent shapes.
    """
    cost_name = cost  # the parameter shadows this function inside its body
    _check_names(output, cost_name)
    _check_network(weights, biases, output)
    names, slopes = _hidden_layers(activation, leaky_slope, weights)
    _check_samples(weights, X, Y)
    return _mean_cost(weights, biases, X, Y, names, output, cost_name, slopes)


def gradients(
    weights,
    biases,
    X,
    Y,
    *,
    activation,
    output,
    cost,
    leaky_slope=0.01,
) -> tuple[float, list, list]:
    """Batch-mean cost and its gradients by backpropagation (BP1-BP4).

    Parameters
    ----------
    weights : list of list of list of float
        ``weights[l]`` has shape (n_out, n_in) as nested lists (see :func:`forward`).
    biases : list of list of float
        ``biases[l]`` has n_out entries.
    X : list of list of float
        Samples, each of n_0 entries; at least one.
    Y : list of list of float
        Targets, each of n_L entries, one per sample.
    activation : str or list of str
        Hidden-layer activation, one or one per hidden layer, see :func:`forward`.
    output : str
        Output activation, see :func:`forward`.
    cost : str
        The cost, see :func:`cost`.
    leaky_slope : float or list of float, default=0.01
        Slope of ``"leaky_relu"`` for z <= 0, one or one per hidden layer.

    Returns
    -------
    mean_cost : float
        The value :func:`cost` returns for the same arguments.
    dW : list of list of list of float
        dC/dw, batch-averaged; ``dW[l]`` has the shape of ``weights[l]``.
    db : list of list of float
        dC/db, batch-averaged; ``db[l]`` has the shape of ``biases[l]``.

    Raises
    ------
    ValueError
        For an unknown name, an invalid (output, cost) pairing or
        inconsistent shapes.
    """
    cost_name = cost
    _check_names(output, cost_name)
    _check_network(weights, biases, output)
    names, slopes = _hidden_layers(activation, leaky_slope, weights)
    _check_samples(weights, X, Y)
    return _mean_gradients(weights, biases, X, Y, names, output, cost_name, slopes)


def sgd_epoch(
    weights,
    biases,
    X,
    Y,
    *,
    batch_size,
    lr,
    lmbda=0.0,
    n=None,
    activation,
    output,
    cost,
    leaky_slope=0.01,
) -> tuple[list, list]:
    """One epoch of mini-batch gradient descent with L2 weight decay.

    The mini-batches are taken in order, without shuffling:
    ``X[0:batch_size]``, ``X[batch_size:2*batch_size]``, ...; the last one may
    be smaller.  For each mini-batch, with dC/dw and dC/db averaged over it
    (Nielsen's network2.py rule; biases are not regularised)::

        w <- (1 - lr * lmbda / n) * w - lr * dC/dw
        b <- b - lr * dC/db

    Parameters
    ----------
    weights : list of list of list of float
        ``weights[l]`` has shape (n_out, n_in) as nested lists (see :func:`forward`).
    biases : list of list of float
        ``biases[l]`` has n_out entries.
    X : list of list of float
        Samples, each of n_0 entries; at least one.
    Y : list of list of float
        Targets, each of n_L entries, one per sample.
    batch_size : int
        Mini-batch size, at least 1.
    lr : float
        Learning rate.
    lmbda : float, default=0.0
        L2 regularisation strength (0 disables weight decay).
    n : int or None, default=None
        Training set size in the weight-decay factor; None: ``len(X)``.
    activation : str or list of str
        Hidden-layer activation, one or one per hidden layer, see :func:`forward`.
    output : str
        Output activation, see :func:`forward`.
    cost : str
        The cost, see :func:`cost`.
    leaky_slope : float or list of float, default=0.01
        Slope of ``"leaky_relu"`` for z <= 0, one or one per hidden layer.

    Returns
    -------
    weights, biases : list
        New nested lists; the inputs are not modified.

    Raises
    ------
    ValueError
        For an unknown name, an invalid (output, cost) pairing, inconsistent
        shapes, ``batch_size < 1`` or ``n < 1``.
    """
    cost_name = cost
    _check_names(output, cost_name)
    _check_network(weights, biases, output)
    names, slopes = _hidden_layers(activation, leaky_slope, weights)
    _check_samples(weights, X, Y)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
    if n is None:
        n = len(X)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n!r}")

    weight_decay = 1.0 - lr * lmbda / n
    new_weights = [[[float(w_jk) for w_jk in row] for row in w] for w in weights]
    new_biases = [[float(b_j) for b_j in b] for b in biases]
    for start in range(0, len(X), batch_size):
        X_batch = X[start : start + batch_size]
        Y_batch = Y[start : start + batch_size]
        _, dW, db = _mean_gradients(
            new_weights,
            new_biases,
            X_batch,
            Y_batch,
            names,
            output,
            cost_name,
            slopes,
        )
        new_weights = [
            [
                [weight_decay * w_jk - lr * g_jk for w_jk, g_jk in zip(w_j, dW_j)]
                for w_j, dW_j in zip(w, dW_l)
            ]
            for w, dW_l in zip(new_weights, dW)
        ]
        new_biases = [
            [b_j - lr * g_j for b_j, g_j in zip(b, db_l)] for b, db_l in zip(new_biases, db)
        ]
    return new_weights, new_biases
