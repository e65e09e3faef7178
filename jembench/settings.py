"""Typed settings: the one place where an option's name, type, default, range or choices, help and unit live.

An evaluator's settings are a frozen dataclass deriving from :class:`Settings` whose fields are made with
:func:`option`. Everything else is generated from it: the Python API's keyword arguments and defaults, the
command's click options (``jembench.cli.options``), the presets (instances), run-all's ``--set EVALUATOR.FIELD``
and its ``--help``. Values given as text (the command line, ``--set``) and as Python objects (the API) go
through the same :meth:`Settings.build`, so a bad value gets the same one-line error everywhere, before any
model is loaded; only the spelling of the option in the message differs (``--bins 0``, ``--set calib.bins=0``).

Field types: ``int``, ``float`` (text may be a fraction, ``8/255``), ``str``, ``bool``, ``Optional[X]`` (text
``none`` or empty is None) and ``tuple[X, ...]`` (text is a comma list).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from .errors import JembenchError

META = "jembench"


class SettingError(JembenchError):
    """An option value that is of the wrong type or outside what is allowed, named as the user wrote it."""


@dataclass(frozen=True)
class Spec:
    """What a field accepts and how it is documented (see :func:`option`)."""

    help: str
    min: Optional[float] = None  # inclusive lower bound (of each item of a list)
    max: Optional[float] = None  # inclusive upper bound
    above: Optional[float] = None  # exclusive lower bound (``> above``)
    choices: Optional[Sequence[str] | Callable[[], Sequence[str]]] = None  # a callable is read when needed
    unit: Optional[str] = None
    aliases: tuple[str, ...] = ()  # other names accepted on the command line, in --set and in the API
    deprecated: tuple[str, ...] = ()  # former names, still read (not offered as options) with a warning
    parse: Optional[Callable[[str], Any]] = None  # text -> value, replacing the type's own parsing
    accepts: tuple[str, ...] = ()  # classes ("module:Class") whose objects the API passes through (an ImageSet)
    metavar: Optional[str] = None
    repeatable: bool = False  # a list option given several times on the command line (--out a --out b)
    noun: Optional[str] = None  # what one choice is ("attack"): errors say "unknown attack 'x'"
    path: Optional[str] = None  # "dir" or "file": a path, which must not be the other kind when it exists
    none: str = "none"  # how the value None is written (help, defaults): "auto" where None means "choose for me"

    def takes(self, value: Any) -> bool:
        """Whether ``value`` is an object of an ``accepts`` class. The classes are named, not imported (their
        modules import torch): a value can only be one if its module is loaded already."""
        for name in self.accepts:
            module, cls = name.split(":")
            loaded = sys.modules.get(module)
            if loaded is not None and isinstance(value, getattr(loaded, cls)):
                return True
        return False

    def allowed(self) -> Optional[list[str]]:
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)


def option(default: Any, help: str, **spec: Any) -> Any:
    """A settings field: ``bins: int = option(15, "Equal-width confidence bins.", min=1)``."""
    return dataclasses.field(default=default, metadata={META: Spec(help, **spec)})


@dataclass(frozen=True)
class Field:
    """One option of a settings class, as the CLI, --set and the API see it."""

    name: str
    type: Any
    default: Any
    spec: Spec

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.spec.aliases)

    @property
    def inner(self) -> Any:
        """The type without Optional."""
        return _strip_optional(self.type)

    @property
    def is_list(self) -> bool:
        return typing.get_origin(self.inner) is tuple

    @property
    def item_type(self) -> Any:
        return typing.get_args(self.inner)[0] if self.is_list else self.inner

    @property
    def optional(self) -> bool:
        return _strip_optional(self.type) is not self.type

    def kind(self) -> str:
        """A short type name for help text: int, float, text, flag, list of float, ..."""
        base = {int: "int", float: "float", str: "text", bool: "flag"}.get(self.item_type, "value")
        return f"list of {base}" if self.is_list else base

    def describe(self) -> str:
        """Help text with the unit and what is allowed."""
        extra = []
        if self.spec.unit:
            extra.append(self.spec.unit)
        allowed = self.spec.allowed()
        if allowed:
            extra.append("one of " + ", ".join(allowed) if not self.is_list else "from " + ", ".join(allowed))
        bounds = _bounds_text(self.spec)
        if bounds:
            extra.append(bounds)
        return self.spec.help + (f" [{'; '.join(extra)}]" if extra else "")


@dataclass(frozen=True)
class Spelling:
    """How the user wrote an option, for messages: on a command (``--batch-size 0``, renamed fields by their
    command-line name) or in run-all's ``--set`` (``--set calib.bins=0``; top-level fields without a section).
    The Python API uses the command's spelling, as its keyword arguments mirror the command's options."""

    section: Optional[str] = None  # None: a command's options; "" or a name: --set
    renames: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def option(self, name: str) -> str:
        if self.section is None:
            return "--" + self.renames.get(name, name).replace("_", "-")
        return f"--set {self.section + '.' if self.section else ''}{name}"

    def assign(self, name: str, value: Any) -> str:
        sep = " " if self.section is None else "="
        return f"{self.option(name)}{sep}{_text(value)}"


CLI = Spelling()


def hint(section: str, name: str, value: Any = None) -> str:
    """An evaluator option as its command and run-all write it, for messages raised while it runs (which do not
    know which one the user ran): ``--eot (run-all: --set robust.eot)``, ``--n 500 (run-all: --set gen.n=500)``."""
    if value is None:
        return f"{CLI.option(name)} (run-all: {Spelling(section).option(name)})"
    return f"{CLI.assign(name, value)} (run-all: {Spelling(section).assign(name, value)})"


class Settings:
    """Base of every settings dataclass: fields, parsing from text or objects, validation, dict form."""

    @classmethod
    def fields(cls) -> list[Field]:
        return list(_fields(cls))

    @classmethod
    def field(cls, name: str) -> Optional[Field]:
        """The field called ``name`` or having it as an alias."""
        return next((f for f in cls.fields() if name in f.names), None)

    @classmethod
    def renamed(cls, name: str) -> Optional[Field]:
        """The field that was called ``name`` before (``Spec.deprecated``), else None."""
        return next((f for f in cls.fields() if name in f.spec.deprecated), None)

    @classmethod
    def build(cls, values: Mapping[str, Any] = {}, *, spell: Spelling = CLI,  # noqa: B006 - read only
              base: Optional["Settings"] = None):
        """An instance from ``base`` (default: the class defaults) with ``values`` set, parsed and validated.

        Keys may be field names, aliases or former names (read with a deprecation warning on the ``jembench``
        logger); text values are parsed by the field's type. Raises :class:`SettingError` naming the option as
        ``spell`` writes it (default: as on a command)."""
        given: dict[str, Any] = {}
        problems: list[str] = []
        for key, value in values.items():
            f = cls.field(key) or cls.renamed(key)
            try:
                if f is None:
                    raise SettingError(f"{spell.assign(key, value)}: unknown option; options: "
                                       f"{', '.join(g.name for g in cls.fields())}")
                if f.name in given:
                    raise SettingError(f"{spell.option(key)} and {spell.option(f.name)} set the same thing; give "
                                       f"{spell.option(f.name)} only")
                if key in f.spec.deprecated:
                    logging.getLogger(META).warning("%s is deprecated: use %s", spell.assign(key, value),
                                                    spell.assign(f.name, value))
                given[f.name] = coerce(f, value, spell)
            except JembenchError as exc:
                problems.append(str(exc))
        if problems:
            raise SettingError("\n".join(problems))
        out = dataclasses.replace(base, **given) if base is not None else cls(**given)  # type: ignore[call-arg]
        out.validate(spell)
        return out

    def validate(self, spell: Spelling = CLI) -> None:
        """Raise every :meth:`problems` together (one line each) as a :class:`SettingError`."""
        problems = self.problems(spell)
        if problems:
            raise SettingError("\n".join(problems))

    def problems(self, spell: Spelling = CLI) -> list[str]:
        """Every field checked against its choices and bounds, then (when those pass) :meth:`check`'s
        cross-field rules, which may assume valid fields: all problems, one line each."""
        out = []
        for f in self.fields():
            try:
                check_value(f, getattr(self, f.name), spell)
            except SettingError as exc:
                out.append(str(exc))
        return out or list(self.check(spell))

    def check(self, spell: Spelling) -> Iterable[str]:
        """Cross-field rules of a settings class: one message per problem (what is wrong and what to do), the
        options named with ``spell``."""
        return ()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in self.fields()}


@functools.cache
def _fields(cls: type) -> tuple[Field, ...]:
    """The fields of a settings class, read once (resolving the annotations is most of ``--help``'s own time)."""
    hints = typing.get_type_hints(cls)
    return tuple(Field(f.name, hints[f.name], f.default, f.metadata[META]) for f in dataclasses.fields(cls)
                 if META in f.metadata)


# --- parsing ---------------------------------------------------------------------------------------------
def parse_list(text: Any, kind: Callable[[str], Any] = float, name: str = "value") -> list[Any]:
    """``"0,2/255,8/255"`` -> ``[0.0, 0.00784..., 0.0313...]``; fractions for floats; empty items skipped."""
    out = []
    for item in (t.strip() for t in str(text).split(",")):
        if not item:
            continue
        try:
            out.append(parse_float(item) if kind is float else kind(item))
        except (ValueError, ZeroDivisionError):
            raise JembenchError(f"cannot read {name} {item!r} in {text!r} (expected a comma-separated list, "
                                "fractions like 8/255 allowed)") from None
    return out


def parse_float(text: str) -> float:
    """``"8/255"`` or ``"0.03"`` -> float."""
    if "/" in text:
        num, den = text.split("/")
        return float(num) / float(den)
    return float(text)


def coerce(f: Field, value: Any, spell: Spelling) -> Any:
    """``value`` (text from the command line, or a Python object) as the field's type."""
    try:
        return _coerce(f, value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise SettingError(f"{spell.assign(f.name, value)}: cannot read it as {f.kind()}") from None


def _coerce(f: Field, value: Any) -> Any:
    if value is None or (f.optional and isinstance(value, str) and value.strip().lower() in ("", "none", "all")):
        if not f.optional:
            raise ValueError("None")
        return None
    if f.spec.takes(value):
        return value
    if f.is_list:  # text items are split (a comma list, or the field's parser); repeated options arrive as a tuple
        split = f.spec.parse or (lambda text: parse_list(text, str))
        values = value if isinstance(value, Iterable) and not isinstance(value, str) else [value]
        items = [item for v in values for item in (split(v) if isinstance(v, str) else [v])]
        return tuple(_coerce_item(f, v) for v in items)
    if isinstance(value, str) and f.spec.parse:
        return f.spec.parse(value)
    return _coerce_item(f, value)


def _coerce_item(f: Field, value: Any) -> Any:
    kind = f.item_type
    if f.spec.takes(value):
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(value.strip()) if isinstance(value, str) else int(value)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return parse_float(value.strip()) if isinstance(value, str) else float(value)
    if kind is str:
        if not isinstance(value, str):
            raise TypeError(value)
        return value.strip()
    return value


def fits(f: Field, value: Any) -> bool:
    """Whether ``value`` is a valid value of ``f`` (its type, choices and bounds)."""
    try:
        check_value(f, coerce(f, value, CLI), CLI)
    except JembenchError:
        return False
    return True


def check_value(f: Field, value: Any, spell: Spelling) -> None:
    """Choices, bounds and path kind of one field (each item of a list)."""
    if value is None:
        return
    items = value if f.is_list else (value,)
    allowed = f.spec.allowed()
    for item in items:
        if f.spec.takes(item):
            continue
        if allowed is not None and item not in allowed:
            if f.spec.noun:
                raise SettingError(f"unknown {f.spec.noun} {item!r} ({spell.assign(f.name, value)}); "
                                   f"choose from {', '.join(allowed)}")
            raise SettingError(f"{spell.option(f.name)} must be one of {', '.join(allowed)}, got {item!r}")
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            s = f.spec
            if item != item or (s.min is not None and item < s.min) or (s.max is not None and item > s.max) \
                    or (s.above is not None and item <= s.above):
                raise SettingError(f"{spell.option(f.name)} must be {_bounds_text(s)}, got {_text(value)}")
        if f.spec.path and os.path.exists(item) and os.path.isdir(item) != (f.spec.path == "dir"):
            kind = "a folder" if f.spec.path == "dir" else "a file"
            raise SettingError(f"{spell.assign(f.name, value)}: not {kind}")


def _bounds_text(s: Spec) -> str:
    parts = []
    if s.above is not None:
        parts.append(f"> {s.above:g}")
    if s.min is not None:
        parts.append(f">= {s.min:g}")
    if s.max is not None:
        parts.append(f"<= {s.max:g}")
    return " and ".join(parts)


def _strip_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return getattr(value, "name", repr(value))


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    return str(value)
