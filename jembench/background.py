"""Figures off the critical path: one background thread renders and writes them while the models keep running.

An evaluator hands a figure job to :func:`submit` (build the figure, save it atomically, close it) and goes on with
its next model pass; the caller that writes results (``Evaluator.call``, run-all) calls :func:`wait` first, so
results.json and the report are written only when every figure is on disk. One worker thread runs the jobs in
order, so matplotlib (whose pyplot state is global) is only ever used by one thread at a time, and a job queued
after a step's figures (run-all's resume file, which records their sha256) runs once they are on disk; torch
releases the GIL in its kernels, so rendering overlaps the passes. A job that fails is reported by :func:`wait`
as a warning (the report notes the missing file); it never fails the evaluation whose numbers are already
computed. A full or read-only disk is different: :func:`wait` raises the first :class:`~jembench.io.WriteError`
(after joining every job), so the run stops with one line as at any other write site, and resumes.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from .io import WriteError

log = logging.getLogger("jembench")
_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None
_PENDING: list[tuple[str, Future]] = []


def submit(what: str, job: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run ``job(*args, **kwargs)`` in the figure thread; ``what`` names it in a failure warning."""
    global _POOL
    with _LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jembench-figures")
        _PENDING.append((what, _POOL.submit(job, *args, **kwargs)))


def wait() -> list[str]:
    """Block until every submitted job is done; log and return a warning per failed job, or raise the first
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
