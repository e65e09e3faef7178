"""Writing files safely and naming them: atomic writes, JSON conversion, file-name slugs.

The bottom layer: every module that writes a file goes through here, so readers never see half a file and every
output file of a checkpoint carries the same unique slug.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar

import sys

from .errors import JembenchError

T = TypeVar("T")
log = logging.getLogger("jembench")


def to_jsonable(obj: Any) -> Any:
    """Tensors, numpy scalars/arrays, tuples and paths to JSON types; NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "detach"):  # torch tensor
        obj = obj.detach().cpu().numpy()
    np = sys.modules.get("numpy")  # an object can only be a numpy one if numpy is loaded (listing commands: not)
    if np is not None and isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if np is not None and isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_numpy(v: Any) -> Any:
    return v.detach().cpu().numpy() if hasattr(v, "detach") else v


def slugify(text: str, default: str = "x") -> str:
    """A file-name-safe version of ``text``: runs of anything but letters, digits, dot, dash and underscore become
    one underscore; no leading or trailing dot or underscore (no hidden files); ``default`` when nothing is left."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or default


def checkpoint_slugs(names: Sequence[str | None], *, numbered: bool = False, max_len: int = 60) -> list[str]:
    """One file-name slug per checkpoint, unique within the list: the slugified name (``model`` when empty), cut
    to ``max_len``, a ``-2``, ``-3`` ... suffix where names collide; ``numbered`` prefixes the list index
    (``0-jem-digits``), as run-all's step folders. Every output file of a checkpoint is named with this."""
    slugs: list[str] = []
    for i, name in enumerate(names):
        base = slugify(str(name or ""), "model")[:max_len]
        slug, k = base, 1
        while slug in slugs:
            k += 1
            slug = f"{base}-{k}"
        slugs.append(slug)
    return [f"{i}-{s}" for i, s in enumerate(slugs)] if numbered else slugs


class WriteError(JembenchError):
    """An ``OSError`` while writing (disk full, read-only, no permission, quota), as one line naming the path."""


_WRITE_HINTS = {errno.ENOSPC: "free some space or choose another --out-dir",
                errno.EROFS: "the file system is read-only: choose another --out-dir",
                errno.EACCES: "no permission: choose another --out-dir or fix its permissions",
                errno.EPERM: "no permission: choose another --out-dir or fix its permissions",
                getattr(errno, "EDQUOT", -1): "disk quota exceeded: free some space or choose another --out-dir"}


def write_error(path: str | os.PathLike, exc: OSError) -> WriteError:
    """``cannot write PATH: No space left on device (ENOSPC); free some space ...``."""
    code = errno.errorcode.get(exc.errno or 0, "")
    cause = f"{exc.strerror or type(exc).__name__}{f' ({code})' if code else ''}"
    hint = _WRITE_HINTS.get(exc.errno or 0, "check the disk and the folder's permissions")
    return WriteError(f"cannot write {path}: {cause}; {hint}")


# --- atomic writes: write to a temporary file in the same folder, then rename ----------------------
TMP_SUFFIX = ".tmp"  # temporary files are ".<name>.<pid>.<random>.tmp": a later run can tell a dead writer's


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename; any ``OSError`` (disk full, read-only
    folder, permissions) is a one-line :class:`WriteError` and leaves the old file (if any) as it was."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def atomic_savez(path: str | os.PathLike, **arrays: Any) -> None:
    """Arrays (numpy or torch) as one ``.npz``, atomically. Not compressed: per-sample float arrays barely
    compress, and zlib cost more than the metrics that read them (0.5 s of a 20k-image OOD run)."""
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(to_numpy(v)) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


FONT_PX_KEY = "jembench-min-font-px"  # PNG text chunk: the smallest text's size in image pixels (the report reads it)


def figure_png(fig: Any, **kwargs: Any) -> bytes:
    """A matplotlib figure as PNG bytes (dpi 110, tight box), its smallest text size in pixels (font points x dpi /
    72) recorded under :data:`FONT_PX_KEY`, so a page can check how large its text is displayed."""
    buf = io.BytesIO()
    kwargs = {"dpi": 110, "bbox_inches": "tight", **kwargs}
    sizes = [t.get_fontsize() for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_fontsize"))
             if t.get_visible() and str(t.get_text()).strip()]
    meta = {FONT_PX_KEY: f"{min(sizes) * kwargs['dpi'] / 72:.2f}"} if sizes else {}
    fig.savefig(buf, format="png", metadata=meta, **kwargs)
    return buf.getvalue()


# --- text that leaves jembench: CSV cells, terminal lines ---------------------------------------------
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: strings starting with ``= + - @``, tab or CR get a leading ``'``
    (OWASP "CSV injection"); numbers, and text that reads as a number (``-0.5``), are kept."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def printable(text: str) -> str:
    """``text`` safe for a terminal: ANSI escape sequences and control characters removed (newlines and tabs
    kept), so names read from files cannot move the cursor, recolour or retitle the user's terminal."""
    return _CONTROL.sub("", _ANSI.sub("", text))


# --- caches: an unreadable entry is deleted and recomputed ---------------------------------------------
def read_cache(path: Optional[Path], reader: Callable[[Path], T], what: str) -> Optional[T]:
    """``reader(path)``, or None when there is no entry; an entry that cannot be read (truncated, not a zip,
    wrong keys, anything ``reader`` raises) is deleted with a warning, and the caller recomputes it."""
    if path is None or not path.is_file():
        return None
    try:
        return reader(path)
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, the cure is to recompute it
        log.warning("%s cache entry %s is unreadable (%s: %s); deleted, recomputing", what, path,
                    type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        try:
            path.unlink()
        except OSError:
            pass
        return None
