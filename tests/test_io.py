"""Model files: round trips that resume training exactly, atomic saves, and refusal of every
truncated, damaged, malformed or hostile file with ModelFormatError (and nothing else)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import pickle
import shlex
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import deltaprop as dp
from conftest import under_address_space_limit

OPTIMIZERS = ["sgd", "momentum", "nesterov", "adam", "adamw", "rprop"]


# ---------------------------------------------------------------------------- helpers
def _data(n_samples: int = 24):
    rng = np.random.default_rng(7)
    return rng.normal(size=(n_samples, 4)), rng.integers(0, 3, size=n_samples)


def _network(dtype="float64", optimizer=None) -> dp.Network:
    """A small network, trained two epochs with ``optimizer`` unless it is None."""
    net = dp.Network(
        [4, 5, 3],
        activation="leaky_relu",
        leaky_slope=0.05,
        output="softmax",
        cost="log_likelihood",
        dtype=dtype,
        seed=3,
    )
    if optimizer is not None:
        X, y = _data()
        net.fit(X, y, epochs=2, batch_size=5, optimizer=optimizer, lr=0.05)
    return net


def assert_same_model(actual: dp.Network, expected: dp.Network) -> None:
    """Same architecture, dtype, parameters (bit for bit) and optimizer state."""
    assert actual.sizes == expected.sizes
    assert (actual.activation, actual.output, actual.cost_name) == (
        expected.activation,
        expected.output,
        expected.cost_name,
    )
    assert actual.leaky_slope == expected.leaky_slope
    assert actual.dtype == expected.dtype == actual.params.dtype
    assert np.array_equal(actual.params, expected.params)
    if expected.optimizer is None:
        assert actual.optimizer is None
        return
    assert type(actual.optimizer) is type(expected.optimizer)
    assert actual.optimizer.hyperparameters() == expected.optimizer.hyperparameters()
    assert actual.optimizer.step == expected.optimizer.step
    assert len(actual.optimizer.state) == len(expected.optimizer.state)
    for got, want in zip(actual.optimizer.state, expected.optimizer.state):
        assert got.dtype == want.dtype
        assert np.array_equal(got, want)


def _canonical(fields) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _checksum(fields, arrays) -> str:
    """The format's checksum, computed independently of deltaprop.io."""
    hasher = hashlib.sha256(_canonical({k: v for k, v in fields.items() if k != "sha256"}))
    for array in arrays.values():
        hasher.update(np.ascontiguousarray(array).tobytes())
    return hasher.hexdigest()


def _parts(path):
    """(header fields, {name: array}) of a model file."""
    with np.load(path, allow_pickle=False) as npz:
        fields = json.loads(npz["header"].tobytes())
        arrays = {name: npz[name] for name in npz.files if name != "header"}
    return fields, arrays


def _seal(archive: bytes) -> bytes:
    """The format's seal, written independently of deltaprop.io: the zip comment (64 bytes)
    is the hex SHA-256 of everything before it."""
    archive = bytearray(archive)
    assert archive[-22:-18] == b"PK\x05\x06" and archive[-2:] == b"\0\0"
    archive[-2:] = (64).to_bytes(2, "little")
    return bytes(archive) + hashlib.sha256(archive).hexdigest().encode()


def _write_sealed(path, write) -> None:
    buffer = io.BytesIO()
    write(buffer)
    pathlib.Path(path).write_bytes(_seal(buffer.getvalue()))


def _write_model(path, fields, arrays, *, rehash=True, header=None, savez=np.savez) -> None:
    """A sealed model file from parts, with a valid checksum unless ``rehash`` is false."""
    fields = dict(fields)
    if rehash:
        fields["sha256"] = _checksum(fields, arrays)
    if header is None:
        header = np.frombuffer(_canonical(fields), dtype=np.uint8)
    _write_sealed(path, lambda file: savez(file, header=header, **arrays))


def _overwrite(path: pathlib.Path, data: bytes) -> None:
    """Replace a file's content. In place: ext4 flushes a file that open(..., "w") truncates,
    which makes thousands of write_bytes calls take seconds."""
    with open(path, "r+b") as file:
        file.write(data)
        file.truncate()


def _payload_ranges(data: bytes) -> list[range]:
    """Byte ranges of the members' contents (npy header and data) in a model file."""
    ranges = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            offset = info.header_offset
            n_name, n_extra = struct.unpack("<HH", data[offset + 26 : offset + 30])
            start = offset + 30 + n_name + n_extra
            ranges.append(range(start, start + info.compress_size))
    return ranges


@pytest.fixture
def model_file(tmp_path) -> pathlib.Path:
    """A saved float64 network with Adam's two state arrays."""
    path = tmp_path / "model.npz"
    dp.save(_network(optimizer="adam"), path)
    return path


def _refused(path, match: str | None = None) -> None:
    with pytest.raises(dp.ModelFormatError, match=match):
        dp.load(path)


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("optimizer", [None, *OPTIMIZERS], ids=["untrained", *OPTIMIZERS])
def test_round_trip_resumes_training_exactly(tmp_path, dtype, optimizer):
    X, y = _data()
    net = _network(dtype, optimizer)
    net.save(tmp_path / "model.npz")
    loaded = dp.load(tmp_path / "model.npz")
    assert_same_model(loaded, net)
    assert np.array_equal(loaded.predict(X), net.predict(X))
    # Both continue with their own optimizer and state (optimizer=None).
    net.fit(X, y, epochs=2, batch_size=5, shuffle=False)
    loaded.fit(X, y, epochs=2, batch_size=5, shuffle=False)
    assert_same_model(loaded, net)
    assert optimizer is None or net.optimizer.step > 0


def test_round_trip_of_an_optimizer_not_yet_used(tmp_path):
    X, y = _data()
    net = _network()
    net.optimizer = dp.optim.AdamW(0.01, betas=(0.8, 0.99), weight_decay=0.1)
    dp.save(net, tmp_path / "model.npz")
    loaded = dp.load(tmp_path / "model.npz")
    assert loaded.optimizer.state == [] and loaded.optimizer.betas == (0.8, 0.99)
    assert_same_model(loaded, net)
    net.fit(X, y, epochs=1, shuffle=False)
    loaded.fit(X, y, epochs=1, shuffle=False)
    assert_same_model(loaded, net)


@pytest.mark.parametrize("kind", [str, pathlib.Path, os.fsencode], ids=["str", "pathlib", "bytes"])
def test_save_and_load_take_str_bytes_and_pathlib_paths(tmp_path, kind):
    net = _network(optimizer="momentum")
    path = kind(tmp_path / "weights.bin")  # nothing is appended to the name
    net.save(path)
    assert_same_model(dp.load(path), net)
    dp.save(net, path)
    assert_same_model(dp.load(kind(path)), net)
    assert os.listdir(tmp_path) == ["weights.bin"]


def test_file_follows_the_documented_format(model_file):
    net = dp.load(model_file)
    with zipfile.ZipFile(model_file) as archive:
        infos = archive.infolist()
    assert [info.filename for info in infos] == [
        "header.npy",
        "params.npy",
        "state_0.npy",
        "state_1.npy",
    ]
    assert all(info.compress_type == zipfile.ZIP_STORED for info in infos)
    with np.load(model_file, allow_pickle=False) as npz:
        assert npz["header"].dtype == np.uint8 and npz["header"].ndim == 1
        raw_header = npz["header"].tobytes()
    fields, arrays = _parts(model_file)
    assert raw_header == _canonical(fields)
    assert fields == {
        "format": "deltaprop-model",
        "format_version": 1,
        "deltaprop_version": dp.__version__,
        "sizes": [4, 5, 3],
        "activation": "leaky_relu",
        "output": "softmax",
        "cost": "log_likelihood",
        "leaky_slope": 0.05,
        "dtype": "float64",
        "n_params": 4 * 5 + 5 + 5 * 3 + 3,
        "optimizer": {
            "name": "adam",
            "hyperparameters": {
                "lr": 0.05,
                "weight_decay": 0.0,
                "betas": [0.9, 0.999],
                "eps": 1e-8,
                "decoupled": False,
            },
            "step": net.optimizer.step,
            "n_state": 2,
        },
        "sha256": _checksum(fields, arrays),
    }
    assert np.array_equal(arrays["params"], net.params)
    assert arrays["params"].dtype == np.dtype("<f8")


# ---------------------------------------------------------------------------- atomic saves
def _fail_midway(file, *args, **kwargs):
    file.write(b"PK\x03\x04 half a model")
    raise OSError("disk full")


@pytest.mark.parametrize(
    "patch",
    [
        (np, "savez", _fail_midway),
        (os, "fsync", lambda fd: _raise(OSError("I/O error"))),
        (os, "replace", lambda src, dst: _raise(OSError("read-only directory"))),
        (np, "savez", lambda *args, **kwargs: _raise(KeyboardInterrupt())),
    ],
    ids=["write", "fsync", "rename", "interrupt"],
)
def test_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, patch):
    path = tmp_path / "model.npz"
    old = _network(optimizer="sgd")
    old.save(path)
    before = path.read_bytes()
    monkeypatch.setattr(*patch)
    with pytest.raises((OSError, KeyboardInterrupt)):
        _network(optimizer="adam").save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]
    assert_same_model(dp.load(path), old)


def _raise(error):
    raise error


def test_successful_save_is_complete_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "model.npz"
    for optimizer in OPTIMIZERS:  # each save replaces the last
        net = _network(optimizer=optimizer)
        net.save(path)
        assert os.listdir(tmp_path) == ["model.npz"]
        assert_same_model(dp.load(path), net)


def test_saved_file_permissions_are_those_of_an_ordinary_file(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "model.npz"
    _network().save(path)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0o600
    path.chmod(0o640)
    _network().save(path)
    assert path.stat().st_mode & 0o777 == 0o640


def test_save_refuses_what_it_could_not_load(tmp_path):
    net = _network(optimizer="momentum")
    with pytest.raises(TypeError, match="Network"):
        dp.save("not a network", tmp_path / "a.npz")
    net.optimizer.state = [np.zeros(3)]
    with pytest.raises(ValueError, match="another network"):
        net.save(tmp_path / "b.npz")
    net.optimizer = None
    net.params[0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        net.save(tmp_path / "c.npz")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------- damaged files
def test_missing_file_is_not_a_format_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        dp.load(tmp_path / "absent.npz")


def test_error_names_the_file(model_file):
    model_file.write_bytes(model_file.read_bytes()[:-1])
    with pytest.raises(dp.ModelFormatError, match=str(model_file)) as caught:
        dp.load(str(model_file))
    assert isinstance(caught.value, ValueError)


def test_every_truncation_is_refused(model_file, tmp_path):
    data = model_file.read_bytes()
    assert len(data) > 1000
    damaged = tmp_path / "damaged.npz"
    damaged.touch()
    for length in range(len(data)):
        _overwrite(damaged, data[:length])
        _refused(damaged)


def test_every_bit_flip_in_the_members_is_refused(model_file, tmp_path):
    """One flipped bit in each byte of every member (npy headers, JSON header, arrays)."""
    data = model_file.read_bytes()
    damaged = tmp_path / "damaged.npz"
    damaged.touch()
    positions = [i for block in _payload_ranges(data) for i in block]
    assert len(positions) > 1500
    for position in positions:
        flipped = bytearray(data)
        flipped[position] ^= 1 << (position % 8)
        _overwrite(damaged, flipped)
        _refused(damaged)


def test_every_single_bit_flip_anywhere_is_refused(model_file, tmp_path):
    """Zip bookkeeping (timestamps, attributes, the local headers' copies of sizes) and the
    seal itself included: the seal covers every byte."""
    data = model_file.read_bytes()
    damaged = tmp_path / "damaged.npz"
    damaged.touch()
    rng = np.random.default_rng(2024)
    for position in range(len(data)):
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(8))
        _overwrite(damaged, flipped)
        _refused(damaged)


def test_random_multi_bit_flips_are_refused(model_file, tmp_path):
    data = model_file.read_bytes()
    damaged = tmp_path / "damaged.npz"
    damaged.touch()
    rng = np.random.default_rng(7)
    for _ in range(1000):
        flipped = np.frombuffer(data, dtype=np.uint8).copy()
        positions = rng.integers(0, len(data), size=rng.integers(2, 6))
        flipped[positions] ^= (1 << rng.integers(0, 8, size=len(positions))).astype(np.uint8)
        if flipped.tobytes() == data:  # flips that cancelled out
            continue
        _overwrite(damaged, flipped.tobytes())
        _refused(damaged)


# ---------------------------------------------------------------------------- malformed files
def _set(**changes):
    return lambda fields, arrays: fields.update(changes)


def _set_optimizer(**changes):
    return lambda fields, arrays: fields["optimizer"].update(changes)


def _set_array(name, make):
    return lambda fields, arrays: arrays.__setitem__(name, make(arrays[name]))


def _delete(key, where="fields"):
    return lambda fields, arrays: (fields if where == "fields" else arrays).pop(key)


def _sizes(sizes, consistent=True):
    n_params = sum(a * b + b for a, b in zip(sizes, sizes[1:])) if consistent else None
    changes = {"sizes": sizes} if n_params is None else {"sizes": sizes, "n_params": n_params}
    return _set(**changes)


MALFORMED = {
    "sizes-huge": (_sizes([10**9, 10**9], consistent=False), "parameters, over"),
    "sizes-huge-consistent": (_sizes([10**9, 10**9]), "parameters, over"),
    "sizes-just-under-cap": (_sizes([40_000, 50_000]), "bytes for 2000050000 values"),
    "sizes-over-blasint": (_sizes([2**31, 1]), "sizes"),
    "sizes-negative": (_sizes([4, -5, 3]), "sizes"),
    "sizes-zero": (_sizes([4, 0, 3]), "sizes"),
    "sizes-float": (_set(sizes=[4, 5.0, 3]), "sizes"),
    "sizes-str": (_set(sizes=["4", 5, 3]), "sizes"),
    "sizes-bool": (_set(sizes=[4, 5, True]), "sizes"),
    "sizes-one-layer": (_sizes([4]), "sizes"),
    "sizes-not-a-list": (_set(sizes="4,5,3"), "sizes"),
    "sizes-too-deep": (_sizes([1] * 1001), "sizes"),
    "n_params-off-by-one": (lambda f, a: f.update(n_params=f["n_params"] + 1), "n_params"),
    "n_params-str": (_set(n_params="43"), "n_params"),
    "n_params-float": (_set(n_params=43.0), "n_params"),
    "activation-unknown": (_set(activation="swish"), "activation"),
    "activation-softmax": (_set(activation="softmax"), "activation"),
    "activation-not-str": (_set(activation=3), "activation"),
    "activations-too-many": (_set(activation=["tanh", "relu"]), r"one per hidden layer \(1"),
    "activations-unknown": (_set(activation=["swish"]), r"activation\[0\] \(hidden layer 1\)"),
    "activations-not-str": (_set(activation=[1]), "activation"),
    "leaky_slopes-too-few": (_set(leaky_slope=[]), r"one per hidden layer \(1"),
    "leaky_slopes-str": (_set(leaky_slope=["0.05"]), "leaky_slope"),
    "leaky_slopes-nested": (_set(leaky_slope=[[0.05]]), "leaky_slope"),
    "output-unknown": (_set(output="tanh"), "output"),
    "cost-unknown": (_set(cost="hinge"), "cost"),
    "cost-null": (_set(cost=None), "cost"),
    "invalid-pairing": (_set(output="sigmoid"), "network it describes is invalid"),
    "dtype-float16": (_set(dtype="float16"), "dtype"),
    "dtype-descr": (_set(dtype="<f8"), "dtype"),
    "dtype-mismatch": (_set(dtype="float32"), "<f4"),
    "leaky_slope-str": (_set(leaky_slope="0.05"), "leaky_slope"),
    "leaky_slope-null": (_set(leaky_slope=None), "leaky_slope"),
    "leaky_slope-huge-int": (_set(leaky_slope=10**400), "leaky_slope"),
    "format-other": (_set(format="keras"), "not a deltaprop model"),
    "format-missing": (_delete("format"), "not a deltaprop model"),
    "format_version-2": (_set(format_version=2), "version 2"),
    "format_version-str": (_set(format_version="1"), "version"),
    "format_version-true": (_set(format_version=True), "version"),
    "field-missing": (_delete("deltaprop_version"), "missing"),
    "field-extra": (_set(code="__import__('os').system('true')"), "unexpected"),
    "deltaprop_version-int": (_set(deltaprop_version=1), "deltaprop_version"),
    "optimizer-str": (_set(optimizer="adam"), "optimizer"),
    "optimizer-unknown": (_set_optimizer(name="rmsprop"), "name"),
    "optimizer-key-missing": (lambda f, a: f["optimizer"].pop("step"), "optimizer"),
    "n_state-wrong": (_set_optimizer(n_state=1), "n_state"),
    "n_state-true": (_set_optimizer(n_state=True), "n_state"),
    "step-negative": (_set_optimizer(step=-1), "step"),
    "step-float": (_set_optimizer(step=1.5), "step"),
    "step-huge": (_set_optimizer(step=2**63), "step"),
    "lr-negative": (_set_optimizer(hyperparameters={"lr": -1.0}), "lr"),
    "lr-str": (_set_optimizer(hyperparameters={"lr": "big"}), "lr"),
    "lr-huge-int": (_set_optimizer(hyperparameters={"lr": 10**400}), "hyper-parameters"),
    "hyperparameter-unknown": (_set_optimizer(hyperparameters={"bogus": 1}), "bogus"),
    "hyperparameters-list": (_set_optimizer(hyperparameters=[0.1]), "hyperparameters"),
    "params-nan": (_set_array("params", lambda p: np.where(p == p[0], np.nan, p)), "NaN"),
    "state-inf": (_set_array("state_0", lambda s: np.full_like(s, np.inf)), "NaN or infinity"),
    "adam-negative-v": (_set_array("state_1", lambda s: -1 - s), "negative"),
    "params-float32": (
        _set_array("params", lambda p: p.astype(np.float32)),
        "member 'params' claims",
    ),
    "params-short": (_set_array("params", lambda p: p[:-1]), r"\(43,\)"),
    "params-2d": (_set_array("params", lambda p: p.reshape(1, -1)), r"\(43,\)"),
    "params-big-endian": (_set_array("params", lambda p: p.astype(">f8")), "<f8"),
    "params-object": (_set_array("params", lambda p: p.astype(object)), "<f8"),
    "params-missing": (_delete("params", "arrays"), "missing"),
    "state-missing": (_delete("state_1", "arrays"), "missing"),
    "member-extra": (lambda f, a: a.update(extra=np.zeros(3)), "unexpected member"),
}


@pytest.mark.parametrize("damage, match", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_header_or_member_is_refused(model_file, damage, match):
    """Each file carries a valid checksum, so the check aimed at the defect must catch it."""
    fields, arrays = _parts(model_file)
    damage(fields, arrays)
    _write_model(model_file, fields, arrays)
    _refused(model_file, match)


def test_checksum_catches_an_edited_value(model_file):
    fields, arrays = _parts(model_file)
    arrays["params"][0] += 1.0
    _write_model(model_file, fields, arrays, rehash=False)
    _refused(model_file, "checksum")
    fields["sha256"] = fields["sha256"].upper()
    _write_model(model_file, fields, arrays, rehash=False)
    _refused(model_file, "sha256")


def _replace(old: bytes, new: bytes):
    return lambda header: header.replace(old, new)


RAW_HEADERS = {
    "not-json": (lambda header: b"model = " + header, "JSON"),
    "not-utf8": (_replace(b"leaky_relu", b"leaky_\xff\xfe"), "JSON"),
    "nan": (_replace(b'"leaky_slope":0.05', b'"leaky_slope":NaN'), "NaN"),
    "infinity": (_replace(b'"leaky_slope":0.05', b'"leaky_slope":1e999'), "leaky_slope"),
    "list": (lambda header: b"[" + header + b"]", "not a deltaprop model"),
    "deep": (lambda header: b"[" * 100_000 + b"]" * 100_000, "JSON"),
    "too-large": (lambda header: header + b" " * (2 << 20), "too large"),
}


@pytest.mark.parametrize("edit, match", RAW_HEADERS.values(), ids=RAW_HEADERS.keys())
def test_unreadable_header_is_refused(model_file, edit, match):
    fields, arrays = _parts(model_file)
    raw = edit(_canonical(fields))
    assert raw != _canonical(fields)
    _write_model(model_file, fields, arrays, header=np.frombuffer(raw, dtype=np.uint8))
    _refused(model_file, match)


def test_header_must_be_canonical(model_file):
    """Valid JSON with the right checksum, but not the one encoding: it was edited."""
    fields, arrays = _parts(model_file)
    text = json.dumps(fields, indent=1).encode()
    _write_model(model_file, fields, arrays, header=np.frombuffer(text, dtype=np.uint8))
    _refused(model_file, "canonical")


@pytest.mark.parametrize(
    "header",
    [np.zeros(4), np.zeros((2, 3), dtype=np.uint8), np.array(["{}"])],
    ids=["float64", "2d", "unicode"],
)
def test_header_member_must_be_uint8_bytes(model_file, header):
    fields, arrays = _parts(model_file)
    _write_model(model_file, fields, arrays, header=header)
    _refused(model_file, "header")


class _Exploit:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, ("touch " + shlex.quote(str(self.marker)),)


def test_pickles_are_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(marker))
    pickle.loads(payload)  # the payload is live: unpickling it does create the marker
    assert marker.exists()
    marker.unlink()

    plain = tmp_path / "model.pkl"
    plain.write_bytes(payload)
    _refused(plain, "not a deltaprop model file")
    plain.write_bytes(payload + hashlib.sha256(payload).hexdigest().encode())  # a valid seal
    _refused(plain, "not a zip")

    fields, arrays = _parts(_saved(tmp_path))
    in_npz = tmp_path / "object.npz"
    arrays["params"] = np.array([_Exploit(marker)], dtype=object)
    _write_model(in_npz, fields, arrays)
    _refused(in_npz, "params")

    header = np.array([_Exploit(marker)], dtype=object)
    _write_model(in_npz, fields, arrays, header=header)
    _refused(in_npz, "header")
    assert not marker.exists()


def _saved(tmp_path) -> pathlib.Path:
    path = tmp_path / "saved.npz"
    _network(optimizer="adam").save(path)
    return path


def test_other_kinds_of_file_are_refused(tmp_path):
    net = _network(optimizer="adam")
    files = {
        "empty": b"",
        "text": b"sizes: [4, 5, 3]\nactivation: tanh\n",
        "random": np.random.default_rng(0).bytes(4096),
        "zip-signature-only": b"PK\x05\x06" + b"\0" * 18,
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    np.save(tmp_path / "plain.npy", net.params)
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("README.txt", "not a model")
    with zipfile.ZipFile(tmp_path / "params-only.npz", "w") as archive:
        archive.writestr("params.npy", (tmp_path / "plain.npy").read_bytes())
    for path in sorted(tmp_path.iterdir()):
        _refused(path)
    # Sealed, so that the checks behind the seal are what refuses them.
    params_only = (tmp_path / "params-only.npz").read_bytes()
    _write_sealed(tmp_path / "params-only.npz", lambda file: file.write(params_only))
    _refused(tmp_path / "params-only.npz", "header")
    fields, arrays = _parts(_saved(tmp_path))
    _write_model(tmp_path / "compressed.npz", fields, arrays, savez=np.savez_compressed)
    _refused(tmp_path / "compressed.npz", "compressed")


def test_save_refuses_a_file_descriptor_for_a_path(tmp_path):
    with pytest.raises(TypeError, match=r"path: expected str, bytes or os\.PathLike, got int"):
        _network().save(1)


def test_save_after_the_fits_communicator_is_freed_says_what_to_do(tmp_path):
    MPI = pytest.importorskip("mpi4py.MPI", reason="needs mpi4py: pip install 'deltaprop[mpi]'")
    comm = MPI.COMM_SELF.Dup()
    net = _network()
    X, y = np.random.default_rng(0).normal(size=(12, 4)), np.arange(12) % 3
    net.fit(X, y, epochs=1, comm=comm)
    comm.Free()
    with pytest.raises(RuntimeError, match=r"net.comm.*has been freed.*net.comm = None"):
        net.save(tmp_path / "m.npz")
    net.comm = None
    net.save(tmp_path / "m.npz")
    assert_same_model(dp.load(tmp_path / "m.npz"), net)


# ---------------------------------------------------------------------------- destinations
def test_save_writes_through_a_symlink_to_its_target(tmp_path):
    target, link = tmp_path / "real.npz", tmp_path / "link.npz"
    _network().save(target)
    link.symlink_to(target)
    net = _network(optimizer="adam")
    net.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert_same_model(dp.load(target), net)


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_save_refuses_what_is_not_a_regular_file(tmp_path, kind):
    path = tmp_path / "special"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    with pytest.raises((ValueError, IsADirectoryError), match="special"):
        _network().save(path)
    assert path.is_fifo() if kind == "fifo" else path.is_dir()
    assert os.listdir(tmp_path) == ["special"]


def test_save_errors_name_the_users_path_not_a_temporary(tmp_path):
    path = tmp_path / "missing" / "model.npz"
    with pytest.raises(FileNotFoundError) as caught:
        _network().save(path)
    assert caught.value.filename == str(path) and ".tmp" not in str(caught.value)


def test_longest_file_name_can_be_saved(tmp_path):
    path = tmp_path / ("m" * 251 + ".npz")  # 255 bytes: the limit of most file systems
    _network().save(path)
    assert_same_model(dp.load(path), _network())


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_save(tmp_path):
    """A save killed with SIGKILL leaves its temporary file; the next save in that
    directory removes it (its process is gone), and leaves live writers' files alone."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".deltaprop-{dead.pid}-abc123.tmp"
    live = tmp_path / f".deltaprop-{os.getpid()}-def456.tmp"
    stale.write_bytes(b"partial")
    live.write_bytes(b"in progress")
    _network().save(tmp_path / "model.npz")
    assert sorted(os.listdir(tmp_path)) == sorted(["model.npz", live.name])


def test_replaced_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")
    path.chmod(0o640)
    _network().save(path)
    assert (path.stat().st_mode & 0o777) == 0o640


# ---------------------------------------------------------------------------- hangs and bombs
def _in_child(code: str, *, memory_limit: int | None = None, timeout: float = 60):
    """Run ``code`` in a fresh interpreter (under an address-space limit in bytes), and
    return its result; a hang fails the test through the timeout."""
    prelude = "import resource\n"
    if memory_limit is not None:
        prelude += f"resource.setrlimit(resource.RLIMIT_AS, ({memory_limit}, {memory_limit}))\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=timeout
    )


def test_load_of_a_fifo_fails_at_once(tmp_path):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    done = _in_child(
        "import deltaprop as dp\n"
        f"try:\n    dp.load({str(fifo)!r})\nexcept ValueError as error:\n    print(error)\n"
    )
    assert done.returncode == 0 and "not a regular file" in done.stdout


def _bomb(path, model_file, n_params_claimed: int, zip64: bool) -> None:
    """A sealed file whose header announces ``n_params_claimed`` parameters and whose zip
    directory claims a member of that many bytes, in a file of a few hundred bytes."""
    fields, _ = _parts(model_file)
    fields["sizes"] = [n_params_claimed // 2 - 1, 2]
    fields["n_params"] = (n_params_claimed // 2 - 1) * 2 + 2
    fields["optimizer"] = None
    arrays = {"params": np.zeros(1)}
    _write_model(path, fields, arrays)
    data = bytearray(pathlib.Path(path).read_bytes()[:-64])
    entry = data.rindex(b"PK\x01\x02", 0, data.rindex(b"params.npy"))  # its directory entry
    claimed = 8 * fields["n_params"] + 128
    if zip64 or claimed >= 2**32:
        claimed = min(claimed, 2**32 - 1)
    struct.pack_into("<II", data, entry + 20, claimed, claimed)
    data[-2:] = b"\0\0"  # no comment yet: _seal adds it
    pathlib.Path(path).write_bytes(_seal(bytes(data)))


@under_address_space_limit
@pytest.mark.parametrize("claimed", [2**29, 2**31 - 2], ids=["4GiB", "16GiB"])
def test_a_file_claiming_huge_members_is_refused_before_allocating(tmp_path, model_file, claimed):
    bomb = tmp_path / "bomb.npz"
    _bomb(bomb, model_file, claimed, zip64=claimed > 2**30)
    assert bomb.stat().st_size < 2000
    done = _in_child(
        "import deltaprop as dp\n"
        f"try:\n    dp.load({str(bomb)!r})\n"
        "except dp.ModelFormatError as error:\n    print(error)\n",
        memory_limit=1 << 30,
    )
    assert done.returncode == 0, done.stderr
    assert "bomb.npz" in done.stdout


def test_a_large_file_that_is_no_model_is_refused_without_hashing_it(tmp_path, model_file):
    """Members that do not account for the file's size are refused before the seal's hash
    reads the whole file."""
    big = tmp_path / "big.npz"
    data = model_file.read_bytes()
    with open(big, "wb") as file:
        file.write(data[:-64])
        file.truncate(200 * 2**20)  # a sparse 200 MiB file
        file.write(data[-64:])
    hashed = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dp._container, "_check_seal", lambda *args: hashed.append(args))
        with pytest.raises(dp.ModelFormatError):
            dp.load(big)
    assert hashed == []


# ------------------------------------------------------------ files named by other files
@pytest.mark.parametrize(
    "name", ["", "/etc/passwd", "..", "../x", "a/../../x", "./", "a//..", "a/"], ids=repr
)
def test_open_inside_refuses_names_that_leave_the_directory(tmp_path, name):
    from deltaprop._files import open_inside

    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="not a relative path inside the directory"):
        open_inside(tmp_path, name)


def test_open_inside_reads_through_real_directories_only(tmp_path):
    from deltaprop._files import open_inside

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "w.bin").write_bytes(b"weights")
    with open_inside(tmp_path, "./a//b/w.bin") as file:
        assert file.read() == b"weights"
    (tmp_path / "link").symlink_to(tmp_path / "a")
    with pytest.raises(ValueError, match="'link' is a symbolic link"):
        open_inside(tmp_path, "link/b/w.bin")
    with pytest.raises(ValueError, match=r"'w\.bin' is not a directory"):
        open_inside(tmp_path, "a/b/w.bin/c")
    with pytest.raises(FileNotFoundError) as excinfo:
        open_inside(tmp_path, "a/missing")
    assert excinfo.value.filename == "a/missing"
    with pytest.raises(IsADirectoryError):
        open_inside(tmp_path, "a/b")


# ------------------------------------------------------------ an activation per layer
def _mixed_network() -> dp.Network:
    return dp.Network(
        [4, 6, 5, 3],
        activation=["leaky_relu", "tanh"],
        leaky_slope=[0.2, 0.01],
        output="softmax",
        cost="log_likelihood",
        seed=3,
    )


def test_a_mixed_network_round_trips_in_files_pickles_and_checkpoints(tmp_path):
    X, y = _data()
    net = _mixed_network()
    net.fit(X, y, epochs=2, batch_size=5, optimizer="adam", lr=0.05)
    net.save(tmp_path / "model.npz")
    fields, _ = _parts(tmp_path / "model.npz")
    assert (fields["activation"], fields["leaky_slope"]) == (["leaky_relu", "tanh"], [0.2, 0.01])
    for back in (dp.load(tmp_path / "model.npz"), pickle.loads(pickle.dumps(net))):
        assert back.architecture == net.architecture and back.activations == ("leaky_relu", "tanh")
        assert back.leaky_slopes == (0.2, 0.01)
        assert_same_model(back, net)
        np.testing.assert_array_equal(back.predict(X), net.predict(X))
    whole = _mixed_network()
    whole.fit(X, y, epochs=4, batch_size=5, lr=0.05, seed=1)
    part = _mixed_network()
    part.fit(X, y, epochs=2, batch_size=5, lr=0.05, seed=1, checkpoint=tmp_path / "run.ckpt")
    resumed = _mixed_network()
    resumed.fit(X, y, epochs=4, batch_size=5, lr=0.05, seed=1, checkpoint=tmp_path / "run.ckpt",
                resume=True)  # fmt: skip
    np.testing.assert_array_equal(resumed.params, whole.params)
    other = dp.Network([4, 6, 5, 3], activation=["tanh", "leaky_relu"], leaky_slope=[0.2, 0.01],
                       output="softmax", cost="log_likelihood", seed=3)  # fmt: skip
    with pytest.raises(ValueError, match=r"holds Network\(\[4, 6, 5, 3\], activation=\['leaky"):
        other.fit(X, y, epochs=4, checkpoint=tmp_path / "run.ckpt", resume=True)


def test_files_of_one_activation_are_written_and_read_as_before(tmp_path, model_file):
    """One activation (and one slope) for every hidden layer stays one value in the file,
    as files written before per-layer activations have it; such a file loads with that
    activation on each hidden layer, and one per layer that agree is the same network."""
    fields, arrays = _parts(model_file)
    assert (fields["activation"], fields["leaky_slope"]) == ("leaky_relu", 0.05)
    net = dp.load(model_file)
    assert (net.activation, net.leaky_slope) == ("leaky_relu", 0.05)
    assert (net.activations, net.leaky_slopes) == (("leaky_relu",), (0.05,))
    listed = dict(fields, activation=["leaky_relu"], leaky_slope=[0.05])
    _write_model(tmp_path / "listed.npz", listed, arrays)
    assert dp.load(tmp_path / "listed.npz").architecture == net.architecture


# ---------------------------------------------------------------- what it was trained on
def test_trained_on_is_saved_loaded_and_pickled(tmp_path):
    net = dp.Network([3, 4, 2], seed=0)
    path = tmp_path / "m.npz"
    net.save(path)
    assert dp.load(path).trained_on is None  # a file without the field loads as before
    net.trained_on = {"data": "digits", "test_fraction": 0.25, "seed": 7, "note": None}
    net.save(path)
    assert dp.load(path).trained_on == net.trained_on
    assert pickle.loads(pickle.dumps(net)).trained_on == net.trained_on


NAN_SEED = {"seed": float("nan")}  # JSON cannot hold NaN: refused on save, never in a file


@pytest.mark.parametrize(
    "trained_on",
    [
        "digits",
        NAN_SEED,
        {"data": ["a"]},
        {"": 1},
        {"flag": True},
        {"data": "x" * 5000},
        {str(i): i for i in range(17)},
    ],
    ids=["text", "nan", "list", "empty-name", "bool", "long", "17-entries"],
)
def test_an_invalid_trained_on_is_refused_on_save_and_on_load(tmp_path, trained_on):
    net = dp.Network([3, 4, 2], seed=0)
    net.trained_on = trained_on
    with pytest.raises(ValueError, match="trained_on: expected"):
        net.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()
    if trained_on is NAN_SEED:
        return
    net.trained_on = None
    net.save(tmp_path / "m.npz")
    fields, arrays = dp._container.read(tmp_path / "m.npz", dp.io._members)
    dp._container.write(tmp_path / "crafted.npz", {**fields, "trained_on": trained_on}, arrays)
    with pytest.raises(dp.ModelFormatError, match="trained_on"):
        dp.load(tmp_path / "crafted.npz")


# ---------------------------------------------------------------------------- input scaling
def _standardized(tmp_path, dtype="float64") -> tuple[dp.Network, pathlib.Path]:
    X, y = _data()
    net = _network(dtype)
    net.fit(X * 10 + 3, y, standardize=True, epochs=2, optimizer="adam")
    path = tmp_path / "standardized.npz"
    net.save(path)
    return net, path


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_input_scaling_is_saved_and_loaded(tmp_path, dtype):
    net, path = _standardized(tmp_path, dtype)
    loaded = dp.load(path)
    assert_same_model(loaded, net)
    np.testing.assert_array_equal(loaded.input_mean, net.input_mean)
    np.testing.assert_array_equal(loaded.input_scale, net.input_scale)
    X = _data()[0] * 10 + 3
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))
    fields, arrays = _parts(path)
    assert fields["input_scaling"] == "standard"
    assert arrays["input_mean"].dtype == np.float64 and arrays["input_scale"].shape == (4,)


def test_a_file_without_input_scaling_is_as_before_and_loads_without_one(model_file):
    fields, arrays = _parts(model_file)
    assert "input_scaling" not in fields and "input_mean" not in arrays
    assert dp.load(model_file).input_mean is None


BAD_SCALING = {
    "short": (_set_array("input_scale", lambda a: a[:3]), "input_scale"),
    "nan": (_set_array("input_mean", lambda a: np.where(np.arange(a.size) == 1, np.nan, a)), "NaN"),
    "zero-scale": (
        _set_array("input_scale", lambda a: np.where(np.arange(a.size) == 0, 0, a)),
        "> 0",
    ),
    "negative-scale": (_set_array("input_scale", lambda a: -a), "> 0"),
    "float32": (_set_array("input_mean", lambda a: a.astype(np.float32)), "input_mean"),
    "missing": (_delete("input_scale", "arrays"), "missing"),
    "unknown-kind": (_set(input_scaling="minmax"), "input_scaling"),
    "field-without-arrays": (
        lambda f, a: (a.pop("input_mean"), a.pop("input_scale")),
        "missing",
    ),
}


@pytest.mark.parametrize("damage, match", BAD_SCALING.values(), ids=BAD_SCALING.keys())
def test_a_file_with_an_invalid_input_scaling_is_refused(tmp_path, damage, match):
    _, path = _standardized(tmp_path)
    fields, arrays = _parts(path)
    damage(fields, arrays)
    _write_model(path, fields, arrays)
    _refused(path, match)


def test_arrays_of_a_scaling_without_its_field_are_refused(tmp_path):
    _, path = _standardized(tmp_path)
    fields, arrays = _parts(path)
    del fields["input_scaling"]
    _write_model(path, fields, arrays)
    _refused(path, "unexpected member")
