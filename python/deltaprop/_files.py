"""The one atomic file writer.

Model files, checkpoints, plots and the command line's ``.npy`` outputs all go through
`write_atomically`.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from typing import BinaryIO


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write a file atomically: ``path`` holds its old content or the whole new one.

    Never a part of the new one, even if the process dies midway.

    The bytes go to a temporary file in the same directory, are flushed to disk, get the
    permission bits of the file they replace (or what ``open`` would give a new file:
    0o666 less the umask), and the temporary file is renamed over ``path``; the directory is
    then flushed so that the rename survives a crash. On any error the temporary file is
    removed and ``path`` is untouched.

    Parameters
    ----------
    path : str or os.PathLike
        The destination file.
    write : callable
        Called once with the temporary file, open for writing in binary mode.

    Raises
    ------
    OSError
        The file cannot be written (the directory is missing or not writable, the disk is
        full...). Whatever ``write`` raises propagates too.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    mode = _new_file_mode(path)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".deltaprop-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)  # mkstemp creates the file readable by its owner only
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _new_file_mode(path: str) -> int:
    """Return the permission bits of the file at ``path``, or those ``open`` would give."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """Return the process's umask, from /proc where there is one.

    os.umask can only read it by setting it, which races with other threads creating files.
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
