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
    activation : {"sigmoid", "tanh", "relu", "leaky_relu", "identity"}
        Hidden-layer activation.
    output : {"sigmoid", "softmax", "identity"}
        Output activation.
    cost : {"quadratic", "cross_entropy", "log_likelihood"}
        Cost function.
    dtype : {"float32", "float64"} or numpy.dtype
        Precision of the parameters; stored as a `numpy.dtype`.
    leaky_slope : float, default=0.01
        Slope of ``"leaky_relu"`` for z <= 0; any finite number.

    Raises
    ------
    TypeError
        ``sizes`` is not a sequence, a size is not an integer, or ``leaky_slope`` is not a
        real number.
    ValueError
        A size out of range, a wrong number of layers, an unknown name, a dtype other than
        float32 or float64, or a non-finite ``leaky_slope``.
    """

    _FIELDS = ("sizes", "activation", "output", "cost", "dtype", "leaky_slope")
    sizes: tuple[int, ...]
    activation: str
    output: str
    cost: str
    dtype: np.dtype
    leaky_slope: float

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str,
        output: str,
        cost: str,
        dtype: Any,
        leaky_slope: float = 0.01,
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
        check_name(activation, ACTIVATIONS, "activation")
        check_name(output, OUTPUTS, "output")
        check_name(cost, COSTS, "cost")
        dtype, leaky_slope = float_dtype(dtype), check_real(leaky_slope, "leaky_slope")
        for name, value in zip(self._FIELDS, (sizes, activation, output, cost, dtype, leaky_slope)):
            object.__setattr__(self, name, value)  # past __setattr__, which refuses

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: an Architecture is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: an Architecture is immutable")

    def __hash__(self) -> int:
        return hash(self._values())

    def __str__(self) -> str:
        return (
            f"Network({list(self.sizes)}, activation={self.activation!r}, "
            f"output={self.output!r}, cost={self.cost!r}, dtype={self.dtype.name!r})"
        )

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
            ``dtype`` (its name) and ``leaky_slope``.
        """
        return {
            "sizes": list(self.sizes),
            "activation": self.activation,
            "output": self.output,
            "cost": self.cost,
            "dtype": self.dtype.name,
            "leaky_slope": self.leaky_slope,
        }

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Architecture:
        """Build the architecture a model file's header describes.

        JSON numbers must be JSON's own types: the sizes Python ints, the slope an int or
        a float.

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
        if type(slope) not in (int, float) or not _finite(slope):
            raise ValueError(f"leaky_slope: expected a finite number, got {slope!r}")
        return cls(
            tuple(sizes),
            fields["activation"],
            fields["output"],
            fields["cost"],
            fields["dtype"],
            slope,
        )


def _finite(number: float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an int beyond float's range
        return False
