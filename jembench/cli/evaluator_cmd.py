"""One click command per registered evaluator, generated from its settings class (``jembench clf``, ``ood``, ...).

Options: the evaluator's settings fields, then the shared fields it reads (``--dataset`` / ``--in``, ``--n``,
``--sigma``, ``--device``, ...), then where results go (``--save-raw``, ``--out-dir``, ``--json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .. import defaults
from ..evaluators.base import Evaluator, SharedSettings
from .options import echo_written, emit, field_option, given, quiet_option, resolve_checkpoints, wait_option


def make_command(spec: Evaluator) -> click.Command:
    """The command of ``spec``: options generated from its settings, callback = the Python API."""
    shared = [f for f in SharedSettings.fields() if f.name in spec.shared]

    def callback(checkpoints: tuple[str, ...], as_json: bool, out_dir: str, save_raw: bool, wait: bool, quiet: bool,
                 plan: bool, **values: Any) -> None:
        if plan:
            cost = spec.call(resolve_checkpoints(checkpoints), plan=True, **given(values))
            emit(cost.to_dict(), as_json, cost.table())
            return
        result = spec.call(resolve_checkpoints(checkpoints), out_dir=out_dir, save_raw=save_raw, wait=wait,
                           progress=not quiet,
                           **given(values))
        emit(result.to_dict(), as_json, spec.summary(result))
        echo_written(out_dir)

    params = [click.Argument(["checkpoints"], nargs=-1, type=click.Path()),
              *(field_option(f) for f in spec.settings.fields()),
              *(field_option(f, spec.renames.get(f.name)) for f in shared),
              click.Option(["--save-raw", "save_raw"], is_flag=True,
                           help="Also write per-sample arrays (npz) for re-analysis."),
              click.Option(["--out-dir", "out_dir"], type=click.Path(file_okay=False),
                           default=str(Path(defaults.REPORTS_DIR) / spec.name), show_default=True,
                           help="Where results.json, figures and raw arrays go."),
              wait_option,
              click.Option(["--json", "as_json"], is_flag=True, help="Print the results as JSON on stdout."),
              quiet_option(),
              click.Option(["--plan", "plan"], is_flag=True,
                           help="Print what it would cost (passes, estimated time from a short throughput probe) and "
                                "stop: nothing is evaluated or written.")]
    return click.Command(spec.name, params=params, callback=callback, help=spec.help, short_help=spec.short_help,
                         context_settings={"max_content_width": 100})
