"""Every script fails the same way on bad input: one line ``error: ...`` on stderr, exit 1."""

import glob
import importlib
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
        "import tools.inference.api as api\n"
        "def broken(cfg):\n"
        "    raise KeyError('a bug in the class list reader')\n"
        "api.load_class_names = broken  # what demo's Predictor calls\n"
        "sys.exit(demo.main(['--config=2']))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "KeyError: 'a bug in the class list reader'" in done.stderr
    assert "error: " not in done.stderr


# Config values and options that used to end in a traceback, a ZeroDivisionError later in
# the run, Python's parser text (``<ast.Name object at 0x...>``) or were taken silently.
# Each is now refused where the config is resolved (one ``error:`` line, status 1) or by
# the option's argparse type (argparse's usage and one ``error:`` line, status 2).
CONFIG_MISTAKES = [
    ("demo.py", "test_cfg.score_thr=abc", "cannot set test_cfg.score_thr='abc': must be a "
     "number >= 0"),
    ("eval.py", "test_cfg.score_thr=[1]", "cannot set test_cfg.score_thr='[1]': must be a "
     "number >= 0"),
    ("test_dev.py", "test_cfg.score_thr=None", "cannot set test_cfg.score_thr='None': must "
     "be a number >= 0"),
    ("train.py", "num_classes={}", "cannot set num_classes='{}': must be an integer >= 1"),
    ("tools/export_model.py", "test_size=(1,2,3)", "cannot set test_size='(1,2,3)': must be "
     "a tuple of 2 integers >= 32"),
    ("train.py", "train_cfg.save_iter=0", "cannot set train_cfg.save_iter='0': must be >= 1"),
    ("train.py", "train_cfg.log_iter=0", "cannot set train_cfg.log_iter='0': must be >= 1"),
    ("train.py", "train_cfg.batch_size=0", "cannot set train_cfg.batch_size='0': must be >= 1"),
    ("tools/benchmark_pipeline.py", "train_cfg.batch_size=-1",
     "cannot set train_cfg.batch_size='-1': must be >= 1"),
    ("eval.py", "eval_cfg.batch_size=-1", "cannot set eval_cfg.batch_size='-1': must be >= 1"),
    ("demo.py", "test_cfg.batch_size=0", "cannot set test_cfg.batch_size='0': must be >= 1"),
    ("train.py", "train_cfg.num_workers=-1",
     "cannot set train_cfg.num_workers='-1': must be >= 0"),
    ("tools/benchmark.py", "test_cfg.draw_thresh=nan",
     "cannot set test_cfg.draw_thresh='nan': must be a number in [0, 1]"),
]
ARGUMENT_MISTAKES = [
    ("demo.py", ["--workers", "0"], "argument --workers: must be >= 1, got 0"),
    ("eval.py", ["--workers", "0"], "argument --workers: must be >= 1, got 0"),
    ("test_dev.py", ["--workers", "0"], "argument --workers: must be >= 1, got 0"),
    ("demo.py", ["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    ("demo.py", ["--batch-size", "-1"], "argument --batch-size: must be >= 1, got -1"),
    ("demo.py", ["--thresh", "2"], "argument --thresh: must be a number in [0, 1], got 2"),
    ("demo.py", ["--thresh", "nan"], "argument --thresh: must be a number in [0, 1], got nan"),
    ("eval.py", ["--limit", "0"], "argument --limit: must be >= 1, got 0"),
    ("train.py", ["--seed", "-1"], "argument --seed: must be >= 0, got -1"),
    ("tools/benchmark.py", ["--repeats", "0"], "argument --repeats: must be >= 1, got 0"),
    ("tools/benchmark.py", ["--threads", "0"], "argument --threads: must be >= 1, got 0"),
    ("tools/benchmark.py", ["--sweep", "10,x"], "argument --sweep: expected an integer, got 'x'"),
    ("tools/benchmark_pipeline.py", ["--batches", "0"],
     "argument --batches: must be >= 1, got 0"),
    ("tools/benchmark_pipeline.py", ["--workers", "-1"],
     "argument --workers: must be >= 0, got -1"),
]


def run_main(script, words, capsys):
    """(exit status, stderr) of ``script``'s main(words) in this process."""
    module = importlib.import_module(script[:-3].replace("/", "."))
    try:
        status = module.main(words)
    except SystemExit as exit:  # argparse's usage error
        status = exit.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize("script, word, message", CONFIG_MISTAKES,
                         ids=[f"{s}-{w}" for s, w, _ in CONFIG_MISTAKES])
def test_a_bad_config_value_is_one_line_naming_field_value_and_range(script, word, message,
                                                                     capsys):
    status, err = run_main(script, ["--config=2", word], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 1 and len(lines) == 1, err
    assert lines[0].startswith(f"error: {message}"), lines[0]


@pytest.mark.parametrize("script, words, message", ARGUMENT_MISTAKES,
                         ids=[f"{s}-{' '.join(w)}" for s, w, _ in ARGUMENT_MISTAKES])
def test_a_bad_option_is_argparse_usage_error(script, words, message, capsys):
    status, err = run_main(script, ["--config=2", *words], capsys)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert status == 2 and "Traceback" not in err and err.startswith("usage: ")
    # In this process argparse names the program after sys.argv[0] (pytest's).
    assert len(errors) == 1 and errors[0].endswith(f": error: {message}"), err


@pytest.mark.parametrize("words, status, last_line", [
    (["train_cfg.log_iter=0"], 1, "error: cannot set train_cfg.log_iter='0': must be >= 1"),
    (["--thresh", "nan"], 2, "demo.py: error: argument --thresh: must be a number in [0, 1], "
                             "got nan"),
])
def test_the_scripts_exit_with_that_status_and_no_traceback(words, status, last_line):
    script = "train.py" if "train_cfg" in words[0] else "demo.py"
    done = subprocess.run([sys.executable, os.path.join(ROOT, script), *words], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == status and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == last_line
