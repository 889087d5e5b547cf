"""Hostile weight files (tests/fixtures/hostile.py) against the reader and every loader entry
point, each in a subprocess so that a crash shows as a signal, not as a dead pytest."""

import json
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.fixtures import hostile
from tools.data.synthetic import make_dataset
from tools.weights import standin as fx

ROOT = hostile.ROOT
# The address space of the reading process is capped: an allocation of a declared size
# instead of the bytes present would fail (and does, in the control below).
LIMITED = ("import resource, sys\n"
           "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n")
NBYTES = 4 * int(np.prod(hostile.SHAPE))
REASONS = {  # what each refusal must say, besides naming the file
    "forged_object_dtype": "'V8' is not a plain numeric type",
    "object_array": "'O8' is not a plain numeric type",
    "size_mismatch": f"needs {NBYTES} bytes, the file gives {NBYTES - 8}",
    "uninitialised": "uninitialised memory",
    "huge_shape": f"needs {4 << 40} bytes, the file gives 16",
    "huge_frombuffer": f"needs {4 << 40} bytes, the file gives 16",
    "deep_nesting": "nested more than 100 levels",
    "os_system": "posix.system",
    "truncated": "truncated",
    "nan_weights": f"1 tensor(s) hold NaN or infinite values ({hostile.TARGET})",
}
# The default run takes one file refused by the reader and one by check_finite through
# every entry point (about 40 s on an idle machine); the slow test takes the rest.
QUICK = ("forged_object_dtype", "nan_weights")
ENTRIES = ("demo", "eval", "converter", "export", "train", "resume")
QUICK_PLAN = {entry: QUICK for entry in ENTRIES}


def python(code, *args, timeout=600):
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return hostile.write_corpus(str(tmp_path_factory.mktemp("hostile")))


def outcomes(stdout):
    """{path: ('loaded', None) | ('refused', message)} from hostile.load_each's lines."""
    found, begun = {}, None
    for line in stdout.splitlines():
        word, path, *rest = line.split(" ", 2)
        if word == "begin":
            begun = path
        else:
            assert path == begun, line
            found[path] = (word, json.loads(rest[0]) if rest else None)
    return found, begun


def test_the_forged_dtype_crashes_an_unpickler_that_only_restricts_names(corpus):
    """The corpus is real: the allow-list approach dies with SIGSEGV on the forged file."""
    done = python("import sys\nfrom tests.fixtures.hostile import NamesOnlyUnpickler, TARGET\n"
                  "obj = NamesOnlyUnpickler(open(sys.argv[1], 'rb')).load()\n"
                  "print(repr(obj[TARGET])[:40])\n", corpus["forged_object_dtype"])
    assert done.returncode in (-signal.SIGSEGV, -signal.SIGBUS), (done.returncode, done.stderr)


def test_every_hostile_file_is_refused_in_one_line_within_2_gb(corpus):
    done = python(LIMITED + "import numpy as np\n"
                  "try:\n    np.ones(3 << 30, np.uint8)\nexcept MemoryError:\n"
                  "    print('control: 3 GB cannot be allocated', file=sys.stderr)\n"
                  "from tests.fixtures.hostile import load_each\nload_each(sys.argv[1:])\n",
                  *corpus.values())
    assert done.returncode == 0, done.stderr
    assert "control: 3 GB cannot be allocated" in done.stderr
    found, _ = outcomes(done.stdout)
    for name, path in corpus.items():
        if name == "nan_weights":  # a valid file; check_finite refuses it where it is used
            assert found[path] == ("loaded", None)
            continue
        word, message = found[path]
        assert word == "refused", name
        assert message.startswith(f"{path}: ") and "\n" not in message, message
        assert REASONS[name] in message, message
    assert not os.path.exists(os.path.join(ROOT, "PWNED"))


def test_hundreds_of_damaged_stand_ins_never_crash_the_reader(tmp_path):
    state = {**hostile.GOOD, "backbone.stem.0.conv.weight": fx.fixture_array("c", (8, 3, 3, 3)),
             "n": np.arange(6, dtype=np.int64)}
    writers = {"fluid": lambda p: fx.save_fluid_pickle(p, state),
               "py2": lambda p: fx.save_fluid_pickle(p, state, py2=True),
               "paddle2": lambda p: fx.save_paddle2_pdparams(p, state),
               "ours": lambda p: pickle_dump(p, state, protocol=5)}
    paths = []
    for seed, (name, write) in enumerate(writers.items()):
        base = str(tmp_path / f"{name}.pdparams")
        write(base)
        with open(base, "rb") as f:
            data = f.read()
        for k, damaged in enumerate(hostile.mutations(data, 100, seed)):
            paths.append(str(tmp_path / f"{name}_{k:03d}.pdparams"))
            with open(paths[-1], "wb") as f:
                f.write(damaged)
    done = python(LIMITED + "from tests.fixtures.hostile import load_each\n"
                  "load_each(sys.argv[1:])\n", *paths)
    found, last = outcomes(done.stdout)
    assert done.returncode == 0, f"status {done.returncode} while reading {last}: {done.stderr}"
    assert sorted(found) == sorted(paths)
    refused = [message for word, message in found.values() if word == "refused"]
    for path, (word, message) in found.items():
        assert word == "loaded" or (message.startswith(path) and "\n" not in message), message
    assert 0 < len(refused) < len(paths)  # both outcomes are exercised


def pickle_dump(path, state, protocol):
    import pickle

    with open(path, "wb") as f:
        pickle.dump(dict(state), f, protocol=protocol)


# ------------------------------------------------------------------- entry points
@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("shapes"))
    make_dataset(folder, train=2, val=1, seed=0, size=(64, 80))
    return folder


def entries(shapes, out):
    """{entry: (script, argv template)} for every script that loads weights."""
    data = [f"classes_path={shapes}/classes.txt",
            f"train_path={shapes}/annotations/instances_train.json",
            f"train_pre_path={shapes}/train",
            f"val_path={shapes}/annotations/instances_val.json", f"val_pre_path={shapes}/val"]
    tiny = ["train_sizes=(64,)", "train_max_size=96", "test_size=(64,96)",
            "train_cfg.num_workers=0"]
    return {
        "demo": ("demo.py", ["--config=4", data[0], "--input", f"{shapes}/val", "--output",
                             f"{out}/{{tag}}/demo", "test_cfg.model_path={file}"]),
        "eval": ("eval.py", ["--config=4", *data, "eval_cfg.model_path={file}", "--output",
                             f"{out}/{{tag}}/eval.json"]),
        "converter": ("1_paddle_solov2_r50_enhance_coco2paddle.py",
                      ["{file}", "--output", f"{out}/{{tag}}/converted.pdparams"]),
        "export": ("tools/export_model.py", ["--config=4", "--no-onnx", "--weights", "{file}",
                                             "--output", f"{out}/{{tag}}/export"]),
        "train": ("train.py", ["--config=4", *data, *tiny, "train_cfg.model_path={file}",
                               f"train_cfg.output_dir={out}/{{tag}}/train"]),
        "resume": ("train.py", ["--config=4", "--resume", *data, *tiny,
                                f"train_cfg.output_dir={out}/{{tag}}/resume",
                                "train_cfg.max_iters=1", "train_cfg.eval_iter=0"]),
    }


def run_entries(corpus, plan, shapes, out):
    """{(entry, file name): (status, stdout lines, stderr lines, checkpoint path)} for the
    files ``plan`` gives each entry."""
    checkpoints = {}
    for name in plan["resume"]:  # --resume finds the hostile file as the newest checkpoint
        folder = os.path.join(out, name, "resume", "solov2_light_shapes_tour", "checkpoints")
        os.makedirs(folder)
        checkpoints[name] = shutil.copy(corpus[name], os.path.join(folder, "iter_0000100.pdparams"))

    def drive(item):
        entry, (script, template) = item
        done = python("import sys, json\nfrom tests.fixtures.hostile import drive\n"
                      "drive(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:])\n",
                      script, json.dumps(template), *[corpus[n] for n in plan[entry]],
                      timeout=1800)
        assert done.returncode == 0, done.stderr
        return entry, [json.loads(line) for line in done.stdout.splitlines()]

    results = {}
    with ThreadPoolExecutor(2) as pool:  # the machine's two cores
        for entry, lines in pool.map(drive, entries(shapes, out).items()):
            for line in lines:
                name = os.path.splitext(os.path.basename(line["file"]))[0]
                stdout, stderr = ([s for s in line[k].splitlines() if s.strip()]
                                  for k in ("stdout", "stderr"))
                results[entry, name] = (line["status"], stdout, stderr, checkpoints.get(name))
    return results


def check_entry_outcomes(results, corpus):
    for (entry, name), (status, stdout, stderr, checkpoint) in sorted(results.items()):
        where = f"{entry} on {name}: status {status}, stderr {stderr}"
        assert status >= 0 and not any("Traceback" in s for s in stderr), where
        if entry == "resume":
            # tools/training/checkpoints.py sets a checkpoint that does not load aside and
            # starts the run afresh, saying so in one warning line (train.py logs to stdout).
            warned = [s for s in stdout + stderr
                      if s.startswith(f"warning: {checkpoint} does not load")]
            assert status == 0 and len(warned) == 1 and REASONS[name] in warned[0], where
            assert os.path.exists(checkpoint + ".damaged"), where
            continue
        errors = [s for s in stderr if s.startswith("error: ")]
        assert status == 1 and len(errors) == 1 and errors == stderr[-1:], where
        assert corpus[name] in errors[0] and REASONS[name] in errors[0], where


def test_entry_points_refuse_hostile_files_in_one_line(corpus, shapes, tmp_path):
    results = run_entries(corpus, QUICK_PLAN, shapes, str(tmp_path))
    assert sorted(results) == sorted((e, n) for e, names in QUICK_PLAN.items() for n in names)
    check_entry_outcomes(results, corpus)


@pytest.mark.slow
def test_entry_points_refuse_the_whole_corpus(corpus, shapes, tmp_path):
    plan = {entry: [n for n in corpus if n not in QUICK_PLAN[entry]] for entry in ENTRIES}
    results = run_entries(corpus, plan, shapes, str(tmp_path))
    assert len(results) == sum(len(names) for names in plan.values())
    check_entry_outcomes(results, corpus)
