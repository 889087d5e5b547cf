"""The head of train.log: command, commit (dirty or not, unknown outside git), Paddle,
device, config."""

import re
import shutil
import subprocess

import paddle
import pytest

from tools.training.runinfo import REPO, command_line, git_commit, run_header

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")


def git(folder, *words):
    subprocess.run(["git", "-C", str(folder), *words], check=True, capture_output=True)


@pytest.fixture
def checkout(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "add", "a.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    return repo


@needs_git
def test_commit_clean_then_dirty_untracked_files_do_not_count(checkout):
    head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    assert git_commit(str(checkout)) == head
    (checkout / "output.log").write_text("a run's output\n")
    assert git_commit(str(checkout)) == head
    (checkout / "a.py").write_text("x = 2\n")
    assert git_commit(str(checkout)) == f"{head} (dirty)"


@needs_git
def test_commit_unknown_outside_a_checkout_or_inside_another_one(tmp_path, checkout):
    outside = tmp_path / "plain"
    outside.mkdir()
    assert git_commit(str(outside)) == "unknown"
    inner = checkout / "copy_of_the_code"
    inner.mkdir()
    assert git_commit(str(inner)) == "unknown"  # not this code's commit


def test_commit_unknown_without_git(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert git_commit(REPO) == "unknown"


def test_header_names_command_commit_paddle_device_then_the_table():
    header = run_header("config: x\nfield  value", "train.py",
                        ["--config=4", "train_cfg.output_dir=/tmp/a b"], world_size=2)
    lines = header.splitlines()
    assert lines[0] == "command: python train.py --config=4 'train_cfg.output_dir=/tmp/a b'"
    assert re.fullmatch(r"git commit: ([0-9a-f]{40}( \(dirty\))?|unknown)", lines[1])
    assert lines[2].startswith(f"paddle: {paddle.__version__} (commit ")
    assert lines[3] == f"device: {paddle.device.get_device()}, 2 processes"
    assert lines[4:] == ["config: x", "field  value"]
    assert command_line("train.py", []) == "python train.py"
