"""Loads the compiled module ``deltaprop._core`` before anything else in the package.

Its OpenBLAS reads OPENBLAS_THREAD_TIMEOUT once, when it is loaded, and starts its own
threads then, which spin for that long before they sleep: by default ~2^28 cycles (0.1 s),
a core taken from the user's numpy right after the import. The core hands OpenBLAS's
parallel work to a team of its own (cpp/team.hpp), so those threads never get any: 2^20
cycles send them to sleep at once. A value the user set wins, and the environment is left
as it was.
"""

import os


def _import_core():
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
