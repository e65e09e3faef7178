"""Progress bars with an ETA, on stderr only (never on stdout, where ``--json`` goes), for every long loop.

``bar(total, desc)`` is a tqdm bar: on a terminal a live bar; on any other stderr (a log file on a cluster) a plain
line every :data:`LINE_PERCENT` percent (every :data:`LINE_SECONDS` s when the total is unknown), never a carriage
return. ``labelled("[3/10] ood (jem)")`` prefixes every bar opened inside it (run-all: the step and checkpoint).
:data:`ENABLED` is the one switch for the whole process (a distributed run turns it off on all ranks but 0);
``enabled=False`` (``--quiet``, ``progress=False``) turns off one bar.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Optional, TypeVar

from tqdm.std import tqdm

ENABLED = True  # process-wide switch: False silences every bar (e.g. torchrun ranks other than 0)
LINE_PERCENT = 5  # non-terminal stderr: one line per this many percent
LINE_SECONDS = 30.0  # ... or per this many seconds when the total is unknown
_labels: list[str] = []
T = TypeVar("T")


@contextmanager
def labelled(label: str) -> Iterator[None]:
    """Bars opened inside carry ``label`` first (``[3/10] ood (jem): forward svhn``)."""
    _labels.append(label)
    try:
        yield
    finally:
        _labels.pop()


def bar(total: Optional[float] = None, desc: str = "", unit: str = "it", enabled: bool = True) -> tqdm:
    """A bar on stderr (see the module docstring); update it with ``bar.update(n)``, end it with ``close()``."""
    desc = ": ".join([*_labels[-1:], desc] if desc else _labels[-1:])
    if not (enabled and ENABLED):
        return tqdm(total=total, disable=True)
    stream = sys.stderr
    if _is_tty(stream):
        return tqdm(total=total, desc=desc, unit=unit, file=stream, leave=False, dynamic_ncols=True)
    return LineBar(total=total, desc=desc, unit=unit, stream=stream)


def track(items: Iterable[T], total: Optional[float] = None, desc: str = "", unit: str = "it",
          enabled: bool = True) -> Iterator[T]:
    """``items`` with a :func:`bar` advanced by one per item."""
    b = bar(total if total is not None else _len(items), desc, unit, enabled)
    try:
        for item in items:
            yield item
            b.update(1)
    finally:
        b.close()


class LineBar(tqdm):
    """A tqdm whose own output is dropped; it writes its status as a whole line to ``stream`` every
    :data:`LINE_PERCENT` percent (or :data:`LINE_SECONDS` s) and once when it ends."""

    def __init__(self, *, stream: Any, **kw: Any):
        self.stream, self.next_percent, self.next_time, self.shown = stream, 0.0, 0.0, -1.0
        super().__init__(file=_Discard(), leave=False, mininterval=0.0, **kw)
        self._line()

    def update(self, n: float = 1) -> Optional[bool]:
        out = super().update(n)
        if self.total:
            if 100.0 * self.n / self.total >= self.next_percent:
                self._line()
        elif time.monotonic() >= self.next_time:
            self._line()
        return out

    def close(self) -> None:
        if not self.disable and self.n != self.shown:
            self._line()
        super().close()

    def _line(self) -> None:
        fmt = {**self.format_dict, "ncols": 0}  # no bar graphic: counts, rate and ETA only
        self.stream.write(self.format_meter(**fmt).strip() + "\n")
        self.stream.flush()
        self.shown = self.n
        if self.total:
            self.next_percent = (int(100.0 * self.n / self.total) // LINE_PERCENT + 1) * LINE_PERCENT
        self.next_time = time.monotonic() + LINE_SECONDS


class _Discard:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _len(items: Iterable[Any]) -> Optional[int]:
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None
