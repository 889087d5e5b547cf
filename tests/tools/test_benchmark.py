"""tools/benchmark.py end to end: the quick table, and clear errors for bad input."""

import subprocess
import sys

import pytest

from tests.fixtures.exported import ROOT

pytest.importorskip("onnxruntime")


def test_benchmark_quick_mode_prints_the_table(exported2):
    cfg, weights, model_dir, _ = exported2
    done = subprocess.run([sys.executable, "tools/benchmark.py", "--config=2", "--quick",
                           "--engines", "dygraph,onnx", "--weights", weights,
                           "--model-dir", model_dir, "--sweep", "10"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for header in ("images/s (min-max)", "read ms", "preprocess ms", "forward ms",
                   "postprocess ms", "draw ms", "post / forward", "images/s x forward"):
        assert header in out
    rows = [line for line in out.splitlines() if line.startswith(("dygraph ", "onnx "))]
    assert len(rows) == 4  # the speed table and the post-processing sweep
    assert "Matrix NMS, 500 masks of 32x48" in out
    assert "fastest exported engine: onnx" in out
    # The bound: matmul rate, the convolutions at the quick run's one input (the square
    # astronaut.png resized to 128 x 128).
    assert "GEMM bound: best fp32 matmul" in out
    assert "padded inputs 128x128;" in out
    assert "fastest network pass: " in out and "x the bound" in out


@pytest.mark.parametrize("words, message", [
    (["--config=4", "--fixture-weights"], "no fixture weights for config 4"),
    (["--config=2", "nosuch=1"], "unknown config field 'nosuch'"),
    (["--config=2", "--fixture-weights", "num_classes=3"], "lists 80 classes but num_classes=3"),
])
def test_benchmark_explains_bad_input(tmp_path, words, message):
    done = subprocess.run([sys.executable, "tools/benchmark.py", "--quick", "--engines",
                           "dygraph", "--cache", str(tmp_path), *words],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert message in done.stderr
