"""The sealed container of model files and checkpoints; it knows nothing of networks.

A container (format version 1) is an uncompressed ``.npz`` archive, as ``numpy.savez``
writes it, holding only plain numeric ``.npy`` members:

- ``header``: 1-D uint8, the UTF-8 bytes of a canonical JSON object (sorted keys, no
  whitespace, ASCII): ``format`` ("deltaprop-model"), ``format_version`` (1),
  ``deltaprop_version`` and ``sha256``, next to the fields of what is stored (see
  `deltaprop.io`).
- the arrays, each 1-D and little-endian, named by what is stored.

``sha256`` is the digest of the header's canonical JSON without the ``sha256`` key, then of
the bytes of each array in order. The zip comment is a seal: the hex SHA-256 of every byte
of the file before it, so that a change anywhere, zip bookkeeping included, is detected.
Reading checks the seal, every field, every member's npy header and size before its data
is read, the digest, and that every value is finite; nothing is ever executed (no
pickles). Writing goes through `deltaprop._files.write_atomically`.
"""

from __future__ import annotations

# hashlib, json and zipfile are imported where they are used: together they would cost
# `import deltaprop` more than everything else it loads (see tests/test_layout.py).
import ast
import contextlib
import io
import os
import reprlib
import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from ._files import open_regular, write_atomically
from ._version import __version__

if TYPE_CHECKING:
    import zipfile

FORMAT = "deltaprop-model"
FORMAT_VERSION = 1
# The header fields the container itself writes and checks.
OWN_FIELDS = ("format", "format_version", "deltaprop_version", "sha256")

_MAX_HEADER_BYTES = 1 << 20  # a header is a few hundred bytes
_MAX_NPY_HEADER_BYTES = 4096  # numpy writes 128
_SEAL_BYTES = 64  # hex SHA-256 of everything before it, stored as the zip comment
# Local header, central-directory entry and zip64 extras of one member, with its name.
_ZIP_BYTES_PER_MEMBER = 256
_END_OF_CENTRAL_DIRECTORY = b"PK\x05\x06"
# What the npy header parser and the JSON decoder raise on damaged input (zipfile's own
# errors join them in _errors_naming).
_READ_ERRORS = (
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

# {member name: (dtype, length)} of the arrays a header announces, in digest order.
MemberSpec = dict[str, tuple[np.dtype, int]]


class ModelFormatError(ValueError):
    """A file is not a valid deltaprop model file.

    Raised by `deltaprop.load` for anything other than a missing file: not a zip archive,
    a truncated or damaged file, a missing, extra or malformed member, a header field of the
    wrong type or out of range, a size that disagrees with the architecture, a failed
    checksum or a non-finite value. The message names the file and the problem.
    """


# ---------------------------------------------------------------------------- write
def write(path: str | os.PathLike, content: dict[str, Any], arrays: dict[str, np.ndarray]):
    """Write header fields and arrays as a sealed container, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The destination file, replaced atomically (see `deltaprop._files.write_atomically`).
    content : dict
        JSON-able header fields of what is stored; the container adds its own
        (`OWN_FIELDS`) next to them.
    arrays : dict of str to ndarray
        The members, in digest order: 1-D, as `read` expects them; stored little-endian.

    Raises
    ------
    ValueError
        An array holds NaN or infinity, or ``content`` holds a non-finite float (JSON
        has none).
    TypeError
        ``content`` is not JSON-able.
    OSError
        The file cannot be written.
    """
    arrays = {name: finite_little_endian(array, name) for name, array in arrays.items()}
    fields = {
        **content,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "deltaprop_version": __version__,
    }
    fields["sha256"] = _digest(fields, arrays.values())
    header = canonical(fields)
    write_atomically(path, lambda file: _write_npz(file, header, arrays))


def finite_little_endian(array: np.ndarray, what: str) -> np.ndarray:
    """Return an array little-endian and C-contiguous, after checking it is finite.

    Parameters
    ----------
    array : array_like
        The array to store.
    what : str
        Its name, for the error message.

    Returns
    -------
    ndarray
        ``array`` itself (or a view) when it already is little-endian and contiguous,
        else a copy.

    Raises
    ------
    ValueError
        ``array`` holds NaN or infinity.
    """
    array = np.asarray(array)
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: contains NaN or infinity; such a model cannot be saved")
    return array


def canonical(fields: dict[str, Any]) -> bytes:
    """Return the one JSON text of a header's fields.

    Sorted keys, no whitespace, ASCII: the checksum depends on it, and reading demands it.

    Parameters
    ----------
    fields : dict
        JSON-able header fields.

    Returns
    -------
    bytes
        The ASCII-encoded JSON text.

    Raises
    ------
    ValueError
        A float in ``fields`` is NaN or infinite.
    TypeError
        ``fields`` is not JSON-able.
    """
    import json

    text = json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return text.encode("ascii")


def _digest(fields: dict[str, Any], arrays: Iterable[np.ndarray]) -> str:
    """SHA-256 of the header without its ``sha256`` key, then of each array's bytes."""
    import hashlib

    hasher = hashlib.sha256(canonical({k: v for k, v in fields.items() if k != "sha256"}))
    for array in arrays:
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        hasher.update(memoryview(array).cast("B"))
    return hasher.hexdigest()


def _write_npz(file: BinaryIO, header: bytes, arrays: dict[str, np.ndarray]) -> None:
    """Write the npz archive, sealed with the SHA-256 of all its bytes as its zip comment."""
    import hashlib

    buffer = io.BytesIO()
    np.savez(buffer, header=np.frombuffer(header, dtype=np.uint8), allow_pickle=False, **arrays)
    archive = bytearray(buffer.getvalue())
    # The end-of-central-directory record closes the file; its last field is the
    # comment's length, 0 as numpy writes it.
    assert archive[-22:-18] == _END_OF_CENTRAL_DIRECTORY and archive[-2:] == b"\0\0"
    archive[-2:] = _SEAL_BYTES.to_bytes(2, "little")
    file.write(archive)
    file.write(hashlib.sha256(archive).hexdigest().encode("ascii"))


# ---------------------------------------------------------------------------- read
def read(
    path: str | os.PathLike, members: Callable[[dict[str, Any]], MemberSpec]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a container: its header fields (without the container's own) and its arrays.

    No array is read before the header has been checked against the member sizes.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    members : callable
        ``members(fields) -> MemberSpec``: checks the fields of what is stored and returns
        the arrays they announce, ``{name: (dtype, length)}`` in digest order; it raises
        `ModelFormatError` (or ValueError) for invalid fields.

    Returns
    -------
    fields : dict
        The header fields, without `OWN_FIELDS`.
    arrays : dict of str to ndarray
        The announced members, each 1-D of its announced dtype (in native byte order) and
        length, finite.

    Raises
    ------
    FileNotFoundError, PermissionError, IsADirectoryError
        The file cannot be opened (these are not format errors).
    ModelFormatError
        Anything else; the message names the file.
    """
    import zipfile

    name = os.fspath(path)
    with open_regular(name) as file, _errors_naming(name):
        size = file.seek(0, os.SEEK_END)
        if size < 22 + _SEAL_BYTES:
            raise ModelFormatError(f"not a deltaprop model file (only {size} bytes)")
        file.seek(0)
        try:
            archive = zipfile.ZipFile(file)
        except zipfile.BadZipFile:
            raise ModelFormatError("not a deltaprop model file (not a zip archive)") from None
        with archive:
            # Size and structure first: the declared sizes must fit in the file before
            # anything is hashed or allocated.
            infos = _members(archive, size)
            fields, raw = _read_header(archive, infos)
            content = {key: value for key, value in fields.items() if key not in OWN_FIELDS}
            spec = members(content)
            _check_canonical(fields, raw)
            unexpected = set(infos) - {"header"} - set(spec)
            if unexpected:
                raise ModelFormatError(f"unexpected members {sorted(unexpected)}")
            _check_sizes(spec, infos, size)
            _check_seal(file, size)
            arrays = {
                member: _read_array(archive, infos, member, dtype, length)
                for member, (dtype, length) in spec.items()
            }
        if fields["sha256"] != _digest(fields, arrays.values()):
            raise ModelFormatError("checksum mismatch: the file is damaged or was altered")
        for member, array in arrays.items():
            if not np.isfinite(array).all():
                raise ModelFormatError(f"{member} contains NaN or infinity")
        return content, arrays


def _check_sizes(spec: MemberSpec, infos: dict[str, zipfile.ZipInfo], file_size: int) -> None:
    """Check that the members hold the arrays the header announces, and only them.

    No member claims more bytes than the file has, and the file holds nothing beyond the
    members but zip bookkeeping.
    """
    accounted = infos["header"].file_size
    for member, (dtype, length) in spec.items():
        if member not in infos:
            raise ModelFormatError(f"member {member!r} is missing")
        n_bytes = length * dtype.itemsize
        declared = infos[member].file_size
        if not n_bytes <= declared <= n_bytes + _MAX_NPY_HEADER_BYTES:
            raise ModelFormatError(f"member {member!r} claims {declared} bytes for {length} values")
        accounted += declared
    bookkeeping = _ZIP_BYTES_PER_MEMBER * (len(infos) + 1) + _SEAL_BYTES
    if not accounted <= file_size <= accounted + bookkeeping:
        raise ModelFormatError(
            f"the file has {file_size} bytes, its members {accounted}: not a model file"
        )


@contextlib.contextmanager
def _errors_naming(name: str):
    """Turn every failure to read a container into one ModelFormatError naming the file.

    The file is open already: failing to open it is no format error.
    """
    import zipfile

    try:
        yield
    except ModelFormatError as error:
        raise ModelFormatError(f"{name}: {error}") from error.__cause__
    except (*_READ_ERRORS, zipfile.BadZipFile, zipfile.LargeZipFile) as error:
        raise ModelFormatError(
            f"{name}: not a readable deltaprop model file ({type(error).__name__}: {error})"
        ) from error


def _check_seal(file: BinaryIO, size: int) -> None:
    """Compare the seal at the end of the file with a streamed hash of the rest."""
    import hashlib

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


def _members(archive: zipfile.ZipFile, file_size: int) -> dict[str, zipfile.ZipInfo]:
    """Return {member name without .npy: info}.

    Anything but plain stored .npy files that lie within the file is refused.
    """
    import zipfile

    members = {}
    for info in archive.infolist():
        if info.compress_size != info.file_size or info.header_offset + info.file_size > file_size:
            raise ModelFormatError(
                f"member {info.filename!r} claims {info.file_size} bytes, beyond the file's "
                f"{file_size}"
            )
        name = info.filename.removesuffix(".npy")
        if not info.filename.endswith(".npy") or name in members:
            raise ModelFormatError(f"unexpected member {info.filename!r}")
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            raise ModelFormatError(f"member {info.filename!r} is compressed or encrypted")
        members[name] = info
    if "header" not in members:
        raise ModelFormatError("not a deltaprop model file (no header member)")
    return members


def _read_header(archive: zipfile.ZipFile, members) -> tuple[dict[str, Any], bytes]:
    """Read the header's fields (the container's own checked) and its raw bytes."""
    import json

    info = members["header"]
    if info.file_size > _MAX_HEADER_BYTES:
        raise ModelFormatError(f"header member of {info.file_size} bytes is too large")
    with archive.open(info) as member:
        raw = _read_npy(member, info, np.dtype(np.uint8), None, "header").tobytes()
    try:
        fields = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError, JSONDecodeError...
        raise ModelFormatError(f"header is not valid JSON ({error})") from None
    _check_own_fields(fields)
    return fields, raw


def _check_canonical(fields: dict[str, Any], raw: bytes) -> None:
    """Check that the header is the one text `write` gives its fields.

    Any other spelling means the file was altered.
    """
    try:
        text = canonical(fields)
    except ValueError:  # a number beyond float's range parses as infinity
        raise ModelFormatError("header holds a number out of range") from None
    if text != raw:
        raise ModelFormatError("header is not in canonical form: the file was altered")


def _check_own_fields(fields: Any) -> None:
    if not isinstance(fields, dict) or fields.get("format") != FORMAT:
        raise ModelFormatError(f"not a deltaprop model file (its header has no format {FORMAT!r})")
    version = fields.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ModelFormatError(
            f"format version {reprlib.repr(version)}: this deltaprop reads version {FORMAT_VERSION}"
        )
    missing = [key for key in OWN_FIELDS if key not in fields]
    if missing:
        raise ModelFormatError(f"header fields: missing {missing}")
    check_field(isinstance(fields["deltaprop_version"], str), "deltaprop_version", fields)
    sha256 = fields["sha256"]
    is_sha256 = (
        isinstance(sha256, str) and len(sha256) == 64 and set(sha256) <= set("0123456789abcdef")
    )
    check_field(is_sha256, "sha256", fields, "64 lowercase hex digits")


def check_field(ok: bool, key: str, fields: dict[str, Any], expected: str = "") -> None:
    """Raise ModelFormatError naming header field ``key`` unless ``ok``.

    Parameters
    ----------
    ok : bool
        Whether the field is valid.
    key : str
        The field's name; ``fields[key]`` is quoted in the message.
    fields : dict
        The header's fields.
    expected : str, default=""
        What the field should hold, for the message; empty: not said.

    Raises
    ------
    ModelFormatError
        ``ok`` is false.
    """
    if not ok:
        hint = f" (expected {expected})" if expected else ""
        raise ModelFormatError(
            f"header field {key!r} is invalid: {reprlib.repr(fields[key])}{hint}"
        )


def _refuse_constant(name: str):
    raise ModelFormatError(f"header holds {name}, which is not a valid value")


def _read_array(archive, members, name, dtype: np.dtype, length: int) -> np.ndarray:
    # _check_sizes has seen that every announced member is there.
    with archive.open(members[name]) as member:
        return _read_npy(member, members[name], dtype, length, name)


def _read_npy(member, info: zipfile.ZipInfo, dtype: np.dtype, length, name: str):
    """Read a 1-D array of ``dtype`` (and ``length``, unless None) from an npy member.

    Its header and the member's size are checked before its data is read.
    """
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
    """Parse an npy header (numpy's literal dict; never a pickle); return the array length."""
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
