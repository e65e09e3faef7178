"""The ``jembench`` command line: one click group; one command per registered evaluator, generated from its
settings (:mod:`jembench.cli.evaluator_cmd`), and one module per other command (loaded on first use).

Evaluators report progress and warnings through the ``jembench`` logger; the group prints them on stderr.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from ..distributed import env_rank
from ..errors import JembenchError

# the commands that are not evaluators: name -> "module:function" (module relative to jembench.cli)
COMMANDS = {
    "inspect": "inspect_cmd:inspect_cmd",
    "datasets": "datasets_cmd:datasets_cmd",
    "train": "train_cmd:train_cmd",
    "run-all": "run_all_cmd:run_all_cmd",
    "report": "report_cmd:report_cmd",
}
EVALUATORS_AFTER = "train"  # evaluator commands are listed after this one


class StderrHandler(logging.Handler):
    """The ``jembench`` logger on whatever ``sys.stderr`` is now: warnings as ``jembench: warning: ...``,
    progress lines as they are."""

    def emit(self, record: logging.LogRecord) -> None:
        from ..io import printable  # names read from files: no escape sequences reach the terminal

        prefix = "jembench: warning: " if record.levelno >= logging.WARNING else ""
        click.echo(printable(prefix + record.getMessage()), err=True)


def show_log() -> None:
    """Send the ``jembench`` logger's records to stderr (once)."""
    logger = logging.getLogger("jembench")
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        logger.addHandler(StderrHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False


class JembenchGroup(click.Group):
    """Builds each command on first use; turns :class:`JembenchError` into one line on stderr."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from ..evaluators.registry import REGISTRY

        names = list(COMMANDS)
        at = names.index(EVALUATORS_AFTER) + 1
        return names[:at] + list(REGISTRY) + names[at:]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS:
            module, attr = COMMANDS[name].split(":")
            return getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        from ..evaluators.registry import REGISTRY
        from .evaluator_cmd import make_command

        return make_command(REGISTRY[name]) if name in REGISTRY else None

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        show_log()
        if env_rank() > 0:  # torchrun: rank 0 alone prints results, progress and warnings; errors show on every rank
            logging.getLogger("jembench").setLevel(logging.ERROR)
            sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the rest of this process
        try:
            return super().invoke(ctx)
        except JembenchError as exc:
            from ..io import printable

            for line in exc.lines():
                click.echo(printable(f"jembench: error: {line}"), file=sys.__stderr__ if env_rank() > 0 else None,
                           err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:  # a bad option value: one line too, with where to read more
            where = f"jembench {exc.ctx.info_name} --help" if exc.ctx and exc.ctx.parent else "jembench --help"
            fail(f"jembench: error: {exc.format_message()} (see {where})", exc.exit_code)
        except KeyboardInterrupt:
            fail("jembench: interrupted; finished results were kept, nothing half-written", 130)


def fail(message: str, code: int) -> None:
    """Print the one-line error on stderr (the real one on a quiet torchrun rank) and exit with ``code``."""
    from ..io import printable

    click.echo(printable(message), file=sys.__stderr__ if env_rank() > 0 else None, err=True)
    sys.exit(code)


@click.group(cls=JembenchGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="jembench")
def main() -> None:
    """Evaluate and benchmark energy-based hybrid classifiers (JEM, JEM++ and their family).

    \b
    Start here:
      jembench run-all bundled:jem-digits bundled:baseline-digits --preset quick
      jembench inspect CKPT            what was inferred from a checkpoint
      jembench inspect bundled:        the checkpoints shipped with jembench (bundled:NAME anywhere)
      jembench ood --in cifar10 --out svhn   (CKPT from $JEMBENCH_CKPT)

    Checkpoints: JEM / JEM++ files as their authors saved them, bare state dicts, or jembench's own
    format. Data: --data-dir or $JEMBENCH_DATA; nothing is downloaded without --download.
    """
