"""Starting worker processes safely: fork or spawn, BLAS threads, Ctrl-C, the main guard.

A spawned worker re-imports the script that started it. A script that calls the search at its
top level, outside ``if __name__ == "__main__":``, would make every worker start the search
again; multiprocessing refuses that in the worker, the worker dies, and the pool starts a new
one forever. ``workers_usable`` detects that caller before any pool starts, so the search can
work in its own process instead of hanging.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import multiprocessing
import os
import signal
import sys
import threading

BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
MAIN_GUARD_HINT = ("put the code that calls the search under `if __name__ == '__main__':` "
                   "(spawned worker processes re-run the script)")


def search_context():
    """How search workers start: forked (fast: nothing to import) from a plain process, spawned
    from one running other threads. A fork copies only the calling thread, so a lock another
    thread holds stays held in the child and can deadlock it: Python threads (a thread pool left
    by Triton compiles, a server) and the native threads torch and Triton start (CUDA, OpenMP,
    compile workers) once imported."""
    busy = threading.active_count() > 1 or any(m in sys.modules for m in ("torch", "triton"))
    if os.name == "posix" and not busy:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def ignore_interrupts() -> None:
    """Pool initializer: Ctrl-C reaches the whole process group; only the driver handles it
    (it ends the pool), so a worker never prints a traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """Environment variables set for what starts inside (child processes), then restored."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def workers_usable() -> bool:
    """False when a spawned worker would re-run the call that is starting it: the ``__main__``
    script is a file multiprocessing re-runs in each spawned worker (not a package's
    ``__main__``, which it skips) and its top-level code reaches this call outside a
    ``__name__`` guard; also False in a process that is still being set up as a worker."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        return False  # a spawned worker importing its main: multiprocessing forbids a pool
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path:
        return True  # interactive, -c, stdin: a spawned worker re-runs nothing
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name.endswith("__main__"):
        return True  # `python -m package`: multiprocessing does not re-run a package's main
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals is main.__dict__ and frame.f_code.co_name == "<module>":
            return _guarded_line(os.path.abspath(path), frame.f_lineno)
        frame = frame.f_back
    return True  # called later (a thread, a callback), not while the script's top level runs


@functools.cache
def _guarded_line(path: str, line: int) -> bool:
    """Is ``line`` of the script at ``path`` inside a top-level ``if`` that tests
    ``__name__``? Unreadable source counts as guarded (the common case, and no worse than
    before)."""
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return True
    for node in tree.body:
        if isinstance(node, ast.If) and any(isinstance(n, ast.Name) and n.id == "__name__"
                                            for n in ast.walk(node.test)):
            body = node.body
            if body and body[0].lineno <= line <= (body[-1].end_lineno or body[-1].lineno):
                return True
    return False
