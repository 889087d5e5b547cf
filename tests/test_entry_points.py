"""Every script fails the same way on bad input: one line ``error: ...`` on stderr, exit 1."""

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONVERTERS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "1_*2paddle.py")))

BAD_INPUTS = [
    ("demo.py", ["--config=9"], "--config=9 does not exist"),
    ("demo.py", ["--config=2", "--input", "/nonexistent/*.jpg"], "no images match"),
    ("train.py", ["--config=1", "no_such_field=1"], "unknown config field 'no_such_field'"),
    ("eval.py", ["--config=2", "val_path=/nonexistent/a.json"], "annotation file not found"),
    ("test_dev.py", ["--config=2", "test_path=/nonexistent/a.json"],
     "annotation file not found"),
    ("tools/export_model.py", ["--config=2", "test_cfg.score_thr=high"],
     "cannot set test_cfg.score_thr"),
    ("tools/benchmark.py", ["--config=2", "--engines", "tensorrt"], "unknown engines"),
    ("tools/benchmark_pipeline.py", ["--config=2", "train_path=/nonexistent/a.json"],
     "annotation file not found"),
    ("tools/make_synthetic_coco.py", ["--size", "8", "8"], "--size must be at least"),
] + [(script, ["/nonexistent/weights.file"], "no such file") for script in CONVERTERS]


def test_every_converter_is_covered():
    assert len(CONVERTERS) == 6


@pytest.mark.parametrize("script, words, message", BAD_INPUTS,
                         ids=[f"{s}-{m}" for s, _, m in BAD_INPUTS])
def test_bad_input_gives_one_line_and_exit_status_1(script, words, message):
    done = subprocess.run([sys.executable, os.path.join(ROOT, script), *words], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]


def test_a_bug_keeps_its_traceback(tmp_path):
    """An exception that is not a UserError is a bug: Python's own traceback, not a line."""
    script = (
        "import sys\n"
        f"sys.path.insert(0, {ROOT!r})\n"
        "import demo\n"
        "def broken(cfg):\n"
        "    raise KeyError('a bug in the class list reader')\n"
        "demo.load_class_names = broken\n"
        "sys.exit(demo.main(['--config=2']))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "KeyError: 'a bug in the class list reader'" in done.stderr
    assert "error: " not in done.stderr
