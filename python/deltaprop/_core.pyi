"""Type stub of the private compiled module (cpp/bindings.cpp).

Every array must already be C-contiguous, aligned and of the class's dtype
(float32 for Mlp32, float64 for Mlp64); nothing is converted.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

class _Mlp:
    def __init__(
        self,
        sizes: Sequence[int],
        activation: str,
        output: str,
        cost: str,
        leaky_slope: float = 0.01,
    ) -> None: ...
    @property
    def sizes(self) -> list[int]: ...
    @property
    def activation(self) -> str: ...
    @property
    def output(self) -> str: ...
    @property
    def cost_name(self) -> str: ...
    @property
    def leaky_slope(self) -> float: ...
    @property
    def n_params(self) -> int: ...
    def predict(self, params: npt.NDArray, X: npt.NDArray, out: npt.NDArray) -> None: ...
    def cost(self, params: npt.NDArray, X: npt.NDArray, Y: npt.NDArray) -> float: ...
    def gradients(
        self, params: npt.NDArray, X: npt.NDArray, Y: npt.NDArray, grads: npt.NDArray
    ) -> float: ...
    def sgd_step(
        self,
        params: npt.NDArray,
        X: npt.NDArray,
        Y: npt.NDArray,
        lr: float,
        lmbda: float,
        n_total: int,
    ) -> float: ...
    def sgd_epoch(
        self,
        params: npt.NDArray,
        X: npt.NDArray,
        Y: npt.NDArray,
        order: npt.NDArray[np.int64] | None,
        batch_size: int,
        lr: float,
        lmbda: float,
        n_total: int,
    ) -> float: ...

class Mlp32(_Mlp): ...
class Mlp64(_Mlp): ...

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
