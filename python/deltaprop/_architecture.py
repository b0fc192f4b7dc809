"""What a network is, apart from its numbers: layer sizes, activations, cost and dtype.

They are checked in one place, for `Network` and for the model files that describe one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._checks import check_int, check_name, check_real, float_dtype
from ._fields import ComparedByFields

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")
OUTPUTS = ("sigmoid", "softmax", "identity")
COSTS = ("quadratic", "cross_entropy", "log_likelihood")
INITS = ("normal_scaled", "normal", "glorot", "he")

MAX_UNITS = 2**31 - 1  # BLAS's 32-bit integer
MAX_LAYERS = 1000


class Architecture(ComparedByFields):
    """The architecture of a network: everything but its parameters.

    The constructor checks each field; pairings of output and cost are the core's to refuse.
    Immutable, compared and hashed by its fields: what a frozen dataclass would be
    (`ComparedByFields`), without loading `dataclasses`.

    Parameters
    ----------
    sizes : sequence of int
        Layer sizes ``[n_0, ..., n_L]``: at least 2 layers and at most `MAX_LAYERS`, each
        of 1 to `MAX_UNITS` units. Stored as a tuple of int.
    activation : {"sigmoid", "tanh", "relu", "leaky_relu", "identity"} or sequence of them
        Hidden-layer activation: one name for every hidden layer, or one per hidden layer
        (``len(sizes) - 2`` names). Stored as the name when all hidden layers share one,
        else as a tuple; `activations` has one per hidden layer either way.
    output : {"sigmoid", "softmax", "identity"}
        Output activation.
    cost : {"quadratic", "cross_entropy", "log_likelihood"}
        Cost function.
    dtype : {"float32", "float64"} or numpy.dtype
        Precision of the parameters; stored as a `numpy.dtype`.
    leaky_slope : float or sequence of float, default=0.01
        Slope of ``"leaky_relu"`` for z <= 0; any finite number, one for every hidden layer
        or one per hidden layer. Stored as `activation` is; `leaky_slopes` has one per
        hidden layer.

    Raises
    ------
    TypeError
        ``sizes`` is not a sequence, a size is not an integer, or a ``leaky_slope`` is not
        a real number.
    ValueError
        A size out of range, a wrong number of layers, an unknown name, a dtype other than
        float32 or float64, a non-finite ``leaky_slope``, or a sequence of activations or
        slopes whose length is not the number of hidden layers.
    """

    _FIELDS = ("sizes", "activation", "output", "cost", "dtype", "leaky_slope")
    sizes: tuple[int, ...]
    activation: str | tuple[str, ...]
    output: str
    cost: str
    dtype: np.dtype
    leaky_slope: float | tuple[float, ...]

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str | Sequence[str],
        output: str,
        cost: str,
        dtype: Any,
        leaky_slope: float | Sequence[float] = 0.01,
    ) -> None:
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
            raise TypeError(f"sizes: expected a sequence of layer sizes, got {sizes!r}")
        sizes = tuple(check_int(n, "sizes", 1) for n in sizes)
        if max(sizes, default=0) > MAX_UNITS:
            raise ValueError(f"sizes: expected at most {MAX_UNITS} units a layer (BLAS's int)")
        if not 2 <= len(sizes) <= MAX_LAYERS:
            raise ValueError(
                f"sizes: expected an input, an output and at most {MAX_LAYERS - 2} hidden "
                f"layers, got {list(sizes)}"
            )
        activation = per_hidden_layer(activation, sizes, _check_activation, "activation")
        check_name(output, OUTPUTS, "output")
        check_name(cost, COSTS, "cost")
        dtype = float_dtype(dtype)
        leaky_slope = per_hidden_layer(leaky_slope, sizes, check_real, "leaky_slope")
        for name, value in zip(self._FIELDS, (sizes, activation, output, cost, dtype, leaky_slope)):
            object.__setattr__(self, name, value)  # past __setattr__, which refuses

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: an Architecture is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: an Architecture is immutable")

    def __hash__(self) -> int:
        return hash(self._values())

    def __str__(self) -> str:
        slopes = f", leaky_slope={list(self.leaky_slope)}" if self._mixed("leaky_slope") else ""
        activation = list(self.activation) if self._mixed("activation") else self.activation
        return (
            f"Network({list(self.sizes)}, activation={activation!r}, "
            f"output={self.output!r}, cost={self.cost!r}, dtype={self.dtype.name!r}{slopes})"
        )

    def _mixed(self, field: str) -> bool:
        return isinstance(getattr(self, field), tuple)

    @property
    def activations(self) -> tuple[str, ...]:
        """The activation of each hidden layer, l = 1..L-1."""
        return _one_each(self.activation, len(self.sizes) - 2)

    @property
    def leaky_slopes(self) -> tuple[float, ...]:
        """The ``"leaky_relu"`` slope of each hidden layer, l = 1..L-1."""
        return _one_each(self.leaky_slope, len(self.sizes) - 2)

    @property
    def n_params(self) -> int:
        """Number of parameters: every W^l and b^l, for l = 1..L."""
        return sum(n_in * n_out + n_out for n_in, n_out in zip(self.sizes, self.sizes[1:]))

    def fields(self) -> dict[str, Any]:
        """Describe the architecture as a model file's header holds it.

        Returns
        -------
        dict
            JSON-able: ``sizes`` (list of int), ``activation``, ``output``, ``cost``,
            ``dtype`` (its name) and ``leaky_slope``; ``activation`` and ``leaky_slope``
            are lists, one per hidden layer, where the hidden layers differ, so that the
            files of networks with one activation stay as they were.
        """
        mixed = {field: list(getattr(self, field)) for field in _PER_LAYER if self._mixed(field)}
        return {
            "sizes": list(self.sizes),
            "activation": self.activation,
            "output": self.output,
            "cost": self.cost,
            "dtype": self.dtype.name,
            "leaky_slope": self.leaky_slope,
        } | mixed

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Architecture:
        """Build the architecture a model file's header describes.

        JSON numbers must be JSON's own types: the sizes Python ints, a slope an int or a
        float. ``activation`` and ``leaky_slope`` are one value or a list of one per hidden
        layer.

        Parameters
        ----------
        fields : dict
            The header's fields, as `fields` gives them; other keys are ignored.

        Returns
        -------
        Architecture
            Checked as the constructor checks it.

        Raises
        ------
        KeyError
            A field is missing.
        TypeError, ValueError
            A field is invalid.
        """
        sizes = fields["sizes"]
        if not isinstance(sizes, list) or not all(type(n) is int for n in sizes):
            raise ValueError(f"sizes: expected a list of integers, got {sizes!r}")
        if fields["dtype"] not in ("float32", "float64"):
            raise ValueError(f"dtype: expected 'float32' or 'float64', got {fields['dtype']!r}")
        slope = fields["leaky_slope"]
        for one in slope if isinstance(slope, list) else [slope]:
            if type(one) not in (int, float) or not _finite(one):
                raise ValueError(f"leaky_slope: expected a finite number, got {one!r}")
        activation = fields["activation"]
        if not isinstance(activation, (str, list)):
            raise ValueError(f"activation: expected a name or a list of names, got {activation!r}")
        return cls(
            tuple(sizes),
            activation,
            fields["output"],
            fields["cost"],
            fields["dtype"],
            slope,
        )


_PER_LAYER = ("activation", "leaky_slope")


def per_hidden_layer(value: Any, sizes: tuple[int, ...], check: Any, argument: str) -> Any:
    """Check an argument given for every hidden layer or for each one.

    Parameters
    ----------
    value : object
        One value for every hidden layer, or a sequence (list, tuple or 1-D array) of
        one value per hidden layer.
    sizes : tuple of int
        The layer sizes: ``len(sizes) - 2`` hidden layers.
    check : callable
        ``check(one, name)`` returns one value checked, ``name`` its argument's name.
    argument : str
        The argument's name, for the error messages.

    Returns
    -------
    object
        The checked value when one is given or all are equal (a sequence of one value
        for each hidden layer included), else a tuple of one per hidden layer.

    Raises
    ------
    ValueError
        A sequence whose length is not the number of hidden layers, or a value ``check``
        refuses (a sequence's entry named by its index and hidden layer l).
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        return check(value, argument)
    n_hidden = len(sizes) - 2
    if np.ndim(value) != 1 or len(value) != n_hidden:
        got = f"{len(value)}" if np.ndim(value) == 1 else repr(value)
        raise ValueError(
            f"{argument}: expected one value or one per hidden layer ({n_hidden} for sizes "
            f"{list(sizes)}), got {got}"
        )
    checked = tuple(
        check(one, f"{argument}[{i}] (hidden layer {i + 1})") for i, one in enumerate(value)
    )
    return checked[0] if checked and len(set(checked)) == 1 else checked


def _check_activation(name: Any, argument: str) -> str:
    check_name(name, ACTIVATIONS, argument)
    return str(name)


def _one_each(value: Any, n_hidden: int) -> tuple:
    """Give a field stored as one value or a tuple as one value per hidden layer."""
    return value if isinstance(value, tuple) else (value,) * n_hidden


def _finite(number: float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an int beyond float's range
        return False
