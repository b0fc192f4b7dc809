"""Model files: save a `Network` with its optimizer state, and load it back.

A model file (format version 1) is an uncompressed ``.npz`` archive, as ``numpy.savez``
writes it, holding only plain numeric ``.npy`` members:

- ``header``: 1-D uint8, the UTF-8 bytes of a canonical JSON object (sorted keys, no
  whitespace, ASCII): ``format`` ("deltaprop-model"), ``format_version`` (1),
  ``deltaprop_version``, ``sizes``, ``activation``, ``output``, ``cost``, ``leaky_slope``,
  ``dtype`` ("float32" or "float64"), ``n_params``, ``optimizer`` (null, or an object with
  ``name``, ``hyperparameters``, ``step`` and ``n_state``) and ``sha256``.
- ``params``: little-endian float of shape (n_params,), laid out as `Network.params`.
- ``state_0``, ``state_1``: the optimizer's state arrays, as many as its ``n_state``.

``sha256`` is the digest of the header's canonical JSON without the ``sha256`` key, then of
the bytes of ``params`` and of each state array in order. Loading checks every field, every
member's npy header and size before reading its data, the digest, and that every value is
finite; nothing in the file is ever executed (no pickles).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import json
import math
import os
import reprlib
import stat
import struct
import tempfile
import zipfile
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from . import optim
from .network import ACTIVATIONS, COSTS, OUTPUTS, Network

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModelFormatError",
    "load",
    "load_checkpoint",
    "save",
    "save_checkpoint",
]

FORMAT = "deltaprop-model"
FORMAT_VERSION = 1

_MAX_HEADER_BYTES = 1 << 20  # the JSON header is a few hundred bytes
_MAX_NPY_HEADER_BYTES = 4096  # numpy writes 128
_MAX_LAYERS = 1000
_MAX_UNITS = 2**31 - 1  # BLAS's 32-bit blasint
_MAX_PARAMS = 2**31  # 16 GiB of float64: a header claiming more is refused unread
_MAX_STEP = 2**63 - 1  # the core's int64 step count
_DTYPES = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8")}
_FIELDS = {
    "format",
    "format_version",
    "deltaprop_version",
    "sizes",
    "activation",
    "output",
    "cost",
    "leaky_slope",
    "dtype",
    "n_params",
    "optimizer",
    "sha256",
}
# A checkpoint (see `save_checkpoint`) adds the training progress, and with it possibly
# the early-stopping best parameters as one more member.
_TRAINING_FIELD = "training"
_BEST_PARAMS = "best_params"
_OPTIMIZER_FIELDS = {"name", "hyperparameters", "step", "n_state"}
# What zipfile, the npy header parser and the JSON decoder raise on damaged input.
_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    RecursionError,
    RuntimeError,
    NotImplementedError,
    struct.error,
)


class ModelFormatError(ValueError):
    """A file is not a valid deltaprop model file.

    Raised by `load` for anything other than a missing file: not a zip archive, a truncated
    or damaged file, a missing, extra or malformed member, a header field of the wrong type
    or out of range, a size that disagrees with the architecture, a failed checksum or a
    non-finite value. The message names the file and the problem.
    """


# ---------------------------------------------------------------------------- save
def save(net: Network, path: str | os.PathLike) -> None:
    """Save a network, with its optimizer and that optimizer's state, to one file.

    The file is written to a temporary file in the same directory, flushed to disk and then
    renamed over ``path``, so ``path`` always holds either its old content or the complete
    new model, even if the process dies midway. Nothing is appended to the name.

    Parameters
    ----------
    net : Network
        The network; its parameters and optimizer state must be finite.
    path : str or os.PathLike
        Destination file (``.npz`` by convention).

    Raises
    ------
    TypeError
        ``net`` is not a `Network`.
    ValueError
        The network cannot be saved: non-finite values, or an optimizer that is not one of
        the built-in ones or whose state does not fit the network.
    """
    header, arrays = _serialise(net)
    _write_atomically(os.fspath(path), lambda file: _write_npz(file, header, arrays))


def save_checkpoint(
    net: Network,
    path: str | os.PathLike,
    training: dict[str, Any],
    best_params: np.ndarray | None = None,
) -> None:
    """Save a network as `save` does, with the progress of a training run (a JSON-able
    dict) and optionally the early-stopping best parameters, for `load_checkpoint`."""
    header, arrays = _serialise(net, training, best_params)
    _write_atomically(os.fspath(path), lambda file: _write_npz(file, header, arrays))


def load_checkpoint(
    path: str | os.PathLike,
) -> tuple[Network, dict[str, Any], np.ndarray | None]:
    """(network, training progress, best parameters or None) of a checkpoint; the same
    checks as `load`, and ModelFormatError for a model file that is not a checkpoint."""
    name = os.fspath(path)
    with open(name, "rb") as file, _errors_naming(name):
        fields, arrays = _read(file)
        if _TRAINING_FIELD not in fields:
            raise ModelFormatError("a model file, not a training checkpoint")
        training = dict(fields[_TRAINING_FIELD])
        best = arrays.pop() if training.pop(_BEST_PARAMS) else None
        return _build(fields, arrays), training, best


@contextlib.contextmanager
def _errors_naming(name: str):
    """Every failure to read a model file as one ModelFormatError naming the file (the
    file is open already: failing to open it is no format error)."""
    try:
        yield
    except ModelFormatError as error:
        raise ModelFormatError(f"{name}: {error}") from error.__cause__
    except _READ_ERRORS as error:
        raise ModelFormatError(
            f"{name}: not a readable deltaprop model file ({type(error).__name__}: {error})"
        ) from error


def _serialise(
    net: Network, training: dict[str, Any] | None = None, best_params: np.ndarray | None = None
) -> tuple[bytes, dict[str, np.ndarray]]:
    """(header bytes, {member name: little-endian array}) for a network, and for a
    checkpoint its training progress and early-stopping best parameters."""
    from . import __version__

    if not isinstance(net, Network):
        raise TypeError(f"net: expected a Network, got {type(net).__name__}")
    params = _finite_array(net.params, "params")
    optimizer, state = _describe_optimizer(net.optimizer, net)
    fields = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "deltaprop_version": __version__,
        "sizes": list(net.sizes),
        "activation": net.activation,
        "output": net.output,
        "cost": net.cost_name,
        "leaky_slope": float(net.leaky_slope),
        "dtype": net.dtype.name,
        "n_params": int(params.size),
        "optimizer": optimizer,
    }
    arrays = {"params": params, **{f"state_{i}": s for i, s in enumerate(state)}}
    if training is not None:
        fields[_TRAINING_FIELD] = {**training, _BEST_PARAMS: best_params is not None}
        if best_params is not None:
            arrays[_BEST_PARAMS] = _finite_array(best_params, _BEST_PARAMS)
    fields["sha256"] = _digest(fields, arrays.values())
    return _canonical(fields), arrays


def _describe_optimizer(opt: optim.Optimizer | None, net: Network):
    """(header entry or None, little-endian state arrays) of a network's optimizer."""
    if opt is None:
        return None, []
    if type(opt) is not optim._BY_NAME.get(getattr(opt, "name", None)):
        raise ValueError(
            f"optimizer: only the built-in optimizers ({', '.join(optim._BY_NAME)}) can be "
            f"saved, got {type(opt).__name__}"
        )
    if len(opt.state) not in (0, opt.n_state):
        raise ValueError(f"optimizer: expected 0 or {opt.n_state} state arrays")
    state = []
    for i, array in enumerate(opt.state):
        if np.shape(array) != net.params.shape or np.asarray(array).dtype != net.dtype:
            raise ValueError(
                f"optimizer: its state belongs to another network (state[{i}] is not "
                f"{net.params.size} {net.dtype.name} values); use a new optimizer"
            )
        state.append(_finite_array(array, f"optimizer state[{i}]"))
    step = opt.step
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"optimizer: step must be a non-negative integer, got {step!r}")
    hyperparameters = {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in opt.hyperparameters().items()
    }
    entry = {
        "name": opt.name,
        "hyperparameters": hyperparameters,
        "step": int(step),
        "n_state": len(state),
    }
    return entry, state


def _finite_array(array: np.ndarray, what: str) -> np.ndarray:
    """The array, little-endian and contiguous (a view when it already is), if finite."""
    array = np.ascontiguousarray(array, dtype=_little_endian(np.asarray(array).dtype))
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: contains NaN or infinity; such a model cannot be saved")
    return array


def _little_endian(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder("<")


def _canonical(fields: dict[str, Any]) -> bytes:
    """The one JSON text of a header: the checksum depends on it, and loading demands it."""
    text = json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return text.encode("ascii")


def _digest(fields: dict[str, Any], arrays) -> str:
    """SHA-256 of the header without its ``sha256`` key, then of each array's bytes."""
    hasher = hashlib.sha256(_canonical({k: v for k, v in fields.items() if k != "sha256"}))
    for array in arrays:
        array = np.ascontiguousarray(array, dtype=_little_endian(array.dtype))
        hasher.update(memoryview(array).cast("B"))
    return hasher.hexdigest()


_SEAL_BYTES = 64  # hex SHA-256 of everything before it, stored as the zip comment
_END_OF_CENTRAL_DIRECTORY = b"PK\x05\x06"


def _write_npz(file: BinaryIO, header: bytes, arrays: dict[str, np.ndarray]) -> None:
    """The npz archive, sealed: its zip comment is the SHA-256 of all the bytes before it,
    so that a change anywhere in the file, zip bookkeeping included, is detected."""
    buffer = io.BytesIO()
    np.savez(buffer, header=np.frombuffer(header, dtype=np.uint8), allow_pickle=False, **arrays)
    archive = bytearray(buffer.getvalue())
    # The end-of-central-directory record closes the file; its last field is the
    # comment's length, 0 as numpy writes it.
    assert archive[-22:-18] == _END_OF_CENTRAL_DIRECTORY and archive[-2:] == b"\0\0"
    archive[-2:] = _SEAL_BYTES.to_bytes(2, "little")
    file.write(archive)
    file.write(hashlib.sha256(archive).hexdigest().encode("ascii"))


def _check_seal(file: BinaryIO) -> None:
    """Compare the seal at the end of the file with a streamed hash of the rest."""
    size = file.seek(0, os.SEEK_END)
    if size < 22 + _SEAL_BYTES:
        raise ModelFormatError(f"not a deltaprop model file (only {size} bytes)")
    file.seek(size - _SEAL_BYTES)
    seal = file.read(_SEAL_BYTES)
    file.seek(0)
    hasher = hashlib.sha256()
    remaining = size - _SEAL_BYTES
    while remaining:
        chunk = file.read(min(remaining, 1 << 20))
        if not chunk:
            raise ModelFormatError("the file changed while it was read")
        hasher.update(chunk)
        remaining -= len(chunk)
    if hasher.hexdigest().encode("ascii") != seal:
        raise ModelFormatError(
            "seal mismatch: the file is damaged, truncated or not a deltaprop model file"
        )
    file.seek(0)


def _write_atomically(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Write a file through ``write`` into a temporary file, then rename it over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(
        dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _new_file_mode(path: str) -> int:
    """The existing file's permissions, or what open() would give a new file: mkstemp
    creates files readable by their owner only."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0o022)  # reading the umask means setting it; restored at once
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_directory(directory: str) -> None:
    """Make the rename durable; best effort (some platforms cannot open directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- load
def load(path: str | os.PathLike) -> Network:
    """Load a network saved by `save`, with its optimizer and state (training resumes).

    Nothing in the file is executed, and no array is allocated before the header and the
    member sizes have been checked, so an untrusted or damaged file fails cleanly.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    net : Network
        Same architecture, dtype and parameters; ``net.optimizer`` is the saved optimizer
        (same hyper-parameters, state and step) or None if there was none.

    Raises
    ------
    FileNotFoundError, PermissionError, IsADirectoryError
        The file cannot be opened (these are not format errors).
    ModelFormatError
        The file is not a valid deltaprop model file (see its message).
    """
    name = os.fspath(path)
    with open(name, "rb") as file, _errors_naming(name):
        fields, arrays = _read(file)
        if fields.get(_TRAINING_FIELD, {}).get(_BEST_PARAMS, False):
            arrays.pop()  # a checkpoint's early-stopping best parameters
        return _build(fields, arrays)


def _read(file: BinaryIO) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The checked header fields and arrays (params, then the state) of a model file."""
    _check_seal(file)
    try:
        archive = zipfile.ZipFile(file)
    except zipfile.BadZipFile:
        raise ModelFormatError("not a deltaprop model file (not a zip archive)") from None
    with archive:
        members = _members(archive)
        fields = _read_header(archive, members)
        dtype, n_params = _DTYPES[fields["dtype"]], fields["n_params"]
        names = ["params"] + [f"state_{i}" for i in range(_n_state(fields))]
        if fields.get(_TRAINING_FIELD, {}).get(_BEST_PARAMS, False):
            names.append(_BEST_PARAMS)
        unexpected = set(members) - {"header"} - set(names)
        if unexpected:
            raise ModelFormatError(f"unexpected members {sorted(unexpected)}")
        arrays = [_read_array(archive, members, name, dtype, n_params) for name in names]
    if fields["sha256"] != _digest(fields, arrays):
        raise ModelFormatError("checksum mismatch: the file is damaged or was altered")
    for name, array in zip(names, arrays):
        if not np.isfinite(array).all():
            raise ModelFormatError(f"{name} contains NaN or infinity")
    return fields, arrays


def _members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """{member name without .npy: info}, refusing anything but plain stored .npy files."""
    members = {}
    for info in archive.infolist():
        name = info.filename.removesuffix(".npy")
        if not info.filename.endswith(".npy") or name in members:
            raise ModelFormatError(f"unexpected member {info.filename!r}")
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            raise ModelFormatError(f"member {info.filename!r} is compressed or encrypted")
        members[name] = info
    if "header" not in members:
        raise ModelFormatError("not a deltaprop model file (no header member)")
    return members


def _read_header(archive: zipfile.ZipFile, members) -> dict[str, Any]:
    info = members["header"]
    if info.file_size > _MAX_HEADER_BYTES:
        raise ModelFormatError(f"header member of {info.file_size} bytes is too large")
    with archive.open(info) as member:
        raw = _read_npy(member, info, np.dtype(np.uint8), None, "header").tobytes()
    try:
        fields = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError, JSONDecodeError...
        raise ModelFormatError(f"header is not valid JSON ({error})") from None
    _check_fields(fields)
    if _canonical(fields) != raw:
        raise ModelFormatError("header is not in canonical form: the file was altered")
    return fields


def _refuse_constant(name: str):
    raise ModelFormatError(f"header holds {name}, which is not a valid value")


def _read_array(archive, members, name, dtype: np.dtype, n_params: int) -> np.ndarray:
    if name not in members:
        raise ModelFormatError(f"member {name!r} is missing")
    with archive.open(members[name]) as member:
        return _read_npy(member, members[name], dtype, n_params, name)


def _read_npy(member, info: zipfile.ZipInfo, dtype: np.dtype, length, name: str):
    """A 1-D array of ``dtype`` (and ``length``, unless None) from an npy member: its
    header and the member's size are checked before its data is read."""
    length = _check_npy_header(member, dtype, length, name)
    n_bytes = length * dtype.itemsize
    if info.file_size != member.tell() + n_bytes:
        raise ModelFormatError(
            f"member {name!r} holds {info.file_size} bytes, not the {length} values its "
            "header announces"
        )
    buffer = bytearray(n_bytes)
    if member.readinto(buffer) != n_bytes or member.read(1):  # reading to the end checks the CRC
        raise ModelFormatError(f"member {name!r} is truncated")
    array = np.frombuffer(buffer, dtype=dtype)
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


def _check_npy_header(member, dtype: np.dtype, length, name: str) -> int:
    """Parse an npy header (numpy's literal dict; never a pickle); return its length."""
    version = np.lib.format.read_magic(member)
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise ModelFormatError(f"member {name!r}: unknown npy format version {version}")
    size_format = "<H" if version == (1, 0) else "<I"
    n_size = struct.calcsize(size_format)
    (n_header,) = struct.unpack(size_format, _read_exactly(member, n_size))
    if n_header > _MAX_NPY_HEADER_BYTES:
        raise ModelFormatError(f"member {name!r}: npy header of {n_header} bytes")
    text = _read_exactly(member, n_header).decode("latin1" if version < (3, 0) else "utf-8")
    try:
        d = ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        raise ModelFormatError(f"member {name!r}: unreadable npy header") from None
    expected = np.lib.format.dtype_to_descr(dtype)
    if (
        not isinstance(d, dict)
        or d.keys() != {"descr", "fortran_order", "shape"}
        or d["descr"] != expected
        or d["fortran_order"] is not False
        or not isinstance(d["shape"], tuple)
        or len(d["shape"]) != 1
        or type(d["shape"][0]) is not int
        or d["shape"][0] < 0
        or (length is not None and d["shape"][0] != length)
    ):
        wanted = f"({length},)" if length is not None else "1-D"
        raise ModelFormatError(
            f"member {name!r}: expected a {wanted} {expected} array, got {reprlib.repr(d)}"
        )
    return d["shape"][0]


def _read_exactly(member, n_bytes: int) -> bytes:
    data = member.read(n_bytes)
    if len(data) != n_bytes:
        raise ModelFormatError(f"member {member.name!r} is truncated")
    return data


# ---------------------------------------------------------------------------- header
def _check_fields(fields: Any) -> None:
    """Check every header field's type and range (not yet the checksum)."""
    if not isinstance(fields, dict) or fields.get("format") != FORMAT:
        raise ModelFormatError(f"not a deltaprop model file (its header has no format {FORMAT!r})")
    version = fields.get("format_version")
    if not _is_int(version) or version != FORMAT_VERSION:
        raise ModelFormatError(
            f"format version {reprlib.repr(version)}: this deltaprop reads version {FORMAT_VERSION}"
        )
    if fields.keys() - {_TRAINING_FIELD} != _FIELDS:
        present = fields.keys() - {_TRAINING_FIELD}
        missing, extra = sorted(_FIELDS - present), sorted(present - _FIELDS)
        raise ModelFormatError(f"header fields: missing {missing}, unexpected {extra}")
    if _TRAINING_FIELD in fields:
        training = fields[_TRAINING_FIELD]
        _check(isinstance(training, dict), _TRAINING_FIELD, fields, "an object")
        _check(
            isinstance(training.get(_BEST_PARAMS, False), bool),
            _TRAINING_FIELD,
            fields,
            f"an object whose {_BEST_PARAMS!r} is true or false",
        )
    _check(isinstance(fields["deltaprop_version"], str), "deltaprop_version", fields)
    _check_sizes(fields)
    for key, allowed in (
        ("activation", ACTIVATIONS),
        ("output", OUTPUTS),
        ("cost", COSTS),
        ("dtype", tuple(_DTYPES)),
    ):
        _check(
            isinstance(fields[key], str) and fields[key] in allowed,
            key,
            fields,
            f"one of {', '.join(allowed)}",
        )
    slope = fields["leaky_slope"]
    _check(_is_finite_real(slope), "leaky_slope", fields, "a finite number")
    _check(_is_sha256(fields["sha256"]), "sha256", fields, "64 lowercase hex digits")
    _check_optimizer(fields["optimizer"])


def _check_sizes(fields: dict[str, Any]) -> None:
    sizes = fields["sizes"]
    _check(
        isinstance(sizes, list)
        and 2 <= len(sizes) <= _MAX_LAYERS
        and all(_is_int(n) and 1 <= n <= _MAX_UNITS for n in sizes),
        "sizes",
        fields,
        f"2 to {_MAX_LAYERS} layer sizes in [1, {_MAX_UNITS}]",
    )
    n_params = sum(n_in * n_out + n_out for n_in, n_out in zip(sizes, sizes[1:]))
    if n_params > _MAX_PARAMS:
        raise ModelFormatError(
            f"sizes {reprlib.repr(sizes)} mean {n_params} parameters, over {_MAX_PARAMS}"
        )
    if not _is_int(fields["n_params"]) or fields["n_params"] != n_params:
        raise ModelFormatError(
            f"n_params is {reprlib.repr(fields['n_params'])}, but sizes "
            f"{reprlib.repr(sizes)} mean {n_params}"
        )


def _check_optimizer(entry: Any) -> None:
    if entry is None:
        return
    if not isinstance(entry, dict) or entry.keys() != _OPTIMIZER_FIELDS:
        raise ModelFormatError(
            f"optimizer: expected null or an object with {sorted(_OPTIMIZER_FIELDS)}"
        )
    cls = optim._BY_NAME.get(entry["name"]) if isinstance(entry["name"], str) else None
    _check(cls is not None, "name", entry, f"one of {', '.join(optim._BY_NAME)}")
    _check(isinstance(entry["hyperparameters"], dict), "hyperparameters", entry, "an object")
    step = entry["step"]
    _check(_is_int(step) and 0 <= step <= _MAX_STEP, "step", entry, "a non-negative integer")
    n_state = entry["n_state"]
    _check(
        _is_int(n_state) and n_state in (0, cls.n_state), "n_state", entry, f"0 or {cls.n_state}"
    )


def _check(ok: bool, key: str, fields: dict[str, Any], expected: str = "") -> None:
    if not ok:
        hint = f" (expected {expected})" if expected else ""
        raise ModelFormatError(
            f"header field {key!r} is invalid: {reprlib.repr(fields[key])}{hint}"
        )


def _is_int(value: Any) -> bool:
    return type(value) is int  # not bool, and JSON gives no other integer type


def _is_finite_real(value: Any) -> bool:
    try:
        return type(value) in (int, float) and math.isfinite(value)
    except OverflowError:  # an int beyond float's range
        return False


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= set("0123456789abcdef")


def _n_state(fields: dict[str, Any]) -> int:
    return 0 if fields["optimizer"] is None else fields["optimizer"]["n_state"]


# ---------------------------------------------------------------------------- build
def _build(fields: dict[str, Any], arrays: list[np.ndarray]) -> Network:
    """The network (and its optimizer) a checked header and its arrays describe."""
    try:
        net = Network(
            fields["sizes"],
            activation=fields["activation"],
            output=fields["output"],
            cost=fields["cost"],
            dtype=fields["dtype"],
            leaky_slope=fields["leaky_slope"],
            seed=0,
        )
    except (ValueError, TypeError, RuntimeError, OverflowError) as error:
        raise ModelFormatError(f"the network it describes is invalid: {error}") from error
    net.params[...] = arrays[0]
    if fields["optimizer"] is not None:
        net.optimizer = _build_optimizer(fields["optimizer"], arrays[1:])
    return net


def _build_optimizer(entry: dict[str, Any], state: list[np.ndarray]) -> optim.Optimizer:
    hyperparameters = dict(entry["hyperparameters"])
    if isinstance(hyperparameters.get("betas"), list):
        hyperparameters["betas"] = tuple(hyperparameters["betas"])
    try:
        opt = optim._BY_NAME[entry["name"]](**hyperparameters)
    except (ValueError, TypeError, OverflowError) as error:
        raise ModelFormatError(f"optimizer hyper-parameters are invalid: {error}") from error
    if isinstance(opt, optim.Adam) and state and (state[1] < 0).any():
        raise ModelFormatError("Adam's second moments (state_1) must not be negative")
    opt.state, opt.step = state, entry["step"]
    return opt
