"""train.py end to end at a tiny size, and its answers to bad input."""

import errno
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

import train
from config import load_config
from tools.data.synthetic import make_dataset
from tools.inference.backends import load_dygraph
from tools.inference.predictor import predict_stream
from tools.training.checkpoints import list_checkpoints, load_latest
from tools.training.metrics import curve, read_metrics
from tools.weights.describe import model_info
from tools.weights.files import load_pdparams

# Narrow heads and 64-pixel images keep a CPU iteration near a second.
TINY = ["head_seg_feat_channels=64", "mask_feat_channels=64", "train_sizes=(64,)",
        "train_max_size=96", "test_size=(64,96)"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("shapes"))
    make_dataset(folder, train=4, val=2, seed=0, size=(64, 80))
    return folder


def data_words(folder):
    return ["num_classes=3",
            f"train_path={folder}/annotations/instances_train.json",
            f"train_pre_path={folder}/train",
            f"val_path={folder}/annotations/instances_val.json",
            f"val_pre_path={folder}/val", f"classes_path={folder}/classes.txt"]


def test_trains_evaluates_and_writes_loadable_weights(shapes, tmp_path, capsys):
    out = str(tmp_path / "out")
    words = ["--config=1"] + data_words(shapes) + TINY + [
        "train_cfg.max_iters=2", "train_cfg.batch_size=2", "train_cfg.log_iter=1",
        "train_cfg.save_iter=1", "train_cfg.keep_checkpoints=1", "train_cfg.eval_iter=2",
        "train_cfg.num_workers=0", f"train_cfg.output_dir={out}"]
    assert train.main(words) == 0
    text = capsys.readouterr().out
    run_dir = os.path.join(out, "solov2_light_448_r50_fpn_8gpu_3x")
    assert "iter 2/2" in text and "eval at iter 2: mask AP" in text
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ["iter_0000002.pdparams"]
    for name in ("train.log", "classes.txt", "best_model.pdparams", "model_final.pdparams"):
        assert os.path.exists(os.path.join(run_dir, name))
    _, meta = load_pdparams(os.path.join(run_dir, "model_final.pdparams"))
    assert meta["preprocess"] == "mmcv" and meta["config"] == "solov2_light_448_r50_fpn_8gpu_3x"
    # train.log starts with what the run was: command, commit, Paddle, device, config.
    head = open(os.path.join(run_dir, "train.log"), encoding="utf-8").read().splitlines()
    assert head[0] == "command: python train.py " + shlex.join(words)
    assert head[1].startswith("git commit: ") and head[2].startswith("paddle: ")
    assert head[3] == "device: cpu, 1 process"
    assert head[4] == "config: solov2_light_448_r50_fpn_8gpu_3x"
    assert head.index("config: solov2_light_448_r50_fpn_8gpu_3x") < min(
        i for i, line in enumerate(head) if line.startswith("training set:"))
    records = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    assert curve(records, "train/loss")[0] == [1, 2] and curve(records, "eval/AP")[0] == [2]
    # Both model files describe themselves: config, every override, classes, style.
    names = open(os.path.join(shapes, "classes.txt")).read().split()
    for name in ("model_final.pdparams", "best_model.pdparams"):
        info = model_info(os.path.join(run_dir, name))
        assert info["config_number"] == 1 and info["overrides"] == words[1:]
        assert info["num_classes"] == 3 and info["class_names"] == names
        assert info["preprocess"] == "mmcv"
    # The final weights load the way demo.py / eval.py load weights, and predict.
    cfg = load_config(1, data_words(shapes) + TINY)
    predictor, style = load_dygraph(cfg, os.path.join(run_dir, "model_final.pdparams"))
    results = predict_stream(predictor, [os.path.join(shapes, "val", "val_00000.png")],
                             cfg.test_size, cfg.pixel_mean, cfg.pixel_std, style)
    assert results[0]["masks"].shape[1:] == (64, 80)

    # A second start in the same folder without --resume would mix two runs: refused.
    assert train.main(words) == 1
    assert "pass --resume" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["train_path=/nonexistent/a.json"], "annotation file not found"),
    (["num_classes=5"], "set num_classes=3"),
    (["train_cfg.model_path=/nonexistent/w.pdparams"], "initial weights not found"),
    (["no_such_field=1"], "unknown config field"),
])
def test_bad_input_is_one_clean_message(shapes, tmp_path, capsys, extra, message):
    words = (["--config=1"] + data_words(shapes) + TINY
             + [f"train_cfg.output_dir={tmp_path}"] + extra)
    assert train.main(words) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_vdl_without_visualdl_is_one_line_before_the_data_is_read(shapes, tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.setitem(sys.modules, "visualdl", None)  # as if not installed
    words = ["--config=1", "--vdl"] + data_words(shapes) + TINY + [
        f"train_cfg.output_dir={tmp_path}"]
    assert train.main(words) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --vdl needs VisualDL")
    assert "pip install visualdl" in lines[0] and "training set:" not in captured.out


def test_amp_without_gpu_is_refused(shapes, tmp_path, capsys):
    if __import__("paddle").device.is_compiled_with_cuda():
        pytest.skip("this Paddle build has CUDA")
    assert train.main(["--config=1", "--amp", f"train_cfg.output_dir={tmp_path}"]) == 1
    assert "--amp needs a CUDA build" in capsys.readouterr().err


def disk_full_at_write(monkeypatch, folder, n):
    """From the ``n``-th file written into ``folder`` on, os.fsync fails with ENOSPC."""
    real, calls = os.fsync, []

    def fsync(fd):
        if os.path.dirname(os.readlink(f"/proc/self/fd/{fd}")) == os.path.realpath(folder):
            calls.append(fd)
            if len(calls) >= n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names open files via /proc")
def test_disk_full_then_resume_with_other_shapes_then_resume(shapes, tmp_path, capsys,
                                                              monkeypatch):
    out = str(tmp_path / "out")
    folder = os.path.join(out, "solov2_light_448_r50_fpn_8gpu_3x", "checkpoints")
    words = ["--config=1"] + data_words(shapes) + TINY + [
        "train_cfg.max_iters=2", "train_cfg.batch_size=2", "train_cfg.save_iter=1",
        "train_cfg.keep_checkpoints=1", "train_cfg.eval_iter=0", "train_cfg.num_workers=0",
        f"train_cfg.output_dir={out}"]
    # The disk fills up while the second checkpoint is written: one line, exit 1.
    disk_full_at_write(monkeypatch, folder, 2)
    assert train.main(words) == 1
    monkeypatch.undo()
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: no space left on the device while writing ")
    assert "iter_0000002.pdparams" in err and "Traceback" not in err
    assert err.endswith(f"last complete checkpoint: {folder}/iter_0000001.pdparams")
    assert os.listdir(folder) == ["iter_0000001.pdparams"]  # kept, and no temporary

    # Resuming with a config of other shapes names them instead of failing an assertion.
    assert train.main(["--resume"] + words + ["mask_feat_channels=32"]) == 1
    err = capsys.readouterr().err
    assert "does not fit this model" in err and "Traceback" not in err
    assert "in the checkpoint, [32" in err  # a tensor with both of its shapes

    # With space again, --resume continues from the checkpoint the full disk left.
    assert train.main(["--resume"] + words) == 0
    assert "resumed from" in capsys.readouterr().out
    # keep_checkpoints=1, plus the checkpoint this run resumed from.
    assert [i for i, _ in list_checkpoints(folder)] == [1, 2]
    assert load_latest(folder)[2]["iteration"] == "2"


def test_unwritable_output_folder_is_refused_before_training(shapes, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    words = ["--config=1"] + data_words(shapes) + TINY + [
        f"train_cfg.output_dir={blocker}/out"]
    assert train.main(words) == 1
    captured = capsys.readouterr()
    assert "error: the training output folder" in captured.err
    assert "is not writable" in captured.err and "Traceback" not in captured.err
    assert "training set:" not in captured.out  # refused before the data was read


def children(pid):
    """Pids of the direct children of ``pid`` (Linux /proc)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            pass
    return found


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"  # a zombie init will reap
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc (Linux)")
def test_sigkill_of_train_ends_its_loader_workers(shapes, tmp_path):
    """Issue 12: SIGKILL of train.py left its DataLoader workers running (ten of them held
    3.7 GB). Kill only train.py; its two workers must be gone within a few seconds, their
    shared-memory batches deleted."""
    words = ["--config=4"] + data_words(shapes) + [
        "train_sizes=(64,)", "train_max_size=96", "train_cfg.max_iters=1000",
        "train_cfg.eval_iter=0", "train_cfg.num_workers=2",
        f"train_cfg.output_dir={tmp_path}"]
    proc = subprocess.Popen([sys.executable, os.path.abspath(train.__file__), *words],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        workers, deadline = [], time.monotonic() + 60
        while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = children(proc.pid)
        assert len(workers) == 2, proc.stderr.read().decode()[-2000:] if proc.poll() else ""
        time.sleep(1.0)  # let them start fetching batches
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        deadline = time.monotonic() + 5
        while not all(gone(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(gone(w) for w in workers), f"workers {workers} outlived train.py"
        if os.path.isdir("/dev/shm"):
            left = [n for n in os.listdir("/dev/shm")
                    if any(n.startswith(f"paddle_{w}_") for w in workers)]
            assert not left, left
    finally:
        try:  # whatever happened, nothing of this test stays: its own process group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
