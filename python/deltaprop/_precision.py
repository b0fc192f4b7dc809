"""The precision of the core's matrix products: ``"highest"`` or ``"bfloat16"``.

``"bfloat16"`` (float32 networks) rounds both operands of every GEMM of the forward pass,
BP2 and BP4 to bfloat16 (8 bits of mantissa) and accumulates in float32, as PyTorch's
autocast does; parameters, optimizer state, biases, costs and element-wise passes stay
float32. oneDNN (``pip install "deltaprop[bf16]"``: PyPI's ``onednn-cpu-gomp``) runs those
products natively where the CPU multiplies bfloat16 (AVX512_BF16 or AMX). Elsewhere, or
for a model file read where oneDNN is missing, a fallback gives the same numbers (the
operands rounded alike, products exact in float32) through OpenBLAS, with no speed gained.
"""

from __future__ import annotations

import functools
import warnings

from ._loader import _core

__all__ = [
    "MATMUL_PRECISIONS",
    "Bfloat16FallbackWarning",
    "bfloat16_native",
    "check_matmul_precision",
    "prepare",
]

MATMUL_PRECISIONS = ("highest", "bfloat16")
_DISTRIBUTION = "onednn-cpu-gomp"
_LIBRARY = "libdnnl.so.3"
_EXTRA_HINT = 'pip install "deltaprop[bf16]"'


class Bfloat16FallbackWarning(UserWarning):
    """bfloat16 products run through the fallback: the same numbers, no speed gained."""


_warned = False


def _library_path() -> str | None:
    """Return the path of oneDNN's library from its PyPI distribution, or None."""
    from importlib import metadata  # on first use: it would slow `import deltaprop`

    try:
        files = metadata.files(_DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == _LIBRARY:
            return str(file.locate())
    return None


@functools.cache  # the distribution's files are searched, and a broken install named, once
def _load_onednn() -> bool:
    """Open oneDNN once if it is installed; return whether it is open."""
    if not _core.onednn_loaded():
        path = _library_path()
        if path is None:
            return False
        try:
            _core.load_onednn(path)
        except RuntimeError as error:  # a broken install: its reason, then the fallback
            warnings.warn(f"oneDNN could not be opened ({error})", RuntimeWarning, stacklevel=3)
            return False
    return True


def bfloat16_native() -> bool:
    """Return whether ``matmul_precision="bfloat16"`` runs natively (fast) here.

    True when oneDNN is installed (``pip install "deltaprop[bf16]"``) and the CPU multiplies
    bfloat16 in hardware (AVX512_BF16 or AMX). False: bfloat16 networks compute the same
    numbers through a fallback, at float32's speed or below.

    Returns
    -------
    bool
        Whether bfloat16 products run in oneDNN's native kernels.
    """
    return _load_onednn() and _core.bfloat16_native()


def check_matmul_precision(value: object, name: str = "matmul_precision") -> str:
    """Return ``value`` if it is a matmul precision's name, else raise naming ``name``."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected one of {MATMUL_PRECISIONS}, got {type(value).__name__}")
    if value not in MATMUL_PRECISIONS:
        raise ValueError(f"{name}: expected one of {MATMUL_PRECISIONS}, got {value!r}")
    return value


def prepare(precision: str, *, asked: bool) -> None:
    """Make ``precision`` ready to run: oneDNN opened for bfloat16, or one warning.

    Parameters
    ----------
    precision : {"highest", "bfloat16"}
        The precision a network is about to use.
    asked : bool
        True when the user asks for it (a constructor, the attribute, an estimator, the
        command line): without oneDNN installed that is an ImportError naming the extra.
        False for a model file's saved precision, which then runs through the fallback.

    Raises
    ------
    ImportError
        ``asked`` and oneDNN is not installed.
    """
    if precision != "bfloat16":
        return
    installed = _load_onednn()
    if installed and _core.bfloat16_native():
        return
    if asked and not installed:
        raise ImportError(
            f"matmul_precision='bfloat16' needs oneDNN: {_EXTRA_HINT} (PyPI's {_DISTRIBUTION})"
        )
    _warn_fallback_once(installed)


def _warn_fallback_once(installed: bool) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    reason = (
        "this CPU has no native bfloat16 products (AVX512_BF16 or AMX)"
        if installed
        else f"oneDNN is not installed ({_EXTRA_HINT})"
    )
    warnings.warn(
        f"matmul_precision='bfloat16' runs through its fallback: {reason}; the numbers are "
        "bfloat16's, the speed is float32's at best",
        Bfloat16FallbackWarning,
        stacklevel=4,
    )
