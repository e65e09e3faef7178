"""The ``jembench`` command line: one click group, one module per command (loaded lazily)."""

from __future__ import annotations

import importlib
import sys

import click

from ..errors import JembenchError

# command name -> "module:function" (module relative to jembench.cli)
COMMANDS = {
    "inspect": "inspect_cmd:inspect_cmd",
    "datasets": "datasets_cmd:datasets_cmd",
    "train": "train_cmd:train_cmd",
    "clf": "clf_cmd:clf_cmd",
    "calib": "clf_cmd:calib_cmd",
    "ood": "ood_cmd:ood_cmd",
    "robust": "robust_cmd:robust_cmd",
    "gen": "gen_cmd:gen_cmd",
    "run-all": "run_all_cmd:run_all_cmd",
    "report": "report_cmd:report_cmd",
}


class JembenchGroup(click.Group):
    """Loads each command's module on first use; turns :class:`JembenchError` into one line on stderr."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._available(name)]

    def _available(self, name: str) -> bool:
        module = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(f"{__name__}.{module}") is not None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not self._available(name):
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), attr)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except JembenchError as exc:
            click.echo(f"jembench: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:  # a bad option value: one line too, with where to read more
            where = f"jembench {exc.ctx.info_name} --help" if exc.ctx and exc.ctx.parent else "jembench --help"
            click.echo(f"jembench: error: {exc.format_message()} (see {where})", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("jembench: interrupted; finished results were kept, nothing half-written", err=True)
            sys.exit(130)


@click.group(cls=JembenchGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="jembench")
def main() -> None:
    """Evaluate and benchmark energy-based hybrid classifiers (JEM, JEM++ and their family).

    \b
    Start here:
      jembench run-all checkpoints/jem-digits.pt checkpoints/baseline-digits.pt --preset quick
      jembench inspect CKPT            what was inferred from a checkpoint
      jembench ood --in cifar10 --out svhn   (CKPT from $JEMBENCH_CKPT)

    Checkpoints: JEM / JEM++ files as their authors saved them, bare state dicts, or jembench's own
    format. Data: --data-dir or $JEMBENCH_DATA; nothing is downloaded without --download.
    """
