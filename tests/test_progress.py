"""Progress bars: live on a terminal, a plain line every few percent elsewhere, labelled, silenced by --quiet and
never on stdout (where --json goes)."""

import io
import json
import sys

from click.testing import CliRunner

from jembench import progress
from jembench.cli import main

CKPT = "checkpoints/jem-digits.pt"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_file_gets_a_line_every_few_percent_and_no_carriage_return(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with progress.labelled("[2/5] ood (jem)"):
        b = progress.bar(200, "forward svhn", "img")
        for _ in range(200):
            b.update(1)
        b.close()
    text = err.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and len(lines) == 100 // progress.LINE_PERCENT + 1  # 0%, 5%, ..., 100%
    assert all(line.startswith("[2/5] ood (jem): forward svhn:") for line in lines)
    assert "100%" in lines[-1] and "200/200" in lines[-1]


def test_a_terminal_gets_a_live_bar(monkeypatch):
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    for _ in progress.track(range(50), desc="sampling"):
        pass
    assert "\r" in err.getvalue() and "sampling" in err.getvalue()


def test_switches_silence_bars(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    list(progress.track(range(10), desc="off", enabled=False))
    monkeypatch.setattr(progress, "ENABLED", False)  # the process-wide switch (other ranks of a distributed run)
    list(progress.track(range(10), desc="off"))
    assert err.getvalue() == ""


def test_commands_show_labelled_progress_on_stderr_only(tmp_path):
    args = ["--dataset", "digits", "--n", "40", "--batch-size", "16", "--device", "cpu", "--json"]
    r = CliRunner().invoke(main, ["clf", CKPT, *args, "--out-dir", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["evaluations"][0]["metrics"]["n"] == 40  # stdout is the JSON only
    bars = [line for line in r.stderr.splitlines() if line.startswith("clf: forward digits (jem-digits)")]
    assert bars and "40/40" in bars[-1] and "\r" not in r.stderr
    quiet = CliRunner().invoke(main, ["clf", CKPT, *args, "--quiet", "--out-dir", str(tmp_path / "b")])
    assert quiet.exit_code == 0 and "forward" not in quiet.stderr and json.loads(quiet.stdout)


def test_run_all_labels_bars_with_the_step_and_checkpoint(tmp_path):
    args = ["run-all", CKPT, "--only", "clf", "--set", "n=24", "--device", "cpu", "--json"]
    r = CliRunner().invoke(main, [*args, "--out-dir", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert any(line.startswith("[1/1] clf (jem-digits): forward digits") for line in r.stderr.splitlines()), r.stderr
    assert json.loads(r.stdout)["evaluations"]
    quiet = CliRunner().invoke(main, [*args, "--quiet", "--out-dir", str(tmp_path / "b")])
    assert quiet.exit_code == 0 and "[1/1]" not in quiet.stderr and json.loads(quiet.stdout)["evaluations"]
