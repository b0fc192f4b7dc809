"""Type stub of the private compiled module (cpp/bindings.cpp).

Every array must already be C-contiguous, aligned and of the class's dtype
(float32 for Mlp32, float64 for Mlp64); nothing is converted. X is such an array or
a deltaprop._sparse.SparseRows (CSR rows, data of the class's dtype). Written arrays
must not share memory with any other argument. tests/test_core_stub.py checks that
this stub and the compiled module declare the same names and parameters.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ._sparse import SparseRows

Inputs = npt.NDArray | SparseRows

class _Mlp:
    def __init__(
        self,
        sizes: Sequence[int],
        activations: Sequence[str],
        output: str,
        cost: str,
        leaky_slopes: Sequence[float],
    ) -> None: ...
    @property
    def sizes(self) -> list[int]: ...
    @property
    def activations(self) -> list[str]: ...
    @property
    def output(self) -> str: ...
    @property
    def cost_name(self) -> str: ...
    @property
    def leaky_slopes(self) -> list[float]: ...
    @property
    def matmul_precision(self) -> str: ...
    @matmul_precision.setter
    def matmul_precision(self, name: str) -> None: ...
    @property
    def n_params(self) -> int: ...
    @property
    def diagnostics_size(self) -> int: ...
    def predict(self, params: npt.NDArray, X: Inputs, out: npt.NDArray) -> None: ...
    def cost(self, params: npt.NDArray, X: Inputs, Y: npt.NDArray) -> float: ...
    def layers(
        self,
        params: npt.NDArray,
        X: Inputs,
        Y: npt.NDArray | None,
        z_out: npt.NDArray,
        a_out: npt.NDArray,
        delta_out: npt.NDArray | None,
    ) -> None: ...
    def gradients(
        self, params: npt.NDArray, X: Inputs, Y: npt.NDArray, grads: npt.NDArray
    ) -> float: ...
    def objective(
        self,
        params: npt.NDArray,
        X: Inputs,
        Y: npt.NDArray,
        sample_weight: npt.NDArray | None,
        l2: float,
        l1: float,
        grads: npt.NDArray,
    ) -> float:
        """Full-batch objective (mean cost + l2/2 ||W||^2 + l1 ||W||_1); grads <- gradient."""
    def regularise(self, params: npt.NDArray, l2: float, l1: float, grads: npt.NDArray) -> float:
        """Return l2/2 ||W||^2 + l1 ||W||_1 over the weights; grads += its gradient."""
    def train(
        self,
        params: npt.NDArray,
        state: list[npt.NDArray],
        step: npt.NDArray[np.int64],
        X: Inputs,
        Y: npt.NDArray,
        sample_weight: npt.NDArray | None,
        order: npt.NDArray[np.int64] | None,
        settings: TrainSettings,
        shares: npt.NDArray[np.int64] | None = None,
        reduction: object | None = None,
        diagnostics: npt.NDArray[np.float64] | None = None,
    ) -> tuple[float, float, int, int]:
        """Train; return (summed cost, summed weight, diverged batch or -1, stopped or -1).

        params, state and step are updated in place, as ``settings`` say. With ``shares``
        (3, n_batches) of this process's rows begin, end and position in each global batch
        and a ``reduction``, each batch calls ``reduction.reduce_statuses(statuses)``
        (REDUCTION_TAIL,) and ``reduction.reduce(values)`` on buckets of layers of
        ``reduction.bucket_bytes`` or more, from the top down, to sum them over the
        processes in place; ``reduction.lead``: this process adds the state every process
        shares. With ``diagnostics`` (float64, ``diagnostics_size``), each batch adds its
        measures (see cpp/diagnostics.hpp).
        """

class TrainSettings:
    """The options of a call of train: keyword arguments only, read-only fields."""

    def __init__(self, **kwargs: object) -> None:
        """One keyword per field below; batch_size and rule are required."""
    @property
    def batch_size(self) -> int: ...
    @property
    def rule(self) -> UpdateRule: ...
    @property
    def dropout(self) -> float: ...
    @property
    def seed(self) -> int: ...
    @property
    def first_batch(self) -> int: ...

class UpdateRule:
    def __init__(
        self,
        method: str,
        lr: float,
        momentum: float = 0.0,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        l2: float = 0.0,
        l1: float = 0.0,
        decoupled_decay: float = 0.0,
        eta_minus: float = 0.5,
        eta_plus: float = 1.2,
        step_min: float = 1e-6,
        step_max: float = 50.0,
    ) -> None: ...
    @property
    def lr(self) -> float: ...
    @property
    def l2(self) -> float: ...
    @property
    def l1(self) -> float: ...

class Mlp32(_Mlp): ...
class Mlp64(_Mlp): ...

REDUCTION_TAIL: int

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def load_onednn(path: str) -> None: ...
def onednn_loaded() -> bool: ...
def bfloat16_native() -> bool: ...
def bfloat16_bits(values: np.ndarray, instructions: str) -> np.ndarray: ...
def force_bfloat16_fallback(forced: bool) -> None: ...
def all_finite(values: np.ndarray) -> bool: ...
