"""DataLoader workers that end when the training process does.

paddle.io.DataLoader starts its workers with ``multiprocessing.Process`` (fork on Linux
with Python 3.11) and calls the loader's ``worker_init_fn`` in each worker's main thread
before it fetches anything. Paddle 3.3's worker loop does check its parent, but only after
``indices_queue.get(MP_STATUS_CHECK_INTERVAL)`` returns, and multiprocessing reads that
argument as ``block``, not as a timeout: a waiting worker sits in a pipe read for ever.
When train.py is killed (SIGKILL, the OOM killer) its workers live on, each holding a copy
of the dataset (issue 12: ten such orphans held 3.7 GB).

So every worker asks Linux for a signal when its parent dies (prctl PR_SET_PDEATHSIG),
which reaches it even in a blocking read. The signal is SIGTERM rather than SIGKILL so that
the worker can first delete the shared-memory batches it made (Paddle's own clean-up of
/dev/shm/paddle_*): measured with config 4 on an 8-image set, the two workers of a killed
train.py left 33 such files when they died without it, none with it. A daemon thread
also watches the parent, once a second: for where prctl does not exist, for a worker that
is not the trainer's direct child (multiprocessing's forkserver), and in case something
replaced the SIGTERM handler.

Linux sends that signal when the *thread* that started the worker ends, so the loader must
first be iterated by a thread that lasts as long as training: the main thread, in train.py
and tools/benchmark_pipeline.py.
"""

import ctypes
import os
import signal
import sys
import threading
import time

# <linux/prctl.h>: "send me this signal when my parent dies".
PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 1.0


class ExitWithParent:
    """``worker_init_fn`` for paddle.io.DataLoader: the worker ends when the process that
    built this object (the trainer) dies. A plain object, so that the spawn start method
    can pickle it."""

    def __init__(self):
        self.parent = os.getpid()

    def __call__(self, worker_id):
        exit_with_parent(self.parent)


def _leave(*_):
    """End this worker now, after deleting its shared-memory files (Paddle keeps that
    clean-up in a private module; without it the files stay in /dev/shm until reboot).
    A process that never imported Paddle has none, and does not import it to leave."""
    try:
        for name in ("paddle.io.multiprocess_utils", "paddle.base.multiprocess_utils"):
            if name in sys.modules:  # the module Paddle's worker loop registers it from
                sys.modules[name]._cleanup_mmap()
                break
    except Exception:  # leaving matters more than tidying up
        pass
    finally:
        os._exit(1)


def _death_signal_armed(signum):
    """Ask Linux to send ``signum`` to this process when its parent exits; False where
    prctl is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _running(pid):
    """Whether process ``pid`` exists and is not a zombie (True where that cannot be told:
    os.kill(pid, 0) would end the process on Windows)."""
    if os.path.exists("/proc/self/stat"):
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
                return f.read().rpartition(")")[2].split()[0] != "Z"
        except OSError:
            return False
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _watch(parent, ppid, seconds):
    # Either sign means the trainer is gone: this process was given another parent, or the
    # trainer (when it is not the direct parent) no longer runs.
    while os.getppid() == ppid and (ppid == parent or _running(parent)):
        time.sleep(seconds)
    _leave()


def exit_with_parent(parent, seconds=WATCH_SECONDS):
    """Make the calling process (a worker) end when process ``parent`` ends. Returns
    'prctl' when the kernel will signal it, 'watchdog' when only the thread watches."""
    ppid = os.getppid()
    if ppid != parent and not _running(parent):
        _leave()  # the trainer died before this worker got here
    threading.Thread(target=_watch, args=(parent, ppid, seconds), daemon=True,
                     name="exit-with-parent").start()
    if ppid != parent or threading.current_thread() is not threading.main_thread():
        return "watchdog"  # the signal would follow another parent / no handler here
    signal.signal(signal.SIGTERM, _leave)
    if not _death_signal_armed(signal.SIGTERM):
        return "watchdog"
    # The signal follows the parent of the moment of the call; a trainer that died just
    # before it left this process with another parent already.
    if os.getppid() != parent:
        _leave()
    return "prctl"
