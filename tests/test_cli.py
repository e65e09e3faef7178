"""The command group itself: every command listed, bad option values answered in one line (exit 2)."""

import pytest
from click.testing import CliRunner

from jembench.cli import COMMANDS, main


def test_every_command_is_listed_in_help():
    out = CliRunner().invoke(main, ["--help"]).output
    for name in COMMANDS:
        assert f"  {name} " in out


@pytest.mark.parametrize("args, says", [
    (["clf", "--data-dir", __file__], "Invalid value for '--data-dir'"),
    (["ood", "--bogus"], "No such option '--bogus'"),
    (["report", "no-such-results.json"], "no-such-results.json"),
    (["no-such-command"], "No such command"),
])
def test_usage_errors_are_one_line(args, says):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jembench: error: ") and says in lines[0], result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


@pytest.mark.parametrize("command", ["clf", "run-all"])
def test_help_writes_a_default_of_none_as_the_word_the_option_takes(command):
    """--batch-size's None means auto: the help says auto (it said "none", which the option does not take)."""
    out = " ".join(CliRunner().invoke(main, [command, "--help"]).output.split())
    assert "--batch-size INT|auto" in out and "[default: auto]" in out
    assert "[default: none]" not in out.split("--batch-size", 1)[1].split("--precision", 1)[0]
