"""tools/benchmark_train.py end to end: the quick split, and clear errors for bad input."""

import re
import subprocess
import sys

import pytest

from tests.fixtures.exported import ROOT

SECONDS = r"\d+\.\d{3} \(\d+\.\d{3}-\d+\.\d{3}\)"  # median (min-max)


def run(*words):
    return subprocess.run([sys.executable, "tools/benchmark_train.py", *words], cwd=ROOT,
                          capture_output=True, text=True)


def test_quick_run_prints_every_stage_of_the_split(tmp_path):
    pytest.importorskip("imgviz")
    done = run("--config=2", "--quick", "--fixture-weights", "--cache", str(tmp_path))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "batch of 2 images 120x160" in out and "1 timed passes after a warm-up" in out
    assert re.search(r"load average \d+\.\d\d before, \d+\.\d\d after", out)
    rows = {line.split("  ")[0]: line for line in out.splitlines()
            if re.match(r"^[a-z][a-z +]*?\s{2,}\d", line)}
    # Config 2 keeps an EMA of the weights, so its update is a stage too.
    stages = ["data", "targets", "forward", "loss", "backward", "optimizer", "ema", "step",
              "targets + step", "total"]
    assert list(rows) == stages
    seconds = {}
    for stage, line in rows.items():
        match = re.search(SECONDS, line)
        assert match, line
        seconds[stage] = float(match.group(0).split()[0])
    step = sum(seconds[s] for s in ("forward", "loss", "backward", "optimizer"))
    assert seconds["step"] == pytest.approx(step, abs=0.003)
    assert seconds["total"] == pytest.approx(step + seconds["data"] + seconds["targets"]
                                             + seconds["ema"], abs=0.006)
    assert seconds["backward"] > 0 and seconds["forward"] > 0
    assert re.search(r"ours losses on the first timed pass: loss \d+\.\d{4}", out)


@pytest.mark.parametrize("words, message", [
    (["--as-shipped"], "--as-shipped times PaddleDetection's step: add --compare-ppdet"),
    (["--config=4", "--fixture-weights"], "no fixture weights for config 4"),
    (["--images", "no/such/file.json", "--fixture-weights"], "no/such/file.json"),
    (["nosuch=1"], "unknown config field 'nosuch'"),
])
def test_bad_input_is_one_line(tmp_path, words, message):
    done = run("--quick", "--cache", str(tmp_path), *words)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert message in done.stderr


@pytest.mark.parametrize("size", ["480", "480,x", "16,640"])
def test_size_must_be_two_sides(size):
    done = run("--size", size)
    assert done.returncode == 2 and "--size" in done.stderr
