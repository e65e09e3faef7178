"""The figure thread (jembench.background): jobs run while the caller goes on, wait() joins them in order, and a
failed figure is a warning, never an exception."""

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
