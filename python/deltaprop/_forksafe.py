"""Forking while the core computes: a gate around every multi-threaded core call.

``fork()`` copies only the thread that calls it. If another thread is inside a core call,
OpenBLAS's worker threads and their locks are copied mid-call into the child, where no
thread will ever release them: the child's first BLAS call hangs (whichever network it
uses). So core calls run inside `GATE`, and a fork made through Python (``os.fork``,
``multiprocessing``'s fork start method, ``subprocess`` on some platforms) first waits
until no core call runs and lets none start until it is done. Calls take turns only with
forks, never with each other.
"""

from __future__ import annotations

import _thread  # threading's locks, without threading's cost to `import deltaprop`
import os


class ForkGate:
    """Core calls enter and leave; a fork waits for them to leave and keeps new ones out.

    ``with GATE.call():`` (or ``with GATE:``) runs its body as a core call. The gate is its
    own context manager, not a generator-based one: a single-row prediction is a few
    microseconds, of which a generator's frames would take a noticeable part. A call takes
    one lock and leaves it; the two other locks serve only while a fork is being made.
    """

    def __init__(self) -> None:
        lock = _thread.allocate_lock()  # guards the count and the flag
        self._acquire, self._release = lock.acquire, lock.release
        self._running = 0
        self._forking = False
        # Held by a fork from start to end: calls that find it forking wait on it.
        self._fork_done = _thread.allocate_lock()
        # Always held, except when the last running call releases it for a waiting fork.
        self._drained = _thread.allocate_lock()
        self._drained.acquire()

    def call(self) -> ForkGate:
        """Return the gate, to run a ``with`` body as a core call: not while a fork is made.

        Returns
        -------
        ForkGate
            This gate, a context manager.
        """
        return self

    def __enter__(self) -> None:
        self._acquire()
        try:
            while self._forking:
                self._release()
                try:
                    with self._fork_done:  # until the fork is made
                        pass
                finally:
                    self._acquire()
            self._running += 1
        finally:
            self._release()

    def __exit__(self, *exc_info: object) -> None:
        self._acquire()
        self._running -= 1
        if self._forking and self._running == 0:  # a fork waits for this
            self._drained.release()
        self._release()

    def before_fork(self) -> None:
        """Wait for the running core calls to end; hold the gate through the fork."""
        self._fork_done.acquire()
        self._acquire()
        self._forking = True  # from now on, calls wait for _fork_done
        if self._running:
            self._release()
            try:
                self._drained.acquire()  # the last running call releases it
            finally:
                self._acquire()

    def after_fork_in_parent(self) -> None:
        """Open the gate again."""
        self._forking = False
        self._drained.acquire(False)  # held again, had Ctrl-C cut the wait above short
        self._release()
        self._fork_done.release()

    def after_fork_in_child(self) -> None:
        """Start the child with no core call running (only the forking thread exists)."""
        self.__init__()


GATE = ForkGate()
os.register_at_fork(
    before=GATE.before_fork,
    after_in_parent=GATE.after_fork_in_parent,
    after_in_child=GATE.after_fork_in_child,
)
