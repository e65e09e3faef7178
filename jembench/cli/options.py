"""Options shared by every command, and the click option of a settings field, so each means the same everywhere.

Evaluator commands get their options from the settings classes (:func:`field_option`); the values a user did not
give reach the API as absent, so the settings class's default applies (one place for defaults).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Optional

import click

from .. import defaults
from ..errors import JembenchError
from ..evaluators.base import SharedSettings
from ..io import printable
from ..settings import Field, parse_list

__all__ = ["checkpoints_argument", "compose", "echo_written", "emit", "field_option", "given", "json_option",
           "out_dir_option", "parse_list", "quiet_option", "resolve_checkpoints", "shared_option", "shared_options",
           "value_text", "wait_flag", "wait_option"]


def compose(*decorators: Callable) -> Callable:
    """Several click decorators as one, applied in the order listed (= --help order)."""
    def apply(f: Callable) -> Callable:
        for d in reversed(decorators):
            f = d(f)
        return f
    return apply


def field_option(f: Field, rename: Optional[str] = None) -> click.Option:
    """The click option of a settings field: ``--name`` (and its aliases), ``--name/--no-name`` for flags, repeatable
    where the field says so. Its default is None (= not given) and the settings default is shown in the help."""
    names = [rename or f.name, *([f.name] if rename else []), *f.spec.aliases]
    flags = list(dict.fromkeys("--" + n.replace("_", "-") for n in names))
    help_text = f"{f.describe()} [default: {value_text(f.default, f.spec.none)}]"
    if f.item_type is bool and not f.is_list:
        decl = [f"{flags[0]}/--no-{flags[0][2:]}", *flags[1:], f.name]
        return click.Option(decl, default=None, help=help_text)
    choices = f.spec.choices if isinstance(f.spec.choices, (tuple, list)) and len(f.spec.choices) <= 4 else None
    metavar = f.spec.metavar or ("|".join(choices) if choices and not f.is_list else None) or (
        "LIST" if f.is_list else {int: "INT", float: "FLOAT"}.get(f.item_type, "TEXT"))
    kind = {"dir": click.Path(file_okay=False), "file": click.Path(dir_okay=False)}.get(f.spec.path or "")
    return click.Option([*flags, f.name], type=kind, default=None, multiple=f.spec.repeatable, metavar=metavar,
                        help=help_text)


def shared_option(name: str, rename: Optional[str] = None) -> click.Option:
    """The click option of a :class:`SharedSettings` field (``--device``, ``--seed``, ``--sigma``, ...)."""
    field = SharedSettings.field(name)
    assert field is not None, name
    return field_option(field, rename)


def given(values: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave (click hands None, or () for repeatable options, for the others)."""
    return {k: v for k, v in values.items() if v is not None and v != ()}


def value_text(value: Any, none: str = "none") -> str:
    """A setting's value as one would type it: ``none`` (or the field's word for None, e.g. ``auto``),
    ``0,2/255,8/255``, ``on``."""
    if value is None:
        return none
    if isinstance(value, tuple):
        return ",".join(_number(v) for v in value) or "none"
    return _number(value)


def _number(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        for den in (255,):  # budgets read best as fractions of the 8-bit scale
            if v and abs(v * den - round(v * den)) < 1e-9 and v < 1:
                return f"{round(v * den)}/{den}"
        return f"{v:g}"
    return str(v)


checkpoints_argument = click.argument("checkpoints", nargs=-1, type=click.Path())  # jembench.load explains bad paths
json_option = click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
wait_option = click.Option(["--wait", "wait"], is_flag=True,  # for commands built from params (evaluators)
                           help="If another run is writing the same --out-dir, wait for it (default: exit 2).")
wait_flag = click.option("--wait", "wait", is_flag=True, help=wait_option.help)  # the same, as a decorator


def quiet_option() -> click.Option:
    """``--quiet``: no progress bars or step lines on stderr (warnings and errors still shown)."""
    return click.Option(["--quiet", "quiet"], is_flag=True,
                        help="No progress bars (stderr; on a terminal a live bar with ETA, else a line every 5%).")


def out_dir_option(command: str) -> Callable:
    return click.option("--out-dir", type=click.Path(file_okay=False),
                        default=str(Path(defaults.REPORTS_DIR) / command), show_default=True,
                        help="Where results.json, figures and raw arrays go.")


def shared_options(*names: str) -> Callable:
    """Decorator: the :class:`SharedSettings` options ``names`` (``--device``, ``--data-dir``, ...), as on every
    evaluator command, for commands written by hand (run-all, inspect, datasets, train)."""
    return compose(*(_attach(shared_option(n)) for n in names))


def _attach(option: click.Option) -> Callable:
    def apply(f: Callable) -> Callable:
        f.__click_params__ = [*getattr(f, "__click_params__", []), option]  # type: ignore[attr-defined]
        return f
    return apply


def resolve_checkpoints(paths: tuple[str, ...]) -> list[str]:
    """CKPT arguments, else ``$JEMBENCH_CKPT`` (several joined by ``os.pathsep``)."""
    if paths:
        return list(paths)
    env = os.environ.get(defaults.CKPT_ENV, "").strip()
    if env:
        return [p for p in env.split(os.pathsep) if p]
    raise JembenchError(f"no checkpoint given: pass CKPT (e.g. bundled:jem-digits) or set ${defaults.CKPT_ENV}")


def emit(doc: dict[str, Any], as_json: bool, summary: str) -> None:
    """Print the JSON document (``--json``) or a human summary."""
    click.echo(json.dumps(doc, indent=2) if as_json else printable(summary))


def echo_written(out_dir: Optional[str | Path]) -> None:
    if out_dir is not None:
        click.echo(f"results written to {Path(out_dir) / 'results.json'}", err=True)
