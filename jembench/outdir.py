"""One writer per output folder: an exclusive lock, a writability check before any work, leftovers cleaned.

``with claim(out_dir, wait=False): ...`` is what run-all and every evaluator that writes an ``--out-dir`` do:

- **lock**: ``OUT/.jembench.lock`` is created exclusively (``O_CREAT | O_EXCL``) and holds the pid, host and
  start time of its writer. A second run exits 2 naming the holder, or with ``wait`` polls until it is free.
  A lock whose writer is a dead process on this host is stale: it is taken over with a warning.
- **writable**: a probe file is written (and removed) before anything is computed, so a read-only or full
  folder is one line (:class:`jembench.io.WriteError`) and not an hour of lost work.
- **leftovers**: temporary files ``.<name>.<pid>.<random>.tmp`` (:func:`jembench.io.atomic_write_bytes`) whose
  writer is dead are deleted (a kill during a write leaves one behind).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import re
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar

from .errors import JembenchError
from .io import TMP_SUFFIX, write_error

T = TypeVar("T")
log = logging.getLogger("jembench")
LOCK_NAME = ".jembench.lock"
POLL_S = 0.5
_TMP = re.compile(r"^\..+\.(\d+)\.[^.]+" + re.escape(TMP_SUFFIX) + "$")


class OutDirBusy(JembenchError):
    """Another run holds the output folder's lock."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child not yet reaped by its parent is a zombie: it writes nothing any more
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _holder(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def _stale(holder: dict[str, Any]) -> bool:
    """A lock of a dead process on this host (or an unreadable one: its writer died mid-write)."""
    if not holder:
        return True
    return holder.get("host") == socket.gethostname() and not pid_alive(int(holder.get("pid") or 0))


def _try_lock(path: Path) -> bool:
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:  # the folder again each time: a run we waited for removes the folder it made if it wrote nothing
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    except OSError as exc:
        raise write_error(path, exc) from None
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(me) + "\n")
    return True


def acquire(out_dir: Path, wait: bool = False) -> Path:
    """Take ``out_dir``'s lock (creating the folder); see the module docstring."""
    path = out_dir / LOCK_NAME
    announced = False
    while not _try_lock(path):
        holder = _holder(path)
        if _stale(holder):
            log.warning("%s: taking over the stale lock of pid %s on %s (that process is gone)", out_dir,
                        holder.get("pid", "?"), holder.get("host", "?"))
            path.unlink(missing_ok=True)
            continue
        who = f"pid {holder.get('pid')} on {holder.get('host')} (since {holder.get('started', '?')})"
        if not wait:
            raise OutDirBusy(f"{out_dir} is in use by another jembench run: {who}; wait for it (--wait), or "
                             "choose another --out-dir")
        if not announced:
            log.info("%s is in use by %s; waiting", out_dir, who)
            announced = True
        time.sleep(POLL_S)
    return path


def release(path: Path) -> None:
    """Remove our lock file (only if it is still ours)."""
    if _holder(path).get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def check_writable(out_dir: Path) -> None:
    """Write and remove a probe file: a folder that cannot take files fails now, in one line."""
    probe = out_dir / f".jembench-probe.{os.getpid()}{TMP_SUFFIX}"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"probe")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise write_error(out_dir, exc) from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


def clean_leftovers(out_dir: Path) -> list[Path]:
    """Delete temporary files of dead writers anywhere under ``out_dir``; return them."""
    removed = []
    for tmp in out_dir.rglob(f".*{TMP_SUFFIX}"):
        m = _TMP.match(tmp.name)
        pid = int(m.group(1)) if m else 0
        if tmp.is_file() and (pid != os.getpid() and not pid_alive(pid)):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    if removed:
        log.warning("%s: removed %d temporary file(s) left by an interrupted run", out_dir, len(removed))
    return removed


@contextmanager
def claim(out_dir: Optional[str | os.PathLike], wait: bool = False) -> Iterator[Optional[Path]]:
    """Lock ``out_dir``, check it is writable and clean its leftovers; release on exit (folders it created are
    removed again when the run wrote nothing, e.g. a bad checkpoint path). None: nothing to do."""
    if out_dir is None:
        yield None
        return
    out = Path(out_dir)
    created = [d for d in (out, *out.parents) if not d.exists()]  # removed again if the run writes nothing
    lock = acquire(out, wait)
    try:
        check_writable(out)
        clean_leftovers(out)
        yield out
    finally:
        release(lock)
        for d in created:  # innermost first; a folder holding anything stays
            try:
                d.rmdir()
            except OSError:
                break


def holds_out_dir(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator: ``fn(..., out_dir=DIR)`` runs inside :func:`claim` of DIR; it gains a ``wait`` keyword (wait for
    another run's lock instead of exiting 2)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, wait: bool = False, **kwargs: Any) -> T:
        with claim(kwargs.get("out_dir"), wait):
            return fn(*args, **kwargs)

    sig = inspect.signature(fn)
    wait = inspect.Parameter("wait", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool)
    params = list(sig.parameters.values())
    at = next((i for i, q in enumerate(params) if q.kind == q.VAR_KEYWORD), len(params))
    wrapper.__signature__ = sig.replace(parameters=[*params[:at], wait, *params[at:]])  # type: ignore[attr-defined]
    return wrapper
