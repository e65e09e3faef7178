"""Figures off the critical path: drawn by a worker process while the models keep running, written by this one.

An evaluator hands a figure to :func:`render` (a function returning ``{path: file bytes}``, e.g. a PNG drawn with
matplotlib) and goes on with its next model pass; :func:`submit` queues other work after it (run-all's resume
file, which records the sha256 of the step's figures). One forwarding thread takes the jobs in order: a render job
is sent to the worker process (``python -m jembench.background``, started once, fed pickled jobs on a pipe), its
files are written atomically here; a submitted job runs in the thread. Drawing happens in another process because
matplotlib holds the GIL while it draws: in a thread it overlaps only the time the passes spend in kernels. The
worker is used once :func:`start` is called (run-all: many figures over a long run); a single evaluator's few
figures are drawn in the thread, where starting a process (importing matplotlib and torch) would cost more. The
caller that writes results (``Evaluator.call``, run-all) calls :func:`wait` first, so
results.json and the report are written only when every figure is on disk.

A figure that fails is reported by :func:`wait` as a warning (the report notes the missing file); it never fails
the evaluation whose numbers are already computed. A full or read-only disk is different: :func:`wait` raises the
first :class:`~jembench.io.WriteError` (after joining every job), so the run stops with one line as at any other
write site, and resumes. Without a worker (``JEMBENCH_FIGURES=thread``, a job that cannot be pickled, or a worker
that could not start or died) render jobs are drawn in the thread instead: same files, same order.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

from .io import WriteError, atomic_write_bytes

log = logging.getLogger("jembench")
MODE_ENV = "JEMBENCH_FIGURES"  # "process" (default) or "thread"
_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None
_PENDING: list[tuple[str, Future]] = []


class _Worker:
    """The figure process: reads ``(job, args, kwargs)`` pickles on stdin, answers ``(ok, value)`` on a pipe."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parent.parent)  # this jembench, whatever the cwd or sys.path
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
               "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "jembench.background"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)

    def call(self, payload: bytes) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(payload)
        self.proc.stdin.flush()
        ok, value = pickle.load(self.proc.stdout)
        if not ok:
            raise value
        return value

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]  # EOF: the worker exits
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


_WORKER: Optional[_Worker] = None
_WANTED = False  # set by start(): long runs draw in the worker, a single evaluator's few figures in the thread
_NO_WORKER = False  # set once a worker could not start or died: render in the thread from then on


def _worker() -> Optional[_Worker]:
    """The running worker (started on first use after :func:`start`, in the forwarding thread), or None: render
    in the thread."""
    global _WORKER, _NO_WORKER
    if not _WANTED or _NO_WORKER or os.environ.get(MODE_ENV, "process") == "thread":
        return None
    if _WORKER is None:
        try:
            _WORKER = _Worker()
            atexit.register(_WORKER.close)
        except OSError as exc:
            _NO_WORKER = True
            log.warning("figures are drawn in this process: the figure worker did not start (%s)", exc)
    return _WORKER


def _draw(job: Callable[..., dict], args: tuple, kwargs: dict) -> dict:
    """``job``'s files, drawn by the worker when there is one (else here)."""
    global _WORKER, _NO_WORKER
    worker, payload = _worker(), None
    if worker is not None:
        try:
            payload = pickle.dumps((job, args, kwargs))
        except (pickle.PicklingError, AttributeError, TypeError):  # a local function: draw it here
            pass
    if worker is None or payload is None:
        return job(*args, **kwargs)
    try:
        return worker.call(payload)
    except (EOFError, OSError, pickle.UnpicklingError) as exc:  # the worker died: draw here from now on
        _WORKER, _NO_WORKER = None, True
        raise RuntimeError(f"the figure worker stopped ({type(exc).__name__}); later figures are drawn in this "
                           "process") from exc


def _render_and_write(job: Callable[..., dict], args: tuple, kwargs: dict) -> None:
    for path, data in _draw(job, args, kwargs).items():
        atomic_write_bytes(path, data)


def _enqueue(what: str, fn: Callable[..., Any], *args: Any) -> None:
    global _POOL
    with _LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jembench-figures")
        _PENDING.append((what, _POOL.submit(fn, *args)))


def render(what: str, job: Callable[..., dict[Any, bytes]], *args: Any, **kwargs: Any) -> None:
    """Draw ``job(*args, **kwargs)`` (module-level, returning ``{path: bytes}``) in the worker process and write
    its files here, after every job queued before; ``what`` names it in a failure warning."""
    _enqueue(what, _render_and_write, job, args, kwargs)


def submit(what: str, job: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run ``job(*args, **kwargs)`` in the forwarding thread, after every job queued before."""
    _enqueue(what, lambda: job(*args, **kwargs))


def start() -> None:
    """Draw figures in the worker process from now on, and start it now (it imports matplotlib and torch while the
    caller's first steps run), unless ``JEMBENCH_FIGURES=thread``. Run-all calls it; without it (a single
    evaluator: a few figures, where starting a process costs more than it saves) figures are drawn in the
    thread."""
    global _WANTED
    _WANTED = True
    _enqueue("figure worker start", _worker)


def wait() -> list[str]:
    """Block until every queued job is done; log and return a warning per failed job, or raise the first
    :class:`~jembench.io.WriteError` (disk full, read-only) once all are done."""
    with _LOCK:
        pending = list(_PENDING)
        _PENDING.clear()
    failed, unwritable = [], []
    for what, future in pending:
        exc = future.exception()
        if isinstance(exc, WriteError):
            unwritable.append(exc)
        elif exc is not None:
            failed.append(f"{what} was not written ({type(exc).__name__}: {exc})")
            log.warning(failed[-1])
    if unwritable:
        raise unwritable[0]
    return failed


def _serve() -> None:
    """The worker's loop: run each job, answer ``(True, value)`` or ``(False, exception)``, exit at EOF (when
    jembench exits, however it exits). Ctrl-C is jembench's to handle: the worker ignores it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "wb")  # the answers' pipe; whatever a job prints goes to stderr
    os.dup2(2, 1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401 - imported once, before the first job
    import torch  # noqa: F401 - figure jobs receive tensors

    source = sys.stdin.buffer
    while True:
        try:
            job, args, kwargs = pickle.load(source)
        except EOFError:
            return
        try:
            answer = (True, job(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
            answer = (False, exc)
        try:
            data = pickle.dumps(answer)
        except Exception:  # noqa: BLE001 - an exception that does not pickle goes back as its text
            data = pickle.dumps((False, RuntimeError(f"{type(answer[1]).__name__}: {answer[1]}")))
        out.write(data)
        out.flush()


if __name__ == "__main__":
    _serve()
