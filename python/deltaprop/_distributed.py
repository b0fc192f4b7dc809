"""Data-parallel training over MPI: what `fit(comm=...)` adds to one process's training.

Every process (rank) of the communicator runs the same `fit`. Each trains its share of
every global mini-batch; the core sums two arrays over the ranks per batch, each with one
MPI allreduce in place: the statuses after the forward pass (`Group.reduce_statuses`: cost,
sample weight, non-finite flags, stop requests), then the step (`Group.reduce`: the new
weights, the new velocity or the mean gradient, as the optimizer takes it), so that every
rank makes the same update and the same decisions. Everything else a rank decides alone
(bad input, a callback's exception, Ctrl-C, a stop) goes through one collective agreement,
so that no rank waits forever for another.

One process is a group of one (`Alone`): the same interface, each collective trivial, so
that training code is written once and never asks which group it has (`group` chooses).
mpi4py is imported here only, and only when a communicator is given.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import _data, _sparse

# What a rank tells the others at an agreement: its error (its type's module and name,
# and its message), if any. Names, not classes: a class defined in a function does not
# pickle, and a rank failing to send its report would leave the others waiting.
_Report = "tuple[str, str, str] | None"
# Set on an exception that every rank raises (see Group.raised_by_all).
_RAISED_BY_ALL = "_deltaprop_raised_by_every_rank"


def group(comm: Any, sharded: Any) -> Group | Alone:
    """Return the processes of one `fit`: `Alone` without ``comm``, else a `Group` of ranks.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm or None
        `fit`'s ``comm``.
    sharded : bool
        `fit`'s ``sharded``.

    Returns
    -------
    Group or Alone

    Raises
    ------
    ValueError
        ``sharded`` without ``comm``.
    TypeError, ImportError
        See `Group`.
    """
    if comm is None:
        if sharded:
            raise ValueError("sharded: applies to data-parallel training only (give comm)")
        return Alone()
    return Group(comm, bool(sharded))


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
        self.shard_sizes: np.ndarray | None = None  # every rank's rows (see total_rows)

    @property
    def split_stream(self) -> int | None:
        """Drawn into the validation split with the seed: each shard splits its own way."""
        return self.rank if self.sharded else None

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

    def shard_sizes_of(self, n_local: int) -> np.ndarray:
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

    # ------------------------------------------------------------------------ data
    def validate(self, net: Any, X: Any, Y: Any, check_finite: bool = True):
        """`Network.validate`, for the rows of this rank (X always checked for finiteness).

        A rank's shard of sharded data may have no rows. Of replicated data (an `np.memmap`
        of the network's dtype, say), each rank reads only its share of the rows to check
        them: the agreement that follows makes every rank raise what any found.

        Parameters
        ----------
        net : Network
            The network to train.
        X, Y : array_like
            This rank's data.
        check_finite : bool, default=True
            Ignored: every rank checks its share before training, so that all raise at once.

        Returns
        -------
        X, Y : ndarray
            In the core's layout.
        """
        if self.sharded:
            shape = X.shape if _sparse.is_sparse(X) else np.shape(X)
            if shape[:1] != (0,):
                return net.validate(X, Y)
            n_inputs, n_outputs = net.architecture.sizes[0], net.architecture.sizes[-1]
            if len(shape) != 2 or shape[1] != n_inputs or len(Y) != 0:
                raise ValueError(
                    f"X, Y: an empty shard must be X of shape (0, {n_inputs}) and Y with 0 rows"
                )
            return np.empty((0, n_inputs), net.dtype), np.empty((0, n_outputs), net.dtype)
        X = _data.inputs(X, net.architecture, check_finite=False)
        _data.require_finite(X[self.share(len(X))], "X")
        return X, _data.targets(Y, len(X), net.architecture)

    def defer_input_check(self, check: Callable[[], Any]) -> None:
        """Return None: every rank checks X before training (see `validate`).

        A rank alone cannot undo an epoch the others trained with it.

        Parameters
        ----------
        check : callable
            What would check X during the first epoch; not called.
        """
        return None

    def shard_values(self, value: Any) -> list:
        """Return every rank's ``value`` of sharded data, else ``[value]`` (collective).

        Every rank gathers, whatever its ``sharded``: ranks that disagree on it still call
        the same collectives, and `check_same` names the difference.

        Parameters
        ----------
        value : object
            Picklable: what this rank's rows give (the class counts of `_class_weight`).

        Returns
        -------
        list
            One value per rank holding its own rows; replicated data is every rank's.
        """
        values = self.comm.allgather(value)
        return values if self.sharded else [value]

    def total_rows(self, n_local: int) -> int:
        """Return the rows of an epoch over every rank (collective with sharded data).

        Parameters
        ----------
        n_local : int
            This rank's training rows.

        Returns
        -------
        int
        """
        if not self.sharded:
            return n_local
        self.shard_sizes = self.shard_sizes_of(n_local)
        n = int(self.shard_sizes.sum())
        if n == 0:
            raise self.raised_by_all(ValueError("X: the shards of every rank hold no rows"))
        return n

    def own_rows(self, data: tuple) -> tuple:
        """Return the rows this rank evaluates metrics on: its share of replicated data.

        Parameters
        ----------
        data : tuple (X, Y, sample_weight or None)
            The training data of this rank.

        Returns
        -------
        tuple (X, Y, sample_weight or None)
        """
        if self.sharded:
            return data
        share = self.share(len(data[0]))
        return tuple(None if array is None else array[share] for array in data)

    def epoch_calls(
        self, data: tuple, n: int, batch_size: int, rows_per_call: int, rng, shuffle: bool
    ) -> list[tuple[int, dict[str, Any]]]:
        """Return a rank's core calls of an epoch: (rows, `_minibatch.train_rows` arguments).

        Replicated data: the epoch's order is drawn as in one process, and each global
        batch is shared among the ranks. Sharded data: each rank draws an order of its own
        rows, and contributes its next rows to each global batch.

        Parameters
        ----------
        data : tuple (X, Y, sample_weight or None)
            This rank's training data.
        n, batch_size : int
            Rows of the epoch over every rank, and the global batch size.
        rows_per_call : int
            About how many rows (of every rank) a call trains, in whole batches.
        rng : numpy.random.Generator
            The run's, the same on every rank.
        shuffle : bool
            Visit the rows in a random order.

        Returns
        -------
        list of (int, dict)
        """
        X, Y, sample_weight = data
        steps = -(-n // batch_size)
        if self.sharded:
            seed = int(rng.integers(2**63))  # the same on every rank
            own = len(X)
            order = (
                np.random.default_rng([seed, self.rank]).permutation(own)
                if shuffle
                else np.arange(own, dtype=np.int64)
            )

            def shares(batches: range) -> np.ndarray:
                return self.sharded_shares(self.shard_sizes, steps, batches)
        else:
            order = rng.permutation(n) if shuffle else np.arange(n, dtype=np.int64)

            def shares(batches: range) -> np.ndarray:
                return self.replicated_shares(n, batch_size, batches)

        per_call = max(1, rows_per_call // batch_size)
        calls = []
        for first in range(0, steps, per_call):
            batches = range(first, min(steps, first + per_call))
            rows = min(n, batches.stop * batch_size) - first * batch_size
            # The call gets the stretch of the order its shares lie in, positions from 0.
            share = shares(batches)
            start, stop = share[0, 0], share[1, -1]
            share[:2] -= start
            arguments = dict(
                X=X,
                Y=Y,
                rows=order[start:stop],
                sample_weight=sample_weight,
                first_batch=first,
                shares=share,
                reduction=self,
            )
            calls.append((rows, arguments))
        return calls

    def objective(
        self, net: Any, data: tuple, lmbda: float, l1: float, n_samples: int
    ) -> tuple[float, np.ndarray]:
        """Return the full-batch objective and its gradient over the rows of every rank.

        One reduction: the gradient and cost summed over each rank's rows (each times its
        sample weight), their weight, and Ctrl-C (which every rank then sees).

        Parameters
        ----------
        net : Network
            The network, at the point to evaluate.
        data : tuple (X, Y, sample_weight or None)
            This rank's own rows (see `own_rows`).
        lmbda, l1 : float
            Regularisation strengths, added once.
        n_samples : int
            Rows over every rank.

        Returns
        -------
        cost : float
        gradient : ndarray of shape (n_params,)

        Raises
        ------
        ValueError
            The cost or its gradient overflowed on some rank.
        KeyboardInterrupt
            Some rank saw Ctrl-C.
        """
        X, Y, sample_weight = data
        sums = np.zeros(net.params.size + 3)
        weight = float(len(X) if sample_weight is None else sample_weight.sum())
        if weight > 0:
            try:
                cost, gradient = net.objective(X, Y, sample_weight=sample_weight)
                sums[:-3], sums[-3] = gradient * weight, cost * weight
            except ValueError:  # an overflow here: every rank sees a NaN cost
                sums[-3] = math.nan
        sums[-2], sums[-1] = weight, self.interrupted
        sums = self.sum(sums)
        self.raise_if_interrupted(sums[-1] > 0)
        if not math.isfinite(sums[-3]):
            raise ValueError("the cost or its gradient overflowed (is not finite) on some rank")
        penalty, gradient = net.regularisation(lmbda=lmbda, l1=l1, n_samples=n_samples)
        return sums[-3] / sums[-2] + penalty, sums[:-3] / sums[-2] + gradient

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
            Written by the core (see `_minibatch.train_rows`).
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
            written by the core (see `_minibatch.train_rows`).
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


class Alone:
    """One process training alone: a `Group` of one, each collective trivial.

    Its errors and Ctrl-C are its own, raised where they happen; nothing is shared, summed
    or compared, and the core trains every row without a reduction.
    """

    rank, size, sharded, comm = 0, 1, False, None
    interrupted = stop_seen = False
    split_stream = None

    # --------------------------------------------------------------------- agreement
    def agree(self, error: BaseException | None) -> None:
        """Raise ``error``, if any.

        Parameters
        ----------
        error : BaseException or None
            This process's error, or None.
        """
        if error is not None:
            raise error

    def agreeing(self) -> contextlib.AbstractContextManager[None]:
        """Run a block, its errors raised as they are.

        Returns
        -------
        context manager
        """
        return contextlib.nullcontext()

    def check_same(self, what: str, value: Any) -> None:
        """Do nothing: one process agrees with itself.

        Parameters
        ----------
        what : str
            What ``value`` is.
        value : object
            Ignored.
        """

    def any(self, flag: bool) -> bool:
        """Return ``flag``.

        Parameters
        ----------
        flag : bool
            This process's flag.

        Returns
        -------
        bool
        """
        return bool(flag)

    def largest(self, value: float) -> float:
        """Return ``value``.

        Parameters
        ----------
        value : float
            This process's.

        Returns
        -------
        float
        """
        return float(value)

    def broadcast_seed(self, seed: int | None) -> int | None:
        """Return ``seed`` (None stays None: fresh entropy where it is used).

        Parameters
        ----------
        seed : int or None
            The seed.

        Returns
        -------
        int or None
        """
        return seed

    def broadcast_value(self, value: Any) -> Any:
        """Return ``value``.

        Parameters
        ----------
        value : object
            Anything.

        Returns
        -------
        object
        """
        return value

    def broadcast(self, arrays: list[np.ndarray]) -> None:
        """Do nothing: the arrays are this process's own.

        Parameters
        ----------
        arrays : list of ndarray
            Left as they are.
        """

    # ------------------------------------------------------------------------ data
    def validate(self, net: Any, X: Any, Y: Any, check_finite: bool = True):
        """`Network.validate`; without ``check_finite``, X is not checked for NaN and infinity.

        Parameters
        ----------
        net : Network
            The network to train.
        X, Y : array_like
            The data.
        check_finite : bool, default=True
            False when the first epoch checks X instead (see `fit`).

        Returns
        -------
        X, Y : ndarray
            In the core's layout.
        """
        if check_finite:
            return net.validate(X, Y)
        X = _data.inputs(X, net.architecture, check_finite=False)
        return X, _data.targets(Y, len(X), net.architecture)

    def defer_input_check(self, check: Callable[[], Any]) -> Any:
        """Return ``check()``: X is checked for NaN and infinity during the first epoch.

        Parameters
        ----------
        check : callable
            Makes what restores the network if the first epoch finds X not finite.

        Returns
        -------
        object
            What ``check`` returns.
        """
        return check()

    def shard_values(self, value: Any) -> list:
        """Return ``[value]``: the rows are this process's.

        Parameters
        ----------
        value : object
            What the rows give.

        Returns
        -------
        list
        """
        return [value]

    def total_rows(self, n_local: int) -> int:
        """Return ``n_local``: the epoch's rows are this process's.

        Parameters
        ----------
        n_local : int
            The training rows.

        Returns
        -------
        int
        """
        return n_local

    def own_rows(self, data: tuple) -> tuple:
        """Return ``data``: every row is this process's.

        Parameters
        ----------
        data : tuple (X, Y, sample_weight or None)
            The training data.

        Returns
        -------
        tuple
        """
        return data

    def epoch_calls(
        self, data: tuple, n: int, batch_size: int, rows_per_call: int, rng, shuffle: bool
    ) -> list[tuple[int, dict[str, Any]]]:
        """Return the core calls of an epoch: (rows, `_minibatch.train_rows` arguments).

        The rows of the epoch's order, or of the data in storage order (no copy).

        Parameters
        ----------
        data : tuple (X, Y, sample_weight or None)
            The training data.
        n, batch_size : int
            Rows of the epoch, and the batch size.
        rows_per_call : int
            Rows a call trains, in whole batches.
        rng : numpy.random.Generator
            The run's source of row orders.
        shuffle : bool
            Visit the rows in a random order.

        Returns
        -------
        list of (int, dict)
        """
        X, Y, sample_weight = data
        order = rng.permutation(n) if shuffle else None
        calls = []
        for start in range(0, n, rows_per_call):
            stop = min(n, start + rows_per_call)
            if order is None:
                part = slice(start, stop)
                rows = dict(
                    X=X[part],
                    Y=Y[part],
                    sample_weight=None if sample_weight is None else sample_weight[part],
                )
            else:
                rows = dict(X=X, Y=Y, rows=order[start:stop], sample_weight=sample_weight)
            calls.append((stop - start, dict(rows, first_batch=start // batch_size)))
        return calls

    def objective(
        self, net: Any, data: tuple, lmbda: float, l1: float, n_samples: int
    ) -> tuple[float, np.ndarray]:
        """Return `Network.objective` over the rows, regularisation included.

        Parameters
        ----------
        net : Network
            The network, at the point to evaluate.
        data : tuple (X, Y, sample_weight or None)
            The training rows.
        lmbda, l1 : float
            Regularisation strengths.
        n_samples : int
            The number of rows (the objective counts them itself).

        Returns
        -------
        cost : float
        gradient : ndarray of shape (n_params,)
        """
        X, Y, sample_weight = data
        return net.objective(X, Y, sample_weight=sample_weight, lmbda=lmbda, l1=l1)

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Return ``values`` as float64.

        Parameters
        ----------
        values : ndarray
            This process's.

        Returns
        -------
        ndarray
        """
        return np.array(values, dtype=np.float64)

    def mean(self, metric: Callable[..., float], X: np.ndarray, *args: Any) -> float:
        """Return ``metric(X, *args)``.

        Parameters
        ----------
        metric : callable
            A per-sample mean metric.
        X : ndarray of shape (n, n_0)
            The rows.
        *args : object
            The rest of its arguments.

        Returns
        -------
        float
        """
        return metric(X, *args)

    # ------------------------------------------------------------------ reductions
    bucket_bytes = Group.bucket_bytes
    lead = True  # the only process adds what it holds

    def reduce_statuses(self, statuses: np.ndarray) -> None:
        """Leave a batch's statuses as they are: the sum over one process.

        Parameters
        ----------
        statuses : ndarray of shape (REDUCTION_TAIL,)
            Written by the core.
        """

    def reduce(self, values: np.ndarray) -> None:
        """Leave a batch's step as it is: the sum over one process.

        Parameters
        ----------
        values : ndarray of shape (n,)
            Written by the core.
        """

    # ---------------------------------------------------------------------- shares
    def share(self, n: int) -> slice:
        """Return every row: the share of the only process.

        Parameters
        ----------
        n : int
            The number of rows.

        Returns
        -------
        slice
        """
        return slice(0, n)

    def shard_sizes_of(self, n_local: int) -> np.ndarray:
        """Return ``[n_local]``, the rows of the only process.

        Parameters
        ----------
        n_local : int
            Its rows.

        Returns
        -------
        ndarray of int64 of shape (1,)
        """
        return np.array([n_local], dtype=np.int64)

    def replicated_shares(self, n: int, batch_size: int, batches: range) -> np.ndarray:
        """Return `replicated_shares` of one process: every row of each batch.

        Parameters
        ----------
        n, batch_size : int
            Rows in the epoch, and the batch size.
        batches : range
            The batches of a core call.

        Returns
        -------
        ndarray of int64 of shape (3, len(batches))
        """
        return replicated_shares(n, batch_size, batches, 0, 1)

    def sharded_shares(self, sizes: np.ndarray, steps: int, batches: range) -> np.ndarray:
        """Return `sharded_shares` of one process: every row of each batch.

        Parameters
        ----------
        sizes : ndarray of int64 of shape (1,)
            Its number of rows.
        steps : int
            Batches per epoch.
        batches : range
            The batches of a core call.

        Returns
        -------
        ndarray of int64 of shape (3, len(batches))
        """
        return sharded_shares(sizes, steps, batches, 0)

    # -------------------------------------------------------------------- Ctrl-C
    def catching_interrupts(self) -> contextlib.AbstractContextManager[None]:
        """Leave Ctrl-C as it is: KeyboardInterrupt ends the run after the core's call.

        Returns
        -------
        context manager
        """
        return contextlib.nullcontext()

    def check_stop(self, stop: bool, error: BaseException | None) -> bool:
        """Raise ``error``, if any; else return ``stop``.

        Parameters
        ----------
        stop : bool
            Whether the callbacks or early stopping ask to stop.
        error : BaseException or None
            An exception the callbacks raised.

        Returns
        -------
        bool
        """
        self.agree(error)
        return bool(stop)

    def raise_if_interrupted(self, interrupted: bool) -> None:
        """Raise KeyboardInterrupt if ``interrupted``.

        Parameters
        ----------
        interrupted : bool
            Whether Ctrl-C was seen.

        Raises
        ------
        KeyboardInterrupt
        """
        if interrupted:
            raise KeyboardInterrupt

    @staticmethod
    def raised_by_all(error: BaseException) -> BaseException:
        """Return ``error``: one process's errors are all raised by every process.

        Parameters
        ----------
        error : BaseException
            The error.

        Returns
        -------
        BaseException
        """
        return error

    def aborting_on_lone_errors(self) -> contextlib.AbstractContextManager[None]:
        """Let errors pass: no other process waits for this one.

        Returns
        -------
        context manager
        """
        return contextlib.nullcontext()


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
        in its global batch: `_minibatch.train_rows`'s ``shares``.
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
