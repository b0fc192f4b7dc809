"""Data-parallel training over MPI: what `fit(comm=...)` adds to one process's training.

Every process (rank) of the communicator runs the same `fit`. Each trains its share of
every global mini-batch; the core sums two arrays over the ranks per batch, each with one
MPI allreduce in place: the statuses after the forward pass (`Group.reduce_statuses`: cost,
sample weight, non-finite flags, stop requests), then the step (`Group.reduce`: the new
weights, the new velocity or the mean gradient, as the optimizer takes it), so that every
rank makes the same update and the same decisions. Everything else a rank decides alone
(bad input, a callback's exception, Ctrl-C, a stop) goes through one collective agreement,
so that no rank waits forever for another.

mpi4py is imported here only, and only when a communicator is given.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

# What a rank tells the others at an agreement: its error (its type's module and name,
# and its message), if any. Names, not classes: a class defined in a function does not
# pickle, and a rank failing to send its report would leave the others waiting.
_Report = "tuple[str, str, str] | None"
# Set on an exception that every rank raises (see Group.raised_by_all).
_RAISED_BY_ALL = "_deltaprop_raised_by_every_rank"


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(
            "comm: data-parallel training needs mpi4py and an MPI runtime: "
            "pip install 'deltaprop[mpi]'"
        ) from error
    return MPI


class Group:
    """The ranks of one data-parallel `fit`, over an mpi4py communicator.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm
        The communicator; every rank of it calls `fit` with the same arguments.
    sharded : bool
        Each rank passes its own rows (True), or every rank the same full data (False).

    Raises
    ------
    TypeError
        ``comm`` is not an mpi4py intracommunicator.
    ImportError
        mpi4py is not installed.
    """

    def __init__(self, comm: Any, sharded: bool) -> None:
        # Checked before mpi4py is imported (importing it starts MPI in this process).
        if not all(hasattr(comm, name) for name in ("Allreduce", "Get_rank", "allgather")):
            raise TypeError(f"comm: expected an mpi4py intracommunicator, got {comm!r}")
        self._MPI = _mpi()
        if not isinstance(comm, self._MPI.Intracomm):
            raise TypeError(f"comm: expected an mpi4py intracommunicator, got {comm!r}")
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.sharded = bool(sharded)
        self.interrupted = False  # Ctrl-C seen by this rank (see catching_interrupts)
        self.stop_seen = False  # some rank asked to stop during the last core call

    # --------------------------------------------------------------------- agreement
    def agree(self, error: BaseException | None) -> None:
        """Raise on every rank the error of the first rank that had one (collective).

        Parameters
        ----------
        error : BaseException or None
            This rank's error, or None.

        Raises
        ------
        Exception
            The first failing rank's error, of its type, its message prefixed by the rank
            (every rank raises the same; the failing rank chains its own original).
        """
        reports: list[_Report] = self.comm.allgather(_report(error))
        for rank, report in enumerate(reports):
            if report is not None:
                raise self.raised_by_all(_rebuild(report, rank)) from error
        return None

    @contextlib.contextmanager
    def agreeing(self) -> Iterator[None]:
        """Run a block on every rank, then `agree` on its error (Exception only).

        Yields
        ------
        None
        """
        error = None
        try:
            yield
        except Exception as caught:  # each rank's own, then shared by all
            error = caught
        self.agree(error)

    def check_same(self, what: str, value: Any) -> None:
        """Raise ValueError on every rank if the ranks' ``value`` differ (collective).

        Parameters
        ----------
        what : str
            What ``value`` is, for the message.
        value : object
            Comparable with ``==`` and picklable; a dict is compared field by field (nested
            dicts too), and the message names the first field that differs.

        Raises
        ------
        ValueError
            Two ranks differ.
        """
        values = [_fields_of(one) for one in self.comm.allgather(value)]
        for rank, other in enumerate(values):
            for field in (*values[0], *(name for name in other if name not in values[0])):
                mine, first = other.get(field, _ABSENT), values[0].get(field, _ABSENT)
                if mine != first:
                    name = f"{what}: {field}" if field else what
                    raise self.raised_by_all(
                        ValueError(
                            f"{name}: rank {rank} has {mine!r}, rank 0 has {first!r}; every "
                            "rank must call fit with the same arguments"
                        )
                    )

    def any(self, flag: bool) -> bool:
        """Return whether ``flag`` is true on any rank (collective).

        Parameters
        ----------
        flag : bool
            This rank's flag.

        Returns
        -------
        bool
        """
        return bool(self.comm.allreduce(bool(flag), op=self._MPI.LOR))

    def largest(self, value: float) -> float:
        """Return the largest ``value`` of every rank (collective).

        Parameters
        ----------
        value : float
            This rank's.

        Returns
        -------
        float
        """
        return float(self.comm.allreduce(float(value), op=self._MPI.MAX))

    def broadcast_seed(self, seed: int | None) -> int | None:
        """Return rank 0's seed, drawing one there when it is None.

        Parameters
        ----------
        seed : int or None
            This rank's seed.

        Returns
        -------
        int
        """
        if self.rank == 0 and seed is None:
            seed = int(np.random.SeedSequence().generate_state(2, np.uint64)[0])
        return self.broadcast_value(seed)

    def broadcast_value(self, value: Any) -> Any:
        """Return rank 0's ``value`` (collective).

        Parameters
        ----------
        value : object
            Picklable.

        Returns
        -------
        object
        """
        return self.comm.bcast(value, root=0)

    def broadcast(self, arrays: list[np.ndarray]) -> None:
        """Overwrite ``arrays`` on every rank with rank 0's, in place.

        Parameters
        ----------
        arrays : list of ndarray
            C-contiguous; the same shapes and dtypes on every rank.
        """
        for array in arrays:
            self.comm.Bcast(array, root=0)

    def shard_sizes(self, n_local: int) -> np.ndarray:
        """Return every rank's number of rows, rank by rank.

        Parameters
        ----------
        n_local : int
            This rank's.

        Returns
        -------
        ndarray of int64 of shape (size,)
        """
        return np.array(self.comm.allgather(int(n_local)), dtype=np.int64)

    # ------------------------------------------------------------------ reductions
    # The step is summed in buckets of layers of at least this size, each as soon as the
    # backward pass has written it: its update then reads W and V while they are in cache.
    bucket_bytes = 2**20

    @property
    def lead(self) -> bool:
        """Whether this rank adds, once for all, what every rank holds to a summed step."""
        return self.rank == 0

    def reduce_statuses(self, statuses: np.ndarray) -> None:
        """Sum a batch's statuses over the ranks, in place: the core's first per-batch seam.

        A Ctrl-C seen by this rank becomes a request to stop after this batch (the last
        entry), which every rank then sees; `stop_seen` records it.

        Parameters
        ----------
        statuses : ndarray of shape (REDUCTION_TAIL,)
            Written by the core (see `Network.train_rows`).
        """
        if self.interrupted:
            statuses[-1] += 1
        self.comm.Allreduce(self._MPI.IN_PLACE, statuses, op=self._MPI.SUM)
        self.stop_seen = self.stop_seen or bool(statuses[-1] > 0)

    def reduce(self, values: np.ndarray) -> None:
        """Sum a batch's step over the ranks, in place: the core's second per-batch seam.

        Parameters
        ----------
        values : ndarray of shape (n,)
            Each rank's share of a bucket of the step (the parameters of some layers),
            written by the core (see `Network.train_rows`).
        """
        self.comm.Allreduce(self._MPI.IN_PLACE, values, op=self._MPI.SUM)

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Return ``values`` (float64) summed over the ranks.

        Parameters
        ----------
        values : ndarray
            This rank's.

        Returns
        -------
        ndarray
        """
        total = np.ascontiguousarray(values, dtype=np.float64)
        self.comm.Allreduce(self._MPI.IN_PLACE, total, op=self._MPI.SUM)
        return total

    def mean(self, metric: Callable[..., float], X: np.ndarray, *args: Any) -> float:
        """Return a per-sample mean metric over the rows of every rank.

        Parameters
        ----------
        metric : callable
            ``metric(X, *args)``: the mean over the rows of ``X`` (not called without rows).
        X : ndarray of shape (n_local, n_0)
            This rank's rows.
        *args : object
            The rest of the metric's arguments (the rows' targets).

        Returns
        -------
        float
        """
        local = metric(X, *args) * len(X) if len(X) else 0.0
        total, count = self.sum(np.array([local, len(X)]))
        return float(total / count)

    # ---------------------------------------------------------------------- shares
    def share(self, n: int) -> slice:
        """Return this rank's contiguous share of n rows held by every rank.

        Parameters
        ----------
        n : int
            The number of rows.

        Returns
        -------
        slice
        """
        return slice(self.rank * n // self.size, (self.rank + 1) * n // self.size)

    def replicated_shares(self, n: int, batch_size: int, batches: range) -> np.ndarray:
        """Return this rank's `replicated_shares` of global batches.

        Parameters
        ----------
        n, batch_size : int
            Rows in the epoch, and the global batch size.
        batches : range
            The global batches of this core call.

        Returns
        -------
        ndarray of int64 of shape (3, len(batches))
        """
        return replicated_shares(n, batch_size, batches, self.rank, self.size)

    def sharded_shares(self, sizes: np.ndarray, steps: int, batches: range) -> np.ndarray:
        """Return this rank's `sharded_shares` of global batches.

        Parameters
        ----------
        sizes : ndarray of int64 of shape (size,)
            Every rank's number of rows.
        steps : int
            Global batches per epoch.
        batches : range
            The global batches of this core call.

        Returns
        -------
        ndarray of int64 of shape (3, len(batches))
        """
        return sharded_shares(sizes, steps, batches, self.rank)

    # -------------------------------------------------------------------- Ctrl-C
    @contextlib.contextmanager
    def catching_interrupts(self) -> Iterator[None]:
        """Turn Ctrl-C (SIGINT, which mpiexec forwards) into a flag for the whole run.

        A rank that raised KeyboardInterrupt alone would leave the others waiting in a
        collective forever; the flag reaches every rank with the next reduction or
        agreement instead, and all of them stop after the same batch. Only the main thread
        can catch signals; elsewhere nothing changes.

        Yields
        ------
        None
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def note(signum, frame) -> None:
            self.interrupted = True

        previous = signal.signal(signal.SIGINT, note)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def check_stop(self, stop: bool, error: BaseException | None) -> bool:
        """Agree at the end of an epoch on errors, Ctrl-C and stop requests (collective).

        Parameters
        ----------
        stop : bool
            Whether this rank's callbacks or early stopping ask to stop.
        error : BaseException or None
            An exception this rank's callbacks raised.

        Returns
        -------
        bool
            Whether any rank asks to stop.

        Raises
        ------
        Exception
            The first rank's callback error, on every rank (see `agree`).
        KeyboardInterrupt
            Some rank saw Ctrl-C.
        """
        reports = self.comm.allgather((bool(stop), self.interrupted, _report(error)))
        for rank, (_, _, report) in enumerate(reports):
            if report is not None:
                raise self.raised_by_all(_rebuild(report, rank)) from error
        self.raise_if_interrupted(any(interrupted for _, interrupted, _ in reports))
        return any(asked for asked, _, _ in reports)

    def raise_if_interrupted(self, interrupted: bool) -> None:
        """Raise KeyboardInterrupt if ``interrupted`` (the same on every rank).

        Parameters
        ----------
        interrupted : bool
            Whether some rank saw Ctrl-C.

        Raises
        ------
        KeyboardInterrupt
        """
        if interrupted:
            raise self.raised_by_all(
                KeyboardInterrupt("Ctrl-C on some rank: every rank stopped after one batch")
            )

    # ---------------------------------------------------------------- lone errors
    @staticmethod
    def raised_by_all(error: BaseException) -> BaseException:
        """Mark an exception that every rank raises at the same point, and return it.

        Parameters
        ----------
        error : BaseException
            Raised on every rank (after an agreement, or from numbers every rank shares).

        Returns
        -------
        BaseException
            ``error``.
        """
        setattr(error, _RAISED_BY_ALL, True)
        return error

    @contextlib.contextmanager
    def aborting_on_lone_errors(self) -> Iterator[None]:
        """Abort the whole job (MPI_Abort) when this rank alone raises.

        The other ranks would wait for it in their next collective forever: an unexpected
        error (in a metric, in MPI itself) ends every rank, with a non-zero exit, after the
        error is printed. Exceptions marked `raised_by_all` pass.

        Yields
        ------
        None
        """
        try:
            yield
        except BaseException as error:
            if not getattr(error, _RAISED_BY_ALL, False):
                print(f"deltaprop: rank {self.rank} of data-parallel training failed alone; "
                      "aborting every rank:", file=sys.stderr)  # fmt: skip
                traceback.print_exception(error, file=sys.stderr)
                sys.stderr.flush()
                self.comm.Abort(1)
            raise


class _Absent:
    """A field one rank's value lacks."""

    def __repr__(self) -> str:
        return "nothing"


_ABSENT = _Absent()


def _fields_of(value: Any, prefix: str = "") -> dict[str, Any]:
    """Return a (nested) dict's leaves by dotted name; anything else under the name ""."""
    if not isinstance(value, dict):
        return {prefix: value}
    fields: dict[str, Any] = {}
    for key, inner in value.items():
        fields.update(_fields_of(inner, f"{prefix}.{key}" if prefix else str(key)))
    return fields


def _report(error: BaseException | None) -> _Report:
    if error is None:
        return None
    return type(error).__module__, type(error).__qualname__, str(error)


def _rebuild(report: tuple[str, str, str], rank: int) -> BaseException:
    """Return the error a rank reported, to raise on every rank."""
    module, name, message = report
    text = f"rank {rank}: {message}"
    try:
        kind = importlib.import_module(module)
        for part in name.split("."):
            kind = getattr(kind, part)
        return kind(text)
    except Exception:  # a class defined in a function, or one that wants other arguments
        return RuntimeError(f"{name}: {text}")


def replicated_shares(n: int, batch_size: int, batches: range, rank: int, size: int) -> np.ndarray:
    """Return a rank's share of global batches of the same n rows on every rank.

    Batch b holds positions [b B, min(n, (b + 1) B)) of the epoch's order; rank r of
    ``size`` trains the r-th of ``size`` near-equal contiguous parts of it (possibly none).

    Parameters
    ----------
    n : int
        Rows in the epoch.
    batch_size : int
        B, the global batch size.
    batches : range
        The global batches of one core call.
    rank, size : int
        The rank, and the number of ranks.

    Returns
    -------
    ndarray of int64 of shape (3, len(batches))
        Rows begin and end (positions in the epoch's order) and the position of the first
        in its global batch: `Network.train_rows`'s ``shares``.
    """
    b = np.arange(batches.start, batches.stop, dtype=np.int64)
    first = b * batch_size
    rows = np.minimum(n, first + batch_size) - first
    begin, end = rows * rank // size, rows * (rank + 1) // size
    return np.ascontiguousarray(np.stack([first + begin, first + end, begin]))


def sharded_shares(sizes: np.ndarray, steps: int, batches: range, rank: int) -> np.ndarray:
    """Return a rank's rows of the global batches of sharded data.

    An epoch has ``steps`` global batches; at step k rank q contributes its rows
    [k n_q // steps, (k + 1) n_q // steps) (of its own epoch order): every shard is spread
    evenly over the epoch, and no row is repeated or left out. A global batch holds the rows
    of rank 0, then those of rank 1, and so on.

    Parameters
    ----------
    sizes : ndarray of int64 of shape (size,)
        Every rank's number of rows, n_q.
    steps : int
        Global batches per epoch.
    batches : range
        The global batches of one core call.
    rank : int
        The rank.

    Returns
    -------
    ndarray of int64 of shape (3, len(batches))
        As `replicated_shares`.
    """
    k = np.arange(batches.start, batches.stop, dtype=np.int64)[:, None]
    starts = k * sizes[None, :] // steps
    contributions = (k + 1) * sizes[None, :] // steps - starts
    before = contributions[:, :rank].sum(axis=1)
    mine = starts[:, rank]
    return np.ascontiguousarray(np.stack([mine, mine + contributions[:, rank], before]))
