"""tools/plot_metrics.py: a run folder's metrics.jsonl to a PNG; one line for bad input."""

import os
import subprocess
import sys

import pytest

from tools.training.metrics import MetricsFile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def plot(*words):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "plot_metrics.py"),
                           *words], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_plots_a_run_folder_to_its_default_png_and_to_output(tmp_path):
    run = tmp_path / "solov2_light_shapes_tour"
    run.mkdir()
    out = MetricsFile(str(run / "metrics.jsonl"))
    out.start(0)
    for i in range(10, 101, 10):
        out.add(i, {"train/loss": 3.0 / i, "train/loss_ins": 2.0 / i, "train/loss_cate": 1 / i})
    out.add(100, {"eval/AP": 0.0875, "eval/AP50": 0.17, "eval/AP75": 0.08})
    out.close()
    done = plot(str(run))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(
        "metrics.png: loss over 10 log points up to iteration 100, last mask AP 0.0875 at "
        "iteration 100")
    assert open(run / "metrics.png", "rb").read(4) == b"\x89PNG"
    done = plot(str(run), "--output", str(tmp_path / "elsewhere.png"))
    assert done.returncode == 0 and os.path.getsize(tmp_path / "elsewhere.png") > 10_000


@pytest.mark.parametrize("make, message", [
    (lambda tmp: str(tmp / "nothing"), "is not a folder"),
    (lambda tmp: str(tmp), "metrics.jsonl does not exist"),
])
def test_bad_folder_is_one_line(tmp_path, make, message):
    done = plot(make(tmp_path))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
