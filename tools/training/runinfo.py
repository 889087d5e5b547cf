"""What a run says about itself at the top of train.log: the command, the code's commit,
Paddle and the device, then the resolved config, so that a log found months later says
how to repeat the run."""

import os
import shlex
import subprocess
import sys

# The repository this file belongs to, whose commit the log names.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def git_commit(folder=REPO):
    """'<commit>' of the checkout whose top is ``folder``, '<commit> (dirty)' when tracked files
    differ from it (untracked files, such as data and outputs, do not count), 'unknown'
    outside a git checkout or without git."""
    # GIT_OPTIONAL_LOCKS=0: status must not take the index lock a concurrent commit needs.
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")

    def git(*words):
        return subprocess.run(["git", "-C", folder, *words], capture_output=True, text=True,
                              timeout=20, check=True, env=env).stdout.strip()

    try:
        # A copy of the code inside some other checkout is not that checkout's commit.
        if os.path.realpath(git("rev-parse", "--show-toplevel")) != os.path.realpath(folder):
            return "unknown"
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit} (dirty)" if dirty else commit


def command_line(script, argv=None):
    """The command as it could be typed again: ``python <script> <words>``."""
    words = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", script, *words])


def run_header(cfg_table, script, argv=None, world_size=1):
    """The first lines of train.log: command, commit, Paddle, device, the config table."""
    import paddle

    processes = f"{world_size} process{'es' if world_size > 1 else ''}"
    return "\n".join([
        f"command: {command_line(script, argv)}",
        f"git commit: {git_commit()}",
        f"paddle: {paddle.__version__} (commit {paddle.version.commit[:12]})",
        f"device: {paddle.device.get_device()}, {processes}",
        cfg_table,
    ])
