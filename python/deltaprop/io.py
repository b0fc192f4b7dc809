"""Model files and training checkpoints, on top of the sealed container.

A model file holds what a saved network is, in the sealed container of
`deltaprop._container`; a checkpoint adds a training run's progress.

Header fields of a model file, next to the container's own: ``sizes``, ``activation``,
``output``, ``cost``, ``leaky_slope``, ``dtype`` ("float32" or "float64"), ``n_params``,
``optimizer`` (null, or `deltaprop.optim.Optimizer.describe`'s object), optionally
``trained_on`` (what the network was trained on: an object of short names to strings,
numbers or null, as the command line records its data set and split; files without it
load as before), for a network computing in bfloat16 ``matmul_precision`` ("bfloat16";
absent means "highest", so that files of the default precision are those of earlier
versions), for a network with an input scaling (``fit(standardize=True)``)
``input_scaling`` ("standard": the arrays ``input_mean`` and ``input_scale``, float64 of
n_0 values each, the scale > 0; absent in files of networks without one, and in those of
earlier versions) and, in a checkpoint, ``training`` (the run's progress). Arrays:
``params`` (laid out as `Network.params`), the optimizer's ``state_0``, ``state_1``..., and
in a checkpoint with early stopping ``best_params``. Everything is checked before any array
is read.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import _container, _scaling, optim
from ._architecture import Architecture
from ._container import FORMAT, FORMAT_VERSION, ModelFormatError, check_field

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFormatError", "ModelRecord", "read", "write"]

_MAX_PARAMS = 2**31  # 16 GiB of float64: a header claiming more is refused unread
_TRAINING = "training"
_TRAINED_ON = "trained_on"
_MAX_TRAINED_ON_ENTRIES = 16
_MAX_TRAINED_ON_TEXT = 4096  # characters of a name or a text value: a path fits
_BEST_PARAMS = "best_params"
_MATMUL_PRECISION = "matmul_precision"
_INPUT_SCALING = "input_scaling"
_STANDARD = "standard"  # (x - input_mean) / input_scale
_SCALING_ARRAYS = ("input_mean", "input_scale")
_OPTIONAL = {_TRAINING, _TRAINED_ON, _MATMUL_PRECISION, _INPUT_SCALING}
_FIELDS = {"sizes", "activation", "output", "cost", "leaky_slope", "dtype", "n_params", "optimizer"}
_DTYPES = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8")}


# A plain class: no == or repr is wanted (it holds arrays), and a dataclass would make
# `import deltaprop` load `dataclasses`.
class ModelRecord:
    """What a model file holds.

    Parameters
    ----------
    architecture : Architecture
        Layer sizes, activations, cost, dtype and ``leaky_slope``.
    params : ndarray of shape (n_params,)
        The parameters, laid out as `Network.params`.
    optimizer : Optimizer or None
        The optimizer, with its state; None: none.
    training : dict or None, default=None
        A checkpoint's training progress (JSON-able); None for a model file.
    best_params : ndarray of shape (n_params,) or None, default=None
        In a checkpoint with early stopping, the parameters of the best epoch.
    trained_on : dict or None, default=None
        What the network was trained on (see `check_trained_on`); None: not recorded.
    matmul_precision : {"highest", "bfloat16"}, default="highest"
        The network's `Network.matmul_precision`.
    input_scaling : Scaling or None, default=None
        The network's input scaling (``fit(standardize=True)``); None: none.
    """

    def __init__(
        self,
        architecture: Architecture,
        params: np.ndarray,
        optimizer: optim.Optimizer | None,
        training: dict[str, Any] | None = None,
        best_params: np.ndarray | None = None,
        trained_on: dict[str, Any] | None = None,
        *,
        matmul_precision: str = "highest",
        input_scaling: _scaling.Scaling | None = None,
    ) -> None:
        self.architecture, self.params, self.optimizer = architecture, params, optimizer
        self.training, self.best_params = training, best_params
        self.trained_on, self.matmul_precision = trained_on, matmul_precision
        self.input_scaling = input_scaling


def check_trained_on(value: Any) -> str | None:
    """Say what is wrong with a ``trained_on`` record, or return None if it is valid.

    A valid record is a dict of at most 16 entries, each a name (a non-empty str) to a
    str, an int, a finite float or None, names and texts of at most 4096 characters.

    Parameters
    ----------
    value : object
        The record.

    Returns
    -------
    str or None
        What is wrong, for a message; None: nothing.
    """
    if not isinstance(value, dict) or len(value) > _MAX_TRAINED_ON_ENTRIES:
        return f"an object of at most {_MAX_TRAINED_ON_ENTRIES} entries"
    for key, item in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= _MAX_TRAINED_ON_TEXT:
            return f"names of 1 to {_MAX_TRAINED_ON_TEXT} characters, not {key!r}"
        valid = (
            item is None
            or (isinstance(item, str) and len(item) <= _MAX_TRAINED_ON_TEXT)
            or (type(item) is int)
            or (type(item) is float and np.isfinite(item))
        )
        if not valid:
            return f"a text, an integer, a finite number or null for {key!r}, not {item!r}"
    return None


def write(path: str | os.PathLike, record: ModelRecord) -> None:
    """Write a model file (a checkpoint when ``record.training`` is set), atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The destination file.
    record : ModelRecord
        What to write.

    Raises
    ------
    ValueError
        Non-finite values, an optimizer that is not built in, optimizer state that does
        not fit the parameters, or an invalid ``trained_on``.
    OSError
        The file cannot be written.
    """
    params = record.params
    content = {**record.architecture.fields(), "n_params": int(params.size), "optimizer": None}
    if record.trained_on is not None:
        problem = check_trained_on(record.trained_on)
        if problem is not None:
            raise ValueError(f"trained_on: expected {problem}")
        content[_TRAINED_ON] = dict(record.trained_on)
    arrays = {"params": params}
    if record.matmul_precision != "highest":
        content[_MATMUL_PRECISION] = record.matmul_precision
    if record.optimizer is not None:
        content["optimizer"] = record.optimizer.describe()
        for i, state in enumerate(record.optimizer.state):
            if np.shape(state) != params.shape or np.asarray(state).dtype != params.dtype:
                raise ValueError(
                    f"optimizer: its state belongs to another network (state[{i}] is not "
                    f"{params.size} {params.dtype.name} values); use a new optimizer"
                )
            arrays[f"state_{i}"] = state
    if record.training is not None:
        best = record.best_params
        content[_TRAINING] = {**record.training, _BEST_PARAMS: best is not None}
        if best is not None:
            arrays[_BEST_PARAMS] = best
    if record.input_scaling is not None:  # last, in the order _members announces them
        content[_INPUT_SCALING] = _STANDARD
        arrays.update(zip(_SCALING_ARRAYS, (record.input_scaling.mean, record.input_scaling.scale)))
    _container.write(path, content, arrays)


def read(path: str | os.PathLike) -> ModelRecord:
    """Read a model file or a checkpoint: every field, size and value checked.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.

    Returns
    -------
    ModelRecord
        ``training`` is set for a checkpoint, ``best_params`` for one that kept early
        stopping's best parameters.

    Raises
    ------
    FileNotFoundError, PermissionError, IsADirectoryError
        The file cannot be opened.
    ModelFormatError
        The file is not a valid model file.
    """
    fields, arrays = _container.read(path, _members)
    architecture = Architecture.from_fields(fields)  # checked by _members already
    state = [arrays[f"state_{i}"] for i in range(optim.described_state_count(fields["optimizer"]))]
    try:
        optimizer = (
            None
            if fields["optimizer"] is None
            else optim.from_description(fields["optimizer"], state)
        )
    except ValueError as error:
        raise ModelFormatError(f"{os.fspath(path)}: {error}") from error
    training = fields.get(_TRAINING)
    if training is not None:
        training = {k: v for k, v in training.items() if k != _BEST_PARAMS}
    return ModelRecord(
        architecture,
        arrays["params"],
        optimizer,
        training,
        arrays.get(_BEST_PARAMS),
        fields.get(_TRAINED_ON),
        matmul_precision=fields.get(_MATMUL_PRECISION, "highest"),
        input_scaling=_read_scaling(path, arrays),
    )


def _read_scaling(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Any:
    """Return the input scaling of a file's arrays (sizes, finiteness checked), or None."""
    if _SCALING_ARRAYS[0] not in arrays:
        return None
    mean, scale = (arrays[name] for name in _SCALING_ARRAYS)
    try:
        return _scaling.Scaling(mean, scale)
    except ValueError as error:
        raise ModelFormatError(f"{os.fspath(path)}: {error}") from None


def _members(fields: dict[str, Any]) -> _container.MemberSpec:
    """Check a model file's fields; return the arrays they announce, in digest order."""
    present = fields.keys() - _OPTIONAL
    if present != _FIELDS:
        missing, extra = sorted(_FIELDS - present), sorted(present - _FIELDS)
        raise ModelFormatError(f"header fields: missing {missing}, unexpected {extra}")
    try:
        architecture = Architecture.from_fields(fields)
        n_state = optim.described_state_count(fields["optimizer"])
    except (ValueError, TypeError) as error:
        raise ModelFormatError(f"header: {error}") from None
    n_params = architecture.n_params
    if n_params > _MAX_PARAMS:
        raise ModelFormatError(
            f"sizes {list(architecture.sizes)[:8]} mean {n_params} parameters, over {_MAX_PARAMS}"
        )
    check_field(
        type(fields["n_params"]) is int and fields["n_params"] == n_params,
        "n_params",
        fields,
        f"{n_params}, as the sizes mean",
    )
    if _TRAINED_ON in fields:
        problem = check_trained_on(fields[_TRAINED_ON])
        check_field(problem is None, _TRAINED_ON, fields, problem or "")
    if _MATMUL_PRECISION in fields:
        check_field(
            fields[_MATMUL_PRECISION] == "bfloat16" and fields["dtype"] == "float32",
            _MATMUL_PRECISION,
            fields,
            '"bfloat16" in a float32 network (absent: "highest")',
        )
    if _INPUT_SCALING in fields:
        check_field(
            fields[_INPUT_SCALING] == _STANDARD,
            _INPUT_SCALING,
            fields,
            f'"{_STANDARD}" (absent: no input scaling)',
        )
    names = ["params"] + [f"state_{i}" for i in range(n_state)]
    if _TRAINING in fields:
        training = fields[_TRAINING]
        check_field(
            isinstance(training, dict) and isinstance(training.get(_BEST_PARAMS), bool),
            _TRAINING,
            fields,
            f"an object whose {_BEST_PARAMS!r} is true or false",
        )
        if training[_BEST_PARAMS]:
            names.append(_BEST_PARAMS)
    dtype = _DTYPES[fields["dtype"]]
    spec = {name: (dtype, n_params) for name in names}
    if _INPUT_SCALING in fields:
        spec.update(dict.fromkeys(_SCALING_ARRAYS, (_DTYPES["float64"], architecture.sizes[0])))
    return spec
