"""deltaprop: fast multilayer-perceptron training by backpropagation.

A C++ core runs the batched forward pass and the backward delta propagation
(BP1-BP4) on OpenBLAS; this package gives it a small numpy API::

    import deltaprop as dp
    X, y = dp.datasets.load_digits()
    net = dp.Network([64, 30, 10], activation="sigmoid", output="softmax",
                     cost="log_likelihood", seed=0)
    history = net.fit(X, y, epochs=10, batch_size=10, lr=0.5)
"""

# First: the compiled module must be loaded by _loader (see there), before any other
# module of the package imports it.
from ._loader import _core

# isort: split
import importlib

from . import optim, schedules
from ._checks import check_int
from ._container import ModelFormatError
from ._precision import Bfloat16FallbackWarning, bfloat16_native
from ._version import __version__
from .network import ACTIVATIONS, COSTS, INITS, OUTPUTS, Network, load, save
from .training import DivergenceError


def set_num_threads(n: int) -> None:
    """Set the number of OpenBLAS threads deltaprop's core uses.

    numpy's own OpenBLAS is a separate library with its own pool, which this leaves alone.

    Parameters
    ----------
    n : int
        Number of threads, >= 1; OpenBLAS caps it at the number it was built for.

    Raises
    ------
    TypeError
        ``n`` is not an integer.
    ValueError
        ``n`` is less than 1.
    """
    _core.set_num_threads(min(check_int(n, "n", 1), 2**31 - 1))


def get_num_threads() -> int:
    """Return the number of OpenBLAS threads deltaprop's core uses.

    Returns
    -------
    int
        The thread count of the core's OpenBLAS pool (not numpy's).
    """
    return _core.get_num_threads()


# Loaded on first use: `datasets` alone (importlib.resources, pathlib, gzip) would more than
# double the cost of `import deltaprop`, and most programs never touch `reference`, `plot`
# or `sklearn`. Every public submodule is reachable as ``dp.<name>``; `sklearn` stays out of
# __all__ because it needs scikit-learn, and ``from deltaprop import *`` must not.
_LAZY_SUBMODULES = ("datasets", "interop", "nielsen", "onnx", "plot", "reference", "sklearn")


def __getattr__(name: str):
    """Import the submodules of _LAZY_SUBMODULES when first asked for.

    Parameters
    ----------
    name : str
        The attribute asked for.

    Returns
    -------
    module
        The submodule ``deltaprop.<name>``.

    Raises
    ------
    AttributeError
        ``name`` is not a lazily loaded submodule.
    """
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))


__all__ = [
    "ACTIVATIONS",
    "COSTS",
    "INITS",
    "OUTPUTS",
    "Bfloat16FallbackWarning",
    "DivergenceError",
    "ModelFormatError",
    "Network",
    "__version__",
    "bfloat16_native",
    "datasets",
    "get_num_threads",
    "interop",
    "load",
    "nielsen",
    "onnx",
    "optim",
    "plot",
    "reference",
    "save",
    "schedules",
    "set_num_threads",
]
