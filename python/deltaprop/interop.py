"""Networks trained elsewhere: scikit-learn's MLP and PyTorch's ``nn.Sequential``.

Each reader turns a fitted model into `Layers`: weight matrices and bias vectors in
deltaprop's layout (W^l of shape (n_l, n_{l-1})) with their activations, which
`deltaprop.Network.from_sklearn` and `deltaprop.Network.from_torch` build a network from.
The ONNX reader (`deltaprop.onnx`) gives `Layers` too. Nothing here imports scikit-learn or
PyTorch until a reader needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._architecture import ACTIVATIONS, OUTPUTS
from ._checks import FLOAT_DTYPES

__all__ = ["Layer", "Layers", "default_cost", "sklearn_layers", "torch_layers"]

# The cost a network gets when its source does not say: the one its output is made for.
_DEFAULT_COSTS = {"softmax": "log_likelihood", "sigmoid": "cross_entropy", "identity": "quadratic"}
_SKLEARN_ACTIVATIONS = {
    "identity": "identity",
    "logistic": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
    "softmax": "softmax",
}


@dataclass
class Layer:
    """One fully connected layer as a source describes it.

    Parameters
    ----------
    weights : ndarray of shape (n_out, n_in)
        W, in deltaprop's layout.
    biases : ndarray of shape (n_out,)
        b.
    activation : str
        ``"sigmoid"``, ``"tanh"``, ``"relu"``, ``"leaky_relu"``, ``"identity"`` or
        ``"softmax"``.
    where : str
        The source's name of the layer's activation (or of the layer), for error messages.
    leaky_slope : float or None, default=None
        The slope of ``"leaky_relu"``.
    """

    weights: np.ndarray
    biases: np.ndarray
    activation: str
    where: str
    leaky_slope: float | None = None


@dataclass
class Layers:
    """A chain of fully connected layers: what a network is built from.

    Parameters
    ----------
    weights : list of ndarray, W^l of shape (n_l, n_{l-1})
        One weight matrix per layer.
    biases : list of ndarray, b^l of shape (n_l,)
        One bias vector per layer.
    activation : str or tuple of str
        The hidden layers' activation (one of `deltaprop.ACTIVATIONS`), or a tuple of one
        per hidden layer where they differ.
    output : str
        The output activation (one of `deltaprop.OUTPUTS`).
    dtype : numpy.dtype
        float32 or float64: the precision the source computes in.
    leaky_slope : float or tuple of float, default=0.01
        Slope of ``"leaky_relu"`` for z <= 0, or a tuple of one per hidden layer where
        the leaky relu layers' slopes differ.
    cost : str or None, default=None
        The cost the source was trained with, when it says; None: `default_cost`.
    input_scaling : deltaprop._scaling.Scaling or None, default=None
        What the source does to its inputs before the first layer, ``(x - mean) / scale``
        (an ONNX graph's ``Sub`` and ``Div``, skl2onnx's ``Scaler``); None: nothing.
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    activation: str | tuple[str, ...]
    output: str
    dtype: np.dtype
    leaky_slope: float | tuple[float, ...] = 0.01
    cost: str | None = None
    input_scaling: Any = None

    @classmethod
    def chain(cls, layers: list[Layer], dtype: np.dtype, cost: str | None = None) -> Layers:
        """Join layers into a network's description, checking its activations.

        deltaprop networks have an activation per hidden layer (and a slope per
        ``"leaky_relu"`` layer) and a sigmoid, softmax or identity output.

        Parameters
        ----------
        layers : list of Layer
            At least one, input side first.
        dtype : numpy.dtype
            float32 or float64.
        cost : str or None, default=None
            The source's cost, if it says.

        Returns
        -------
        Layers
            With the hidden layers' activation where they share one (``"sigmoid"``, the
            default of `deltaprop.Network`, when there is no hidden layer), else a tuple of
            one per hidden layer; the slope likewise.

        Raises
        ------
        ValueError
            No layer, a layer without units or inputs, weights that do not chain, biases
            not one per unit, a NaN or infinite parameter or slope, a hidden activation
            deltaprop does not have (a softmax before the output included), or an output
            activation deltaprop does not have; the message names the layer where the
            source names it.
        """
        if not layers:
            raise ValueError("the model has no fully connected layer")
        for previous, layer in zip([None, *layers], layers):
            _check_layer(layer, None if previous is None else previous.weights.shape[0])
        *hidden, last = layers
        if last.activation not in OUTPUTS:
            raise ValueError(
                f"{last.where}: {last.activation} as the output activation; deltaprop's "
                f"outputs are {', '.join(OUTPUTS)}"
            )
        activation, slope = _hidden_activations(hidden)
        return cls(
            [layer.weights for layer in layers],
            [layer.biases for layer in layers],
            activation,
            last.activation,
            np.dtype(dtype),
            slope,
            cost,
        )


def _check_layer(layer: Layer, n_in: int | None) -> None:
    """Check one layer's shapes and values; ``n_in`` is the previous layer's units, if any."""
    W, b = layer.weights, layer.biases
    if W.ndim != 2 or 0 in W.shape:
        raise ValueError(
            f"{layer.where}: weights of shape {W.shape}; a layer has at least one unit and "
            "one input"
        )
    if n_in is not None and W.shape[1] != n_in:
        raise ValueError(
            f"{layer.where}: {W.shape[1]} inputs after a layer of {n_in} units; the layers do "
            "not chain"
        )
    if b.shape != (W.shape[0],):
        raise ValueError(f"{layer.where}: biases of shape {b.shape} for {W.shape[0]} units")
    if not (np.isfinite(W).all() and np.isfinite(b).all()):
        raise ValueError(f"{layer.where}: its weights or biases hold NaN or infinity")
    if layer.leaky_slope is not None and not np.isfinite(layer.leaky_slope):
        raise ValueError(f"{layer.where}: leaky_relu with slope {layer.leaky_slope!r}, not finite")


def _hidden_activations(hidden: list[Layer]) -> tuple[Any, Any]:
    """Give the hidden layers' activation and slope: one value where they agree, or a tuple.

    Only leaky relu layers have a slope; the others take that of the leaky relu layers
    where these agree, so that one slope stays one value.
    """
    for layer in hidden:
        if layer.activation not in ACTIVATIONS:
            raise ValueError(
                f"{layer.where}: {layer.activation} on a hidden layer; deltaprop's hidden "
                f"activations are {', '.join(ACTIVATIONS)}"
            )
    names = tuple(layer.activation for layer in hidden)
    leaky = {layer.leaky_slope for layer in hidden if layer.activation == "leaky_relu"}
    if len(leaky) <= 1:
        slope: Any = leaky.pop() if leaky else 0.01
    else:
        slope = tuple(
            layer.leaky_slope if layer.activation == "leaky_relu" else 0.01 for layer in hidden
        )
    if not names:
        return "sigmoid", slope  # Network's default: no hidden layer to say otherwise
    return names[0] if len(set(names)) == 1 else names, slope


def default_cost(output: str) -> str:
    """Return the cost an output activation is trained with unless told otherwise.

    Parameters
    ----------
    output : {"sigmoid", "softmax", "identity"}
        The output activation.

    Returns
    -------
    str
        ``"log_likelihood"`` for softmax, ``"cross_entropy"`` for sigmoid (the log-loss of
        independent outputs, as scikit-learn's and PyTorch's ``BCELoss``) and
        ``"quadratic"`` for identity.
    """
    return _DEFAULT_COSTS[output]


def _float_dtype(dtype: Any, where: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"{where}: parameters of dtype {dtype}; deltaprop computes in float32 or float64"
        )
    return dtype


# ------------------------------------------------------------------------------- scikit-learn
def sklearn_layers(estimator: Any) -> Layers:
    """Describe a fitted scikit-learn ``MLPClassifier`` or ``MLPRegressor``.

    Parameters
    ----------
    estimator : MLPClassifier or MLPRegressor
        Fitted; its ``coefs_``, ``intercepts_``, ``activation`` and ``out_activation_``
        are read (and copied).

    Returns
    -------
    Layers
        In the dtype of ``coefs_``; the cost is the estimator's loss: log-likelihood for a
        softmax output, cross-entropy for a logistic one (binary and multilabel), quadratic
        for a regressor.

    Raises
    ------
    ImportError
        scikit-learn is not installed.
    TypeError
        ``estimator`` is not an ``MLPClassifier`` or ``MLPRegressor``.
    ValueError
        It is not fitted, or uses what deltaprop has not (``loss="poisson"``).
    """
    try:
        from sklearn.neural_network import MLPClassifier, MLPRegressor
    except ImportError as error:
        raise ImportError(
            'from_sklearn needs scikit-learn: pip install "deltaprop[sklearn]"'
        ) from error
    if not isinstance(estimator, (MLPClassifier, MLPRegressor)):
        raise TypeError(
            f"estimator: expected a fitted MLPClassifier or MLPRegressor, got "
            f"{type(estimator).__name__}"
        )
    name = type(estimator).__name__
    base = MLPClassifier if isinstance(estimator, MLPClassifier) else MLPRegressor
    _refuse_overrides(estimator, base, name)
    coefs, intercepts = _fitted_parameters(estimator, name)
    out_activation = estimator.out_activation_
    if out_activation not in _SKLEARN_ACTIVATIONS:
        raise ValueError(
            f"estimator: out_activation_ {out_activation!r} (loss={estimator.loss!r}) is not "
            "supported; deltaprop's outputs are sigmoid (logistic), softmax and identity"
        )
    if len(coefs) > 1 and estimator.activation not in _SKLEARN_ACTIVATIONS:
        raise ValueError(f"estimator: activation {estimator.activation!r} is not supported")
    dtype = _float_dtype(np.asarray(coefs[0]).dtype, "estimator.coefs_")
    count = len(coefs)
    layers = []
    for l, (coef, intercept) in enumerate(zip(coefs, intercepts)):
        attribute = "activation" if l < count - 1 else "out_activation_"
        activation = getattr(estimator, attribute)
        where = f"{name}.coefs_[{l}] ({attribute} {activation!r})"
        weights = np.array(np.asarray(coef).T, dtype=dtype)
        biases = np.array(intercept, dtype=dtype)
        layers.append(Layer(weights, biases, _SKLEARN_ACTIVATIONS[activation], where))
    output = layers[-1].activation
    return Layers.chain(layers, dtype, default_cost(output) if output in OUTPUTS else None)


# What computes an MLP's output from its parameters: a subclass replacing one computes
# something else than the parameters say.
_SKLEARN_FORWARD = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "_predict",
    "_forward_pass",
    "_forward_pass_fast",
)


def _refuse_overrides(estimator: Any, base: type, name: str) -> None:
    """Refuse an estimator whose class or instance replaces how the MLP computes."""
    for method in _SKLEARN_FORWARD:
        if method in vars(estimator) or getattr(type(estimator), method, None) is not getattr(
            base, method, None
        ):
            raise ValueError(
                f"estimator: {name} replaces {base.__name__}.{method}, so it may compute "
                "something else than its coefs_ and intercepts_ say"
            )


def _fitted_parameters(estimator: Any, name: str) -> tuple[list, list]:
    """Return ``coefs_`` and ``intercepts_`` of a fitted MLP, checked as a whole."""
    fitted = ("coefs_", "intercepts_", "out_activation_")
    missing = [attribute for attribute in fitted if not hasattr(estimator, attribute)]
    if len(missing) == len(fitted):
        raise ValueError(f"estimator: this {name} is not fitted; call fit first")
    if missing:
        raise ValueError(f"estimator: this {name} is half fitted: it has no {', '.join(missing)}")
    coefs, intercepts = list(estimator.coefs_), list(estimator.intercepts_)
    if not coefs or len(coefs) != len(intercepts):
        raise ValueError(
            f"estimator: {len(coefs)} coefs_ and {len(intercepts)} intercepts_; a fitted "
            f"{name} has one of each per layer"
        )
    for l, (coef, intercept) in enumerate(zip(coefs, intercepts)):
        if np.ndim(coef) != 2 or np.shape(intercept) != np.shape(coef)[1:]:
            raise ValueError(
                f"estimator: coefs_[{l}] of shape {np.shape(coef)} and intercepts_[{l}] of "
                f"shape {np.shape(intercept)}; expected (n_in, n_out) and (n_out,)"
            )
    return coefs, intercepts


# ------------------------------------------------------------------------------------ PyTorch
_TORCH_ACTIVATIONS = {
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "ReLU": "relu",
    "LeakyReLU": "leaky_relu",
    "Softmax": "softmax",
}  # torch.nn's class names; a subclass (which may compute something else) is refused


def torch_layers(module: Any) -> Layers:
    """Describe a PyTorch ``nn.Sequential`` of ``nn.Linear`` layers and activations.

    Each ``Linear`` may be followed by one of ``Sigmoid``, ``Tanh``, ``ReLU``,
    ``LeakyReLU``, ``Softmax`` (over the last dimension) or ``Identity``; without one the
    layer is linear (``"identity"``). The parameters are copied from the ``state_dict``
    layout: ``weight`` is (out_features, in_features), as deltaprop's W. The modules are
    read in the order ``forward`` runs them, once per place: a module instance used in two
    places (one ``Sigmoid`` after two layers, a ``Linear`` tied to itself) is mapped
    in each, by what it computes there (a tied ``Linear`` becomes two layers with equal
    weights, which further training unties).

    Parameters
    ----------
    module : torch.nn.Sequential
        On any device; float32 or float64 parameters.

    Returns
    -------
    Layers
        In the parameters' dtype; no cost (PyTorch keeps the loss outside the module).

    Raises
    ------
    ImportError
        PyTorch is not installed.
    TypeError
        ``module`` is not an ``nn.Sequential``.
    ValueError
        A module that is not one of those above (named by its index and type), two
        activations in a row, an activation before the first ``Linear``, a softmax over
        another dimension, or parameters of another dtype; a forward hook or pre-hook
        (on the ``Sequential``, a module in it, or every module) or a ``forward`` replaced
        on an instance or a subclass of ``Sequential``: what runs is not what the modules
        say.
    """
    try:
        import torch
    except ImportError as error:
        raise ImportError("from_torch needs PyTorch: pip install torch") from error
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"module: expected a torch.nn.Sequential, got {type(module).__name__}")
    _refuse_global_hooks(torch)
    _refuse_changed_forward(module, f"module ({type(module).__name__})")
    if type(module).forward is not torch.nn.Sequential.forward:
        raise ValueError(
            f"module: {type(module).__name__} overrides Sequential.forward, which may compute "
            "something else than its modules in turn"
        )
    layers: list[Layer] = []
    activated = True  # no Linear yet: an activation here has no layer to follow
    # Sequential.forward runs self._modules' values in order, an instance as often as it is
    # there; named_children() would list a reused instance once only.
    for index, (key, child) in enumerate(module._modules.items()):
        where = f"module[{index}] ({key!r}: {type(child).__name__})"
        _refuse_changed_forward(child, where)
        if type(child) is torch.nn.Identity:
            continue
        if type(child) is torch.nn.Linear:  # a subclass may compute something else
            layers.append(_torch_linear(child, where, layers[0].weights.dtype if layers else None))
            activated = False
            continue
        if activated:
            _torch_activation(torch, child, where)  # a module it does not know: said first
            raise ValueError(f"{where}: an activation needs a Linear layer right before it")
        layers[-1].activation, layers[-1].where = _torch_activation(torch, child, where), where
        if layers[-1].activation == "leaky_relu":
            layers[-1].leaky_slope = float(child.negative_slope)
        activated = True
    if not layers:
        raise ValueError("module: has no Linear layer")
    return Layers.chain(layers, layers[0].weights.dtype)


def _refuse_global_hooks(torch: Any) -> None:
    """Refuse while a forward hook or pre-hook registered for every module is in place."""
    for kind, registered in (
        ("forward pre-hook", torch.nn.modules.module._global_forward_pre_hooks),
        ("forward hook", torch.nn.modules.module._global_forward_hooks),
    ):
        if registered:
            hook = next(iter(registered.values()))
            raise ValueError(
                f"module: a global {kind} ({_hook_name(hook)}) runs on every module and may "
                "change what it computes; remove it to import"
            )


def _refuse_changed_forward(module: Any, where: str) -> None:
    """Refuse a module whose forward hooks, pre-hooks or own ``forward`` change what it computes."""
    for kind, registered in (
        ("forward pre-hook", module._forward_pre_hooks),
        ("forward hook", module._forward_hooks),
    ):
        if registered:
            hook = next(iter(registered.values()))
            raise ValueError(
                f"{where} has a {kind} ({_hook_name(hook)}), which may change what it "
                "computes; remove it to import"
            )
    if "forward" in vars(module):
        raise ValueError(f"{where}: its forward is replaced on the instance")


def _hook_name(hook: Any) -> str:
    return getattr(hook, "__qualname__", None) or type(hook).__name__


def _torch_linear(child: Any, where: str, dtype: np.dtype | None) -> Layer:
    """Copy an ``nn.Linear``'s parameters as a layer, in ``dtype`` (None: the first one's)."""
    found = _torch_dtype(child.weight)
    if dtype is None:
        dtype = _float_dtype(found, where)
    elif found != dtype:
        raise ValueError(
            f"{where}: parameters of dtype {found} after {dtype}; one dtype for the whole network"
        )
    weights = _torch_array(child.weight, dtype)
    biases = (
        np.zeros(weights.shape[0], dtype) if child.bias is None else _torch_array(child.bias, dtype)
    )
    return Layer(weights, biases, "identity", where)


def _torch_activation(torch: Any, child: Any, where: str) -> str:
    """Return the deltaprop name of an activation module, or refuse it."""
    own = getattr(torch.nn, type(child).__name__, None) is type(child)
    activation = _TORCH_ACTIVATIONS.get(type(child).__name__) if own else None
    if activation is None:
        raise ValueError(
            f"{where} is not supported: only Linear, {', '.join(_TORCH_ACTIVATIONS)} and Identity"
        )
    if activation == "softmax" and child.dim not in (None, 1, -1):
        raise ValueError(
            f"{where}: softmax over dim={child.dim}; deltaprop's is over the units (dim=1 or -1)"
        )
    return activation


def _torch_dtype(parameter: Any) -> np.dtype:
    text = str(parameter.dtype).removeprefix("torch.")
    try:
        return np.dtype(text)
    except TypeError:
        return np.dtype(object)  # bfloat16 and the like: refused as not float32 or float64


def _torch_array(parameter: Any, dtype: np.dtype) -> np.ndarray:
    return np.array(parameter.detach().cpu().numpy(), dtype=dtype)
