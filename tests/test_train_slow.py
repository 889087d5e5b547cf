"""Long training runs: kill and resume, two processes, overfitting a real photo.

    python -m pytest -m slow tests/test_train_slow.py
"""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from config import load_config
from tests.fixtures.coco_data import voc_dataset
from tests.test_train import TINY, data_words
from tools.data.synthetic import make_dataset
from tools.training.optim import lr_at
from tools.training.trainer import loss_curve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = "solov2_light_448_r50_fpn_8gpu_3x"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("shapes"))
    make_dataset(folder, train=8, val=2, seed=0, size=(64, 80))
    return folder


def train_command(*words):
    return [sys.executable, os.path.join(ROOT, "train.py"), *words]


def test_kill_and_resume_continue_iterations_and_lr(shapes, tmp_path):
    out = str(tmp_path)
    words = ["--config=1"] + data_words(shapes) + TINY + [
        "train_cfg.max_iters=10", "train_cfg.batch_size=1", "train_cfg.log_iter=1",
        "train_cfg.save_iter=2", "train_cfg.eval_iter=0", "train_cfg.warmup_iters=8",
        "train_cfg.warmup_ratio=0.0", "train_cfg.num_workers=1", f"train_cfg.output_dir={out}"]
    folder = os.path.join(out, RUN, "checkpoints")
    proc = subprocess.Popen(train_command(*words), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 300
    while not os.path.exists(os.path.join(folder, "iter_0000004.pdparams")):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint 4 in time"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its loader worker, mid-iteration
    proc.wait()
    saved = max(int(n[5:12]) for n in os.listdir(folder) if n.startswith("iter_"))
    assert 4 <= saved < 10

    resumed = subprocess.run(train_command("--resume", *words), cwd=ROOT, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at iteration {saved}" in resumed.stdout
    lines = [line for line in resumed.stdout.splitlines() if line.startswith("iter ")]
    iters = [int(line.split()[1].split("/")[0]) for line in lines]
    assert iters == list(range(saved + 1, 11))
    # LR continues the schedule: iteration k (1-based) runs at lr_at(k - 1).
    cfg = load_config(1, words[1:])
    base = 0.01 * 1 / 16
    for line, k in zip(lines, iters):
        lr = float(re.search(r"lr (\S+)", line).group(1))
        assert lr == pytest.approx(lr_at(k - 1, base, cfg.train_cfg), rel=1e-4)
    logged, _ = loss_curve(os.path.join(out, RUN, "train.log"))
    assert logged[-1] == 10 and set(range(1, 11)) <= set(logged.tolist())


def test_two_processes_with_paddle_launch_on_cpu(shapes, tmp_path):
    out = str(tmp_path)
    words = ["--config=1"] + data_words(shapes) + TINY + [
        "train_cfg.max_iters=3", "train_cfg.batch_size=1", "train_cfg.log_iter=1",
        "train_cfg.save_iter=3", "train_cfg.eval_iter=3", "train_cfg.num_workers=1",
        f"train_cfg.output_dir={out}"]
    log_dir = str(tmp_path / "launch")
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
           "--log_dir", log_dir, "train.py"] + words
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rank0 = open(os.path.join(log_dir, "workerlog.0")).read()
    rank1 = open(os.path.join(log_dir, "workerlog.1")).read()
    assert "at total batch 2 (4 iterations per epoch per process)" in rank0
    assert "iter 3/3" in rank0 and "eval at iter 3" in rank0
    assert "weights identical on all 2 processes: yes" in rank0
    assert "iter 1/" not in rank1 and "checkpoint:" not in rank1  # only rank 0 logs/saves
    assert os.listdir(os.path.join(out, RUN, "checkpoints")) == ["iter_0000003.pdparams"]


def test_overfit_real_photo(tmp_path):
    """19 VOC instances in one photo, 300 CPU iterations from random weights at 160 px:
    the loss falls and mask AP on the same photo ends far above chance."""
    ann, images, _ = voc_dataset(str(tmp_path / "voc"), copies=1)
    out = str(tmp_path / "out")
    words = ["--config=1", "num_classes=4", f"train_path={ann}", f"train_pre_path={images}",
             f"val_path={ann}", f"val_pre_path={images}", "classes_path=none",
             "train_sizes=(160,)", "train_max_size=224", "test_size=(160,224)",
             "head_seg_feat_channels=64", "mask_feat_channels=64",
             # From random weights the backbone must learn its normalisation too.
             "backbone_norm=train", "backbone_frozen_stages=0",
             "train_cfg.batch_size=1", "train_cfg.scale_lr=false", "train_cfg.max_iters=300",
             "train_cfg.warmup_iters=30", "train_cfg.lr_milestones=(250,)",
             "train_cfg.log_iter=10", "train_cfg.save_iter=300", "train_cfg.eval_iter=300",
             "train_cfg.num_workers=1", f"train_cfg.output_dir={out}"]
    proc = subprocess.run(train_command(*words), cwd=ROOT, capture_output=True, text=True,
                          timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    iters, losses = loss_curve(os.path.join(out, RUN, "train.log"))
    assert losses[-3:].mean() < 0.5 * losses[:3].mean()
    ap = float(re.search(r"eval at iter 300: mask AP (\S+)", proc.stdout).group(1))
    # Chance for 19 instances of 4 classes is ~0; the photo is learnt, not memorised
    # perfectly, in 300 steps.
    assert ap > 0.3, proc.stdout[-2000:]
    np.testing.assert_array_equal(iters[-1], 300)
