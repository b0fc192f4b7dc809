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

import os
import threading


class ForkGate:
    """Core calls enter and leave; a fork waits for them to leave and keeps new ones out.

    ``with GATE.call():`` (or ``with GATE:``) runs its body as a core call. The gate is its
    own context manager, not a generator-based one: a single-row prediction is a few
    microseconds, of which a generator's frames would take a noticeable part.
    """

    def __init__(self) -> None:
        lock = threading.Lock()
        self._condition = threading.Condition(lock)
        # The lock's own methods: Condition's "with" adds two Python calls to each of them.
        self._acquire, self._release = lock.acquire, lock.release
        self._running = 0
        self._forking = False

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
                self._condition.wait()
            self._running += 1
        finally:
            self._release()

    def __exit__(self, *exc_info: object) -> None:
        self._acquire()
        self._running -= 1
        if self._forking and self._running == 0:  # a fork waits for this
            self._condition.notify_all()
        self._release()

    def before_fork(self) -> None:
        """Wait for the running core calls to end; hold the gate through the fork."""
        self._condition.acquire()
        self._forking = True
        while self._running:
            self._condition.wait()

    def after_fork_in_parent(self) -> None:
        """Open the gate again."""
        self._forking = False
        self._condition.notify_all()
        self._condition.release()

    def after_fork_in_child(self) -> None:
        """Start the child with no core call running (only the forking thread exists)."""
        self.__init__()


GATE = ForkGate()
os.register_at_fork(
    before=GATE.before_fork,
    after_in_parent=GATE.after_fork_in_parent,
    after_in_child=GATE.after_fork_in_child,
)
