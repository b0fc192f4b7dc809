"""deltaprop: fast multilayer-perceptron training by backpropagation.

A C++ core runs the batched forward pass and the backward delta propagation
(BP1-BP4) on OpenBLAS; this package gives it a small numpy API::

    import deltaprop as dp
    X, y = dp.datasets.load_digits()
    net = dp.Network([64, 30, 10], activation="sigmoid", output="softmax",
                     cost="log_likelihood", seed=0)
    history = net.fit(X, y, epochs=10, batch_size=10, lr=0.5)
"""

import numbers

# First: the compiled module must be loaded by _loader (see there), before any other
# module of the package imports it.
from ._loader import _core

# isort: split
from . import datasets, optim, reference, schedules
from .io import ModelFormatError, load, save
from .network import ACTIVATIONS, COSTS, INITS, OUTPUTS, Network
from .training import DivergenceError

__version__ = "0.1.0"


def set_num_threads(n: int) -> None:
    """Set the number of OpenBLAS threads deltaprop's core uses (numpy's own pool is
    separate); OpenBLAS caps it at the number it was built for."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n: expected a positive integer, got {n!r}")
    _core.set_num_threads(min(int(n), 2**31 - 1))


def get_num_threads() -> int:
    """Number of OpenBLAS threads deltaprop's core uses."""
    return _core.get_num_threads()


__all__ = [
    "ACTIVATIONS",
    "COSTS",
    "INITS",
    "OUTPUTS",
    "DivergenceError",
    "ModelFormatError",
    "Network",
    "__version__",
    "datasets",
    "get_num_threads",
    "load",
    "optim",
    "reference",
    "save",
    "schedules",
    "set_num_threads",
]
