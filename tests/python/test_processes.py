"""Single flight across threads and processes (fork and spawn), a SIGKILLed
lease holder taken over, exceptions not cached. Runs are counted in a file
every process appends to; processes meet at barriers, nothing sleeps."""

import multiprocessing
import os
import signal
import threading

import pytest

import tcache

ARGS = 6  # distinct arguments each worker computes, twice each


def record(counter_file, x):
    """Appends one run of x to counter_file (O_APPEND: atomic between processes)."""
    fd = os.open(counter_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{x}\n".encode())
    finally:
        os.close(fd)


def runs(counter_file):
    if not os.path.exists(counter_file):
        return []
    with open(counter_file) as f:
        return sorted(int(line) for line in f)


def memoized(path, counter_file):
    """The bcache wrapper every worker uses: one name, one file."""
    def square(x):
        record(counter_file, x)
        return x * x

    return tcache.bcache(name="procs.square", path=path)(square)


def work(square, barrier, worker_id):
    barrier.wait()
    for i in range(2 * ARGS):
        x = (i + worker_id) % ARGS
        if square(x) != x * x:
            raise AssertionError(f"wrong value for {x}")


def spawn_worker(path, counter_file, barrier, worker_id):
    # A spawned interpreter makes its own wrapper.
    work(memoized(path, counter_file), barrier, worker_id)


@pytest.fixture
def files(tmp_cache_dir):
    return str(tmp_cache_dir / "procs.tcache"), str(tmp_cache_dir / "runs.txt")


def test_threads_compute_once(files):
    path, counter = files
    square = memoized(path, counter)
    barrier = threading.Barrier(8)
    errors = []

    def thread_main(worker_id):
        try:
            work(square, barrier, worker_id)
        except Exception as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=thread_main, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert runs(counter) == list(range(ARGS))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_processes_compute_once(files, method):
    path, counter = files
    ctx = multiprocessing.get_context(method)
    barrier = ctx.Barrier(4)
    if method == "fork":
        square = memoized(path, counter)  # made before fork: inherited by the children
        square(0)
        procs = [ctx.Process(target=work, args=(square, barrier, i)) for i in range(4)]
    else:
        procs = [ctx.Process(target=spawn_worker, args=(path, counter, barrier, i))
                 for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert runs(counter) == list(range(ARGS))


def hold_lease_forever(path, counter, started_w):
    def stuck(x):
        record(counter, x)
        os.write(started_w, b"1")  # holds the lease now
        threading.Event().wait()  # until SIGKILL
        return x

    tcache.bcache(name="procs.stuck", path=path, lease_timeout=3600.0)(stuck)(7)


def test_sigkilled_lease_holder_is_taken_over(files):
    path, counter = files
    started_r, started_w = os.pipe()
    ctx = multiprocessing.get_context("fork")
    holder = ctx.Process(target=hold_lease_forever, args=(path, counter, started_w))
    holder.start()
    assert os.read(started_r, 1) == b"1"
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    assert holder.exitcode == -signal.SIGKILL

    def fresh(x):
        record(counter, x)
        return x * 2

    # lease_timeout is an hour: only noticing the dead holder lets this return.
    assert tcache.bcache(name="procs.stuck", path=path, lease_timeout=3600.0)(fresh)(7) == 14
    assert runs(counter) == [7, 7]
    os.close(started_r)
    os.close(started_w)


def test_exceptions_are_not_cached_and_waiters_go_on(files):
    path, counter = files
    entered = threading.Event()
    release = threading.Event()

    def flaky(x):
        record(counter, x)
        if len(runs(counter)) == 1:
            entered.set()
            release.wait()
            raise RuntimeError("first run fails")
        return x + 1

    wrapped = tcache.bcache(name="procs.flaky", path=path)(flaky)
    outcome = {}

    def first():
        try:
            wrapped(1)
        except RuntimeError as e:
            outcome["first"] = e

    leader = threading.Thread(target=first)
    leader.start()
    entered.wait()
    follower_result = []
    follower = threading.Thread(target=lambda: follower_result.append(wrapped(1)))
    follower.start()  # waits on the lease the leader holds
    release.set()
    leader.join()
    follower.join()
    assert isinstance(outcome["first"], RuntimeError)
    assert follower_result == [2]  # the failed run was not stored; the waiter computed
    assert wrapped(1) == 2
    assert runs(counter) == [1, 1]
