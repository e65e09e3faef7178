"""The figure thread (jembench.background): jobs run while the caller goes on, wait() joins them in order, and a
failed figure is a warning, never an exception."""

import os
import threading
import time

import pytest

from jembench import background


def test_jobs_run_in_one_other_thread_while_the_caller_goes_on_and_wait_joins_them():
    release, done, threads = threading.Event(), [], set()

    def job(i):
        release.wait(5)
        threads.add(threading.current_thread().name)
        done.append(i)

    start = time.perf_counter()
    for i in range(3):
        background.submit(f"job {i}", job, i)
    assert time.perf_counter() - start < 1 and done == []  # submit does not wait for the job
    release.set()
    assert background.wait() == [] and done == [0, 1, 2]  # in order, all finished
    assert len(threads) == 1 and threading.current_thread().name not in threads


def test_a_failed_figure_is_a_warning():
    background.submit("figure x.png", lambda: 1 / 0)
    background.submit("figure y.png", lambda: None)
    failed = background.wait()
    assert failed == ["figure x.png was not written (ZeroDivisionError: division by zero)"]
    assert background.wait() == []


def test_a_full_disk_stops_the_run_after_every_job_is_joined():
    from jembench.io import WriteError

    done = []

    def full():
        raise WriteError("cannot write x.png: No space left on device (ENOSPC)")

    background.submit("figure x.png", full)
    background.submit("resume file y.json", lambda: done.append(1))
    with pytest.raises(WriteError, match="ENOSPC"):
        background.wait()
    assert done == [1] and background.wait() == []  # the later job still ran; nothing left pending


@pytest.fixture
def no_worker_yet():
    """The module's worker state reset before and after: each test starts its own worker (or none)."""
    def reset():
        background.wait()
        if background._WORKER is not None:
            background._WORKER.close()
        background._WORKER, background._NO_WORKER, background._WANTED = None, False, False
    reset()
    yield
    reset()


def test_render_jobs_are_drawn_by_a_worker_process_and_written_here(tmp_path, no_worker_yet):
    background.render("figure before.png", dict, {tmp_path / "before.png": b"x"})  # no start(): the thread draws
    assert background.wait() == [] and background._WORKER is None and (tmp_path / "before.png").is_file()
    background.start()
    paths = [tmp_path / f"f{i}.png" for i in range(3)]
    for i, p in enumerate(paths):
        background.render(f"figure {p.name}", dict, {p: b"png %d" % i})  # dict: a job the worker can import
    background.submit("after", lambda: paths[2].read_bytes())  # queued work runs after the files are written
    assert background.wait() == []
    assert [p.read_bytes() for p in paths] == [b"png 0", b"png 1", b"png 2"]
    worker = background._WORKER
    assert worker is not None and worker.proc.poll() is None and worker.proc.pid != os.getpid()
    background.render("figure bad.png", dict, 5)  # the job raises in the worker: a warning here
    assert background.wait() == ["figure bad.png was not written (TypeError: 'int' object is not iterable)"]


def test_without_a_worker_the_same_files_are_drawn_in_the_thread(tmp_path, no_worker_yet, monkeypatch):
    background.start()
    assert background.wait() == [] and background._WORKER is not None
    monkeypatch.setattr(background._Worker, "call", lambda self, payload: pytest.fail("sent to the worker"))
    background.render("local job", lambda: {tmp_path / "a.png": b"a"})  # cannot be pickled: drawn in the thread
    assert background.wait() == [] and (tmp_path / "a.png").read_bytes() == b"a"
    monkeypatch.setenv(background.MODE_ENV, "thread")
    background.render("figure b.png", dict, {tmp_path / "b.png": b"b"})
    assert background.wait() == [] and (tmp_path / "b.png").read_bytes() == b"b"


def test_a_worker_that_dies_costs_one_figure_and_the_rest_are_drawn_in_the_thread(tmp_path, no_worker_yet):
    background.start()
    assert background.wait() == []
    background._WORKER.proc.kill()
    background._WORKER.proc.wait()
    background.render("figure lost.png", dict, {tmp_path / "lost.png": b"x"})
    background.render("figure kept.png", dict, {tmp_path / "kept.png": b"y"})
    failed = background.wait()
    assert len(failed) == 1 and failed[0].startswith("figure lost.png was not written (RuntimeError: the figure "
                                                     "worker stopped")
    assert (tmp_path / "kept.png").read_bytes() == b"y" and not (tmp_path / "lost.png").exists()
