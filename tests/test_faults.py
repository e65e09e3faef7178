"""Fault injection (issue 12): kills mid-run, disk full / read-only at every write site, two runs on one out-dir,
resume that must not mix configurations, leftovers. docs/reliability.md lists what each test proves."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import jembench.outdir as outdir
from jembench.cli import main
from jembench.evaluators.registry import REGISTRY
from jembench.evaluators.run_all import run_all
from jembench.io import WriteError
from jembench.outdir import LOCK_NAME, OutDirBusy, claim
from test_run_all import fake_evaluators, tiny_checkpoint

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "checkpoints" / "jem-digits.pt"
SMALL_RUN = ["--only", "clf,calib", "--n", "60", "--set", "calib.bootstrap=10", "--device", "cpu"]
# a subprocess that runs the CLI and kills itself (SIGKILL / SIGINT) just before the file whose path contains TRIGGER
# is renamed into place: its temporary file is complete and left behind, as after a real kill inside a writer
KILLER = """
import os, signal, sys
trigger, sig = sys.argv[1], getattr(signal, sys.argv[2])
real = os.replace
def replace(src, dst, *a, **k):
    if trigger in str(dst):
        os.kill(os.getpid(), sig)
    return real(src, dst, *a, **k)
os.replace = replace
from jembench.cli import main
sys.argv = ["jembench", *sys.argv[3:]]
main()
"""


def _leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name in (LOCK_NAME, "error.txt")]


def _numbers(out: Path) -> dict:
    doc = json.loads((out / "results.json").read_text())
    return {(e["evaluator"], e["protocol_key"]): e["metrics"] for e in doc["evaluations"]}


def _arrays(out: Path) -> dict:
    found = {}
    for p in sorted(out.rglob("*.npz")):
        with np.load(p) as z:
            found[p.relative_to(out).as_posix()] = {k: z[k] for k in z.files}
    return found


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every interrupted one is compared with."""
    out = tmp_path_factory.mktemp("ref") / "out"
    r = CliRunner().invoke(main, ["run-all", str(DEMO), *SMALL_RUN, "--out-dir", str(out)])
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.parametrize("trigger,sig", [(".parts/clf-", "SIGKILL"), ("calib/", "SIGINT"),
                                         ("results.json", "SIGKILL"), ("index.html", "SIGKILL"),
                                         ("index.html", "SIGINT")])
def test_interrupted_run_all_resumes_to_the_same_results(tmp_path, reference, trigger, sig):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", KILLER, trigger, sig, "run-all", str(DEMO), *SMALL_RUN,
                           "--out-dir", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == (-signal.SIGKILL if sig == "SIGKILL" else 130), proc.stderr
    if sig == "SIGKILL":  # a dead writer's temporary file and lock stay behind ...
        assert any(p.name.endswith(".tmp") for p in out.rglob(".*")) and (out / LOCK_NAME).exists()
    else:  # ... an interrupted one cleans up after itself
        assert "interrupted" in proc.stderr and not _leftovers(out)
    r = CliRunner().invoke(main, ["run-all", str(DEMO), *SMALL_RUN, "--out-dir", str(out)])
    assert r.exit_code == 0, r.output
    assert not _leftovers(out)  # ... and the rerun removes them
    assert _numbers(out) == _numbers(reference)
    a, b = _arrays(out), _arrays(reference)
    assert a.keys() == b.keys() and all(np.array_equal(a[f][k], b[f][k]) for f in a for k in a[f])
    for csv in (reference / "tables").glob("*.csv"):
        assert (out / "tables" / csv.name).read_text() == csv.read_text()


def _fail_writes(monkeypatch, out: Path, should_fail):
    """os.replace into ``out`` raises ENOSPC / EROFS when ``should_fail(n, dst)`` (n counts renames into out)."""
    real, count = os.replace, [0]

    def replace(src, dst, *a, **k):
        if str(dst).startswith(str(out)):
            count[0] += 1
            code = should_fail(count[0], str(dst))
            if code:
                raise OSError(code, os.strerror(code))
        return real(src, dst, *a, **k)
    monkeypatch.setattr(os, "replace", replace)
    return count


def test_disk_full_or_read_only_at_every_write_site_is_one_line_and_resumable(tmp_path, tiny_jem, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt", "tiny", tiny_jem)
    fake_evaluators(monkeypatch, {}, {})
    args = ["run-all", str(ckpt), "--device", "cpu"]
    ref = tmp_path / "ref"
    with monkeypatch.context() as m:
        n_writes = _fail_writes(m, ref, lambda n, dst: 0)
        assert CliRunner().invoke(main, [*args, "--out-dir", str(ref)]).exit_code == 0
    assert n_writes[0] >= 12  # 5 figures, 5 part files, results.json, index.html, tables
    for k in range(1, n_writes[0] + 1):
        out = tmp_path / f"out{k}"
        code = errno.ENOSPC if k % 2 else errno.EROFS
        with monkeypatch.context() as m:
            _fail_writes(m, out, lambda n, dst: code if n == k else 0)
            r = CliRunner().invoke(main, [*args, "--out-dir", str(out)])
        lines = r.stderr.strip().splitlines()
        assert r.exit_code == 2 and "Traceback" not in r.output, (k, r.output)
        assert lines[-1].startswith(f"jembench: error: cannot write {out}") and errno.errorcode[code] in lines[-1]
        assert not _leftovers(out)
        r = CliRunner().invoke(main, [*args, "--out-dir", str(out)])  # space freed: the rerun finishes the job
        assert r.exit_code == 0 and _numbers(out) == _numbers(ref), (k, r.output)


def test_failure_handler_survives_a_full_disk(tmp_path, tiny_jem, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt", "tiny", tiny_jem)
    fake_evaluators(monkeypatch, {}, {"robust": RuntimeError("attack diverged")})
    out = tmp_path / "out"
    _fail_writes(monkeypatch, out, lambda n, dst: errno.ENOSPC if dst.endswith("error.txt") else 0)
    r = CliRunner().invoke(main, ["run-all", str(ckpt), "--device", "cpu", "--out-dir", str(out)])
    assert r.exit_code == 1 and "attack diverged" in r.stderr.splitlines()[-1]  # the run went on to the end
    assert "cannot write" in r.stderr and "error.txt" in r.stderr  # the lost traceback file is a warning
    assert {e for e, _ in _numbers(out)} == set(REGISTRY)


def test_unwritable_out_dir_fails_before_any_work(tmp_path, tiny_jem, monkeypatch):
    calls: dict = {}
    fake_evaluators(monkeypatch, calls, {})

    def refuse(path, *a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(outdir, "open", refuse, raising=False)
    spec = REGISTRY["clf"]
    seen = []
    fake = replace(spec, run=lambda *a: seen.append(1) or [])
    with pytest.raises(WriteError, match=r"cannot write .*out: Read-only file system \(EROFS\)"):
        fake.call(tiny_jem, out_dir=tmp_path / "out")
    assert not seen and not (tmp_path / "out").exists()
    with pytest.raises(WriteError, match="EROFS"):
        run_all([tiny_jem], out_dir=tmp_path / "out", device="cpu", progress=False)
    assert not calls


def test_second_run_on_one_out_dir_exits_2_naming_the_holder_or_waits(tmp_path, tiny_jem, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt", "tiny", tiny_jem)
    out = tmp_path / "out"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        out.mkdir()
        (out / LOCK_NAME).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(),
                                                 "started": "2026-11-30T06:00:00"}))
        fake_evaluators(monkeypatch, {}, {})
        r = CliRunner().invoke(main, ["run-all", str(ckpt), "--device", "cpu", "--out-dir", str(out)])
        assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
        assert f"in use by another jembench run: pid {sleeper.pid} on {socket.gethostname()}" in r.stderr
        assert "--wait" in r.stderr and not (out / "results.json").exists()
        r = CliRunner().invoke(main, ["clf", str(ckpt), "--device", "cpu", "--out-dir", str(out)])  # evaluators too
        assert r.exit_code == 2 and f"pid {sleeper.pid}" in r.stderr and not (out / "results.json").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    # its holder is dead now: the lock is stale and taken over, with a warning
    r = CliRunner().invoke(main, ["run-all", str(ckpt), "--device", "cpu", "--out-dir", str(out)])
    assert r.exit_code == 0 and f"taking over the stale lock of pid {sleeper.pid}" in r.stderr
    assert not (out / LOCK_NAME).exists()


def test_concurrent_runs_never_share_an_out_dir(tmp_path, tiny_jem, monkeypatch):
    calls: dict = {}
    fake_evaluators(monkeypatch, calls, {})
    out = tmp_path / "out"
    holding, go = threading.Event(), threading.Event()

    def first():
        with claim(out):
            holding.set()
            go.wait(10)
    t = threading.Thread(target=first)
    t.start()
    holding.wait(10)
    with pytest.raises(OutDirBusy, match="in use by another jembench run"):
        run_all([tiny_jem], out_dir=out, device="cpu", progress=False)
    assert not calls  # the second run did nothing
    threading.Timer(0.6, go.set).start()
    start = time.perf_counter()
    run_all([tiny_jem], out_dir=out, device="cpu", progress=False, wait=True)  # waits for the first, then runs
    assert time.perf_counter() - start >= 0.5 and calls["clf"] == 1
    t.join()


def _ood_run(ckpt: Path, out: Path, seed: int):
    return run_all([ckpt], out_dir=out, device="cpu", seed=seed, progress=False, html=False,
                   overrides={"evaluators": ("ood",), "n": 40, "ood.bootstrap": 0, "ood.out": "noise",
                              "ood.scores": "logp"})


def test_resume_never_mixes_configurations(tmp_path, tiny_jem):
    """Issue 12, item 2: seed 0, seed 1, seed 0 again: what results.json says equals what the files it links say."""
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt", "tiny", tiny_jem)
    mixed, clean = tmp_path / "mixed", tmp_path / "clean"
    for seed in (0, 1, 0):
        _ood_run(ckpt, mixed, seed)
    _ood_run(ckpt, clean, 0)
    assert _numbers(mixed) == _numbers(clean)
    doc = json.loads((mixed / "results.json").read_text())
    linked = doc["evaluations"][0]["artifacts"]["raw_scores"]
    clean_doc = json.loads((clean / "results.json").read_text())
    with np.load(mixed / linked) as a, np.load(clean / clean_doc["evaluations"][0]["artifacts"]["raw_scores"]) as b:
        assert all(np.array_equal(a[k], b[k]) for k in b.files)
    assert len(list((mixed / "ood").iterdir())) == 2  # one folder per configuration


def test_resume_recomputes_a_step_whose_files_changed(tmp_path, tiny_jem, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt", "tiny", tiny_jem)
    calls: dict = {}
    fake_evaluators(monkeypatch, calls, {})
    out = tmp_path / "out"
    run_all([ckpt], out_dir=out, device="cpu", progress=False)
    part = json.loads(next((out / ".parts").glob("clf-*.json")).read_text())
    (figure,) = part["artifacts"]
    assert len(part["artifacts"][figure]) == 64  # the part file records the sha256 of what it links
    (out / figure).write_bytes(b"overwritten by someone else")
    result = run_all([ckpt], out_dir=out, device="cpu", progress=False)
    assert calls["clf"] == 2 and calls["calib"] == 1 and "clf (tiny)" not in result.resumed


def test_stale_error_file_is_removed_by_a_successful_retry(tmp_path, tiny_jem, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt", "tiny", tiny_jem)
    fake_evaluators(monkeypatch, {}, {"gen": RuntimeError("boom")})
    out = tmp_path / "out"
    assert run_all([ckpt], out_dir=out, device="cpu", progress=False).failed
    assert len(list(out.rglob("error.txt"))) == 1
    fake_evaluators(monkeypatch, {}, {})
    assert not run_all([ckpt], out_dir=out, device="cpu", progress=False).failed
    assert not list(out.rglob("error.txt"))


def test_leftovers_of_dead_writers_only_are_removed(tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = out / "sub" / f".index.html.{dead.pid}.abc123.tmp"
    old_style = out / ".results.json.k2j4h.tmp"
    alive = out / f".fig.png.{os.getppid()}.zz9.tmp"
    for p in (orphan, old_style, alive):
        p.write_bytes(b"x")
    with claim(out):
        pass
    assert not orphan.exists() and not old_style.exists() and alive.exists()
