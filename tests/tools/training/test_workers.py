"""Loader workers end with the process that started them, even when it is SIGKILLed."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tools.training.workers import ExitWithParent, exit_with_parent

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def gone(pid):
    """No such process, or a zombie waiting for init to collect it."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def orphan_after_sigkill(prctl, watch_seconds):
    """Start a process that forks a 'worker' (exit_with_parent, then a blocking pipe read
    like a waiting DataLoader worker), reports the worker's pid and how it watches, and
    SIGKILLs itself. Returns (worker pid, how, seconds until the worker was gone or None)."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {ROOT!r})
        import tools.training.workers as workers
        if not {prctl!r}:
            workers._death_signal_armed = lambda signum: False  # as where prctl is missing
        parent = os.getpid()
        report_r, report_w = os.pipe()
        block_r, block_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            how = workers.exit_with_parent(parent, seconds={watch_seconds!r})
            os.write(report_w, how.encode())
            os.read(block_r, 1)  # nobody writes: blocks until the worker is ended
            os._exit(0)
        print(pid, os.read(report_r, 100).decode(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        pid, how = proc.stdout.readline().split()
        pid = int(pid)
        assert proc.wait(30) == -signal.SIGKILL
        start = time.monotonic()
        while time.monotonic() - start < 5:
            if gone(pid):
                return pid, how, time.monotonic() - start
            time.sleep(0.05)
        return pid, how, None
    finally:
        # Whatever the outcome, leave no process of this test behind (one group: setsid).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
def test_the_kernel_ends_a_blocked_worker_at_once():
    # The watchdog would take 100 s: ending within a second is the death signal's doing.
    pid, how, seconds = orphan_after_sigkill(prctl=True, watch_seconds=100.0)
    assert how == "prctl"
    assert seconds is not None and seconds < 2, f"worker {pid} outlived its parent"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds processes through /proc")
def test_without_prctl_the_watchdog_ends_the_worker():
    pid, how, seconds = orphan_after_sigkill(prctl=False, watch_seconds=0.2)
    assert how == "watchdog"
    assert seconds is not None and seconds < 3, f"worker {pid} outlived its parent"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_worker_whose_trainer_is_already_dead_leaves_at_once():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pid = os.fork()
    if pid == 0:
        try:
            exit_with_parent(dead.pid)
        finally:
            os._exit(0)  # reached only if exit_with_parent let it live
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1


def test_the_init_function_survives_pickling_for_spawned_workers():
    init = pickle.loads(pickle.dumps(ExitWithParent()))
    assert init.parent == os.getpid()
