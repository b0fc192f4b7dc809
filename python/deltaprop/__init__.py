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
import os


def _import_core():
    """Import the compiled module. Its OpenBLAS reads OPENBLAS_THREAD_TIMEOUT once, when
    it is loaded: by default idle OpenBLAS threads spin for ~2^28 cycles (0.1 s) after each
    call, stealing cores from the user's numpy between deltaprop's calls. 2^20 cycles keep
    them spinning between the GEMMs of a training run only. A value the user set wins;
    the environment is left as it was."""
    user_value = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
    if user_value is None:
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = "20"
    try:
        from . import _core
    except ImportError as error:  # pragma: no cover - only without a build
        raise ImportError(
            "deltaprop's compiled module _core could not be imported. Install the package "
            "(`pip install .` from the source tree builds it with CMake and OpenBLAS) rather "
            f"than importing it from the source folder. The error was: {error}"
        ) from error
    finally:
        if user_value is None:
            del os.environ["OPENBLAS_THREAD_TIMEOUT"]
    return _core


_core = _import_core()

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
