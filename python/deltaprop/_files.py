"""Files written atomically and files opened safely.

Model files, checkpoints, plots and the command line's ``.npy`` outputs all go through
`write_atomically`; a file the program names itself in the shared temporary directory goes
into a `private_directory` first. Files are read through `open_regular`, which never
blocks on a FIFO or a device, and a file that another one names (an ONNX model's external
data) through `open_inside`, which never leaves the naming file's directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from typing import BinaryIO

_TEMPORARY_PREFIX = ".deltaprop-"
_TEMPORARY_SUFFIX = ".tmp"
# Read without blocking on a FIFO's open, without passing the descriptor to a child process.
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def write_atomically(path: str | bytes | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write a file atomically: ``path`` holds its old content or the whole new one.

    Never a part of the new one, even if the process dies midway.

    The bytes go to a temporary file in the same directory, are flushed to disk, get the
    permission bits of the file they replace (or what ``open`` would give a new file:
    0o666 less the umask), and the temporary file is renamed over ``path``; the directory
    is then flushed so that the rename survives a crash. A symbolic link is written
    through: its target gets the new content and the link stays. Only a regular file (or
    nothing) is ever replaced. On any error the temporary file is removed, ``path`` is
    untouched and the error names ``path``. Temporary files that a killed process left in
    the directory are removed.

    Parameters
    ----------
    path : str, bytes or os.PathLike
        The destination file.
    write : callable
        Called once with the temporary file, open for writing in binary mode.

    Raises
    ------
    TypeError
        ``path`` is not a path.
    ValueError
        ``path`` is a device, a FIFO or a socket.
    OSError
        ``path`` is a directory, or the file cannot be written (the directory is missing
        or not writable, the disk is full...); the error names ``path``. Whatever
        ``write`` raises propagates too.
    """
    import tempfile  # here only: with shutil and random, costly to import

    path = _path_text(path)
    target = _regular_destination(path)
    directory = os.path.dirname(target)
    with _naming(path):
        _remove_stale_temporaries(directory)
        mode = _new_file_mode(target)
        fd, temporary = tempfile.mkstemp(
            dir=directory, prefix=f"{_TEMPORARY_PREFIX}{os.getpid()}-", suffix=_TEMPORARY_SUFFIX
        )
        try:
            with os.fdopen(fd, "wb") as file:
                write(file)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, mode)  # mkstemp creates the file readable by its owner only
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        _fsync_directory(directory)


def private_directory() -> str:
    """Create a new directory in the temporary directory that only this user can enter.

    For a file the program names itself there (the command line keeping a model it could
    not save where asked): the temporary directory is shared, and a name chosen in it
    could already be taken by anything another user planted, a symbolic link to a victim
    file above all. The directory is created exclusively under a random name (as
    `tempfile.mkdtemp` does: ``mkdir`` never follows a link) with mode 0o700, so that
    nothing in it can be planted or read by another user.

    Returns
    -------
    str
        The path of the new, empty directory.

    Raises
    ------
    OSError
        The temporary directory is missing, full or not writable.
    """
    import tempfile  # here only: with shutil and random, costly to import

    return tempfile.mkdtemp(prefix=_TEMPORARY_PREFIX.lstrip("."))


def _path_text(path: str | bytes | os.PathLike) -> str:
    """Return a path (str, bytes decoded as the file system does, os.PathLike) as str.

    Raises
    ------
    TypeError
        Anything else (an int would be taken for a file descriptor).
    """
    try:
        return os.fsdecode(path)
    except TypeError:
        raise TypeError(
            f"path: expected str, bytes or os.PathLike, got {type(path).__name__}"
        ) from None


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open a regular file for reading in binary mode.

    Anything else is refused before a byte is read: a FIFO would block forever, a device
    could be endless.

    Parameters
    ----------
    path : str or os.PathLike
        The file to open.

    Returns
    -------
    BinaryIO
        The open file.

    Raises
    ------
    ValueError
        ``path`` is a FIFO, a device or a socket.
    OSError
        ``path`` cannot be opened (missing, a directory, no permission).
    """
    name = os.fspath(path)
    return _regular_file(os.open(name, _READ_FLAGS), name)


def open_inside(directory: str | os.PathLike, name: str) -> BinaryIO:
    """Open the file ``name`` of ``directory`` for reading, never through a link or out of it.

    For a file named by another file (an ONNX model's external data) that an attacker may
    have written: ``name`` is resolved one component at a time from a descriptor of
    ``directory`` (``openat`` with ``O_NOFOLLOW``), so that no symbolic link is followed
    and no ``..`` climbs out, and what was opened is then checked by its descriptor, never
    by its name again: a name checked and then opened could be swapped in between. The
    file must be regular and have no other name (a hard link may be to a file outside).

    Parameters
    ----------
    directory : str or os.PathLike
        The directory the file must be in (its own path may hold links: it is trusted).
    name : str
        The file's path relative to ``directory``, ``/``-separated.

    Returns
    -------
    BinaryIO
        The open file.

    Raises
    ------
    ValueError
        ``name`` is empty, absolute, a directory's (ends in ``/``) or climbs out (``..``),
        or the file or a directory on its way is a symbolic link, or the file is not a
        regular file or has hard links.
    OSError
        The file cannot be opened (missing, no permission).
    """
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if name.startswith("/") or name.endswith("/") or ".." in parts or not parts:
        raise ValueError(f"{name!r}: not a relative path inside the directory")
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        for part in parts[:-1]:
            inner = _open_no_link(part, name, _READ_FLAGS | os.O_DIRECTORY, fd)
            os.close(fd)
            fd = inner
        file = _open_no_link(parts[-1], name, _READ_FLAGS, fd)
    finally:
        os.close(fd)
    opened = _regular_file(file, name)
    if os.fstat(opened.fileno()).st_nlink != 1:
        opened.close()
        raise ValueError(f"{name!r}: has other names (hard links), maybe outside the directory")
    return opened


def _open_no_link(part: str, name: str, flags: int, directory_fd: int) -> int:
    """Open ``part`` in the directory ``directory_fd``; refuse a symbolic link there."""
    try:
        return os.open(part, flags | os.O_NOFOLLOW, dir_fd=directory_fd)
    except OSError as error:
        # O_NOFOLLOW refuses a link with ELOOP (Linux; EMLINK on FreeBSD), or with ENOTDIR
        # where O_DIRECTORY asks for a directory: which one it was, lstat says.
        if error.errno not in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR):
            raise type(error)(error.errno, error.strerror, name) from None
        mode = os.stat(part, dir_fd=directory_fd, follow_symlinks=False).st_mode
        what = "a symbolic link" if stat.S_ISLNK(mode) else "not a directory"
        raise ValueError(f"{name!r}: {part!r} is {what}") from None


def _regular_file(fd: int, name: str) -> BinaryIO:
    """Return the open descriptor ``fd`` as a blocking binary file if it is a regular file.

    Otherwise close it and raise: IsADirectoryError for a directory, ValueError for a FIFO,
    a device or a socket.
    """
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
        if not stat.S_ISREG(mode):
            raise ValueError(f"{name}: not a regular file (a FIFO, device or socket)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _regular_destination(path: str) -> str:
    """Return the file a write to ``path`` replaces, symbolic links followed.

    Refuse it unless it is a regular file or absent.
    """
    target = os.path.realpath(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if not stat.S_ISREG(mode):
        raise ValueError(
            f"{path}: not a regular file (a device, FIFO or socket); only a regular file "
            "or a new one is written"
        )
    return target


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
    """OS errors name ``path``, not the temporary file they happened to."""
    try:
        yield
    except OSError as error:
        if error.filename == path or error.errno is None:
            raise
        raise type(error)(error.errno, error.strerror, path) from error


def _remove_stale_temporaries(directory: str) -> None:
    """Remove the temporary files of writers that died (their pid names no live process)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(_TEMPORARY_PREFIX) and name.endswith(_TEMPORARY_SUFFIX)):
            continue
        pid = name[len(_TEMPORARY_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or an absurd number: leave its file alone
    return True


def _new_file_mode(path: str) -> int:
    """Return the permission bits of ``path``, or those ``open`` would give a new file."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """Return the process's umask.

    Read from /proc where there is one: os.umask can only read it by setting it, which
    races with other threads creating files.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _fsync_directory(directory: str) -> None:
    """Make a rename durable; best effort (some platforms cannot open directories)."""
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
