import errno
import math
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import paddle
import pytest

from tools.errors import UserError
from tools.files import OutputError
from tools.training.checkpoints import (
    PATTERN,
    checkpoint_dir,
    list_checkpoints,
    load_latest,
    remove_interrupted_writes,
    restore,
    save_checkpoint,
    start_iteration,
)
from tools.training.optim import ModelEMA
from tools.weights.files import WeightFileError, load_pdparams

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


class Tiny(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.a = paddle.nn.Linear(3, 4)
        self.b = paddle.nn.Linear(4, 1)

    def forward(self, x):
        return self.b(paddle.nn.functional.relu(self.a(x)))


def make(seed=0):
    paddle.seed(seed)
    model = Tiny()
    optimizer = paddle.optimizer.Momentum(0.1, momentum=0.9, parameters=model.parameters(),
                                          weight_decay=1e-4)
    return model, optimizer, ModelEMA(model, 0.9)


def step(model, optimizer, ema, i):
    x = paddle.to_tensor(np.random.RandomState(i).randn(5, 3).astype("float32"))
    (model(x) ** 2).mean().backward()
    optimizer.step()
    optimizer.clear_grad()
    ema.update(model)


def test_resume_continues_exactly(tmp_path):
    model, optimizer, ema = make()
    for i in range(3):
        step(model, optimizer, ema, i)
    reference = {k: v.numpy() for k, v in model.state_dict().items()}

    model, optimizer, ema = make()
    step(model, optimizer, ema, 0)
    save_checkpoint(str(tmp_path), 1, model, optimizer, ema)
    # A later "process": other layers created first, so Paddle's internal parameter names
    # (linear_7.w_0, ...) differ from those in the checkpoint.
    Tiny(), Tiny()
    model2, optimizer2, ema2 = make(seed=5)
    iteration, arrays, meta, _ = load_latest(str(tmp_path))
    assert restore(arrays, meta, model2, optimizer2, ema2) == iteration == 1
    assert ema2.step == 1
    for i in (1, 2):
        step(model2, optimizer2, ema2, i)
    for k, v in model2.state_dict().items():
        np.testing.assert_allclose(v.numpy(), reference[k], rtol=1e-6)


def test_prune_and_ignore_partial_files(tmp_path):
    model, optimizer, ema = make()
    step(model, optimizer, ema, 0)
    for it in (10, 20, 30, 40):
        save_checkpoint(str(tmp_path), it, model, optimizer, ema, keep=2)
    assert [i for i, _ in list_checkpoints(str(tmp_path))] == [30, 40]
    # A temporary file left by a killed writer is never listed; a damaged newest
    # checkpoint is skipped with a warning in favour of the previous one.
    (tmp_path / ".tmp-abc.pdparams").write_bytes(b"\x80\x04partial")
    (tmp_path / "iter_0000050.pdparams").write_bytes(b"\x80\x04trunc")
    messages = []
    iteration, _, _, path = load_latest(str(tmp_path), log=messages.append)
    assert iteration == 40 and path.endswith("iter_0000040.pdparams")
    assert "iter_0000050" in messages[0]


def test_checkpoint_of_another_model_is_refused(tmp_path):
    model, optimizer, ema = make()
    save_checkpoint(str(tmp_path), 1, model, optimizer, ema)
    other = paddle.nn.Linear(3, 4)
    opt = paddle.optimizer.Momentum(0.1, parameters=other.parameters())
    _, arrays, meta, _ = load_latest(str(tmp_path))
    with pytest.raises(WeightFileError, match="does not fit this model"):
        restore(arrays, meta, other, opt)


def test_kill_during_write_leaves_previous_checkpoint(tmp_path):
    """A real SIGKILL in the middle of writing checkpoint 2: checkpoint 1 stays the newest
    readable one and the partial file is never picked up."""
    script = textwrap.dedent(f"""
        import os, pickle, signal, sys
        sys.path.insert(0, {ROOT!r})
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        import tools.weights.files as io
        from tools.training.checkpoints import save_checkpoint
        from test_checkpoints import make, step
        model, optimizer, ema = make()
        step(model, optimizer, ema, 0)
        save_checkpoint({str(tmp_path)!r}, 1, model, optimizer, ema)

        def dump_then_die(obj, f, protocol=None):
            data = pickle.dumps(obj, protocol=protocol)
            f.write(data[:len(data) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        io.pickle.dump = dump_then_die
        save_checkpoint({str(tmp_path)!r}, 2, model, optimizer, ema)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    leftovers = os.listdir(tmp_path)
    assert any(name.startswith(".tmp-") for name in leftovers)  # the half-written file
    assert [i for i, _ in list_checkpoints(str(tmp_path))] == [1]
    model, optimizer, ema = make(seed=3)
    iteration, arrays, meta, _ = load_latest(str(tmp_path))
    assert restore(arrays, meta, model, optimizer, ema) == 1


def test_start_iteration_refuses_mixing_runs_and_foreign_checkpoints(tmp_path):
    model, optimizer, ema = make()
    step(model, optimizer, ema, 0)
    save_checkpoint(str(tmp_path / "checkpoints"), 1, model, optimizer, ema)
    with pytest.raises(UserError, match="pass --resume"):
        start_iteration(str(tmp_path), False, model, optimizer, ema, log=lambda m: None)
    assert start_iteration(str(tmp_path), True, model, optimizer, ema,
                           log=lambda m: None) == (1, -math.inf)
    # A model of another shape cannot take this run's state: one clear error, no KeyError.
    other = paddle.nn.Linear(3, 2)
    other_opt = paddle.optimizer.Momentum(0.1, parameters=other.parameters())
    with pytest.raises(WeightFileError, match="iter_0000001.pdparams"):
        start_iteration(str(tmp_path), True, other, other_opt, None, log=lambda m: None)


# ------------------------------------------------------------------ kills and damage
class Wide(paddle.nn.Layer):
    """Tiny's layer names with other shapes: a checkpoint of one never fits the other."""

    def __init__(self, width=5):
        super().__init__()
        self.a = paddle.nn.Linear(3, width)
        self.b = paddle.nn.Linear(width, 1)

    def forward(self, x):
        return self.b(paddle.nn.functional.relu(self.a(x)))


def make_wide(width, seed=0):
    paddle.seed(seed)
    model = Wide(width)
    optimizer = paddle.optimizer.Momentum(0.1, momentum=0.9, parameters=model.parameters())
    return model, optimizer, ModelEMA(model, 0.9)


def _write_until_killed(output_dir, ready):
    """A training run reduced to its checkpoints: resume, then step and save for ever.
    Width 512 makes a 3 MB checkpoint, so most of the time goes to writing it."""
    model, optimizer, ema = make_wide(512)
    iteration, _ = start_iteration(output_dir, True, model, optimizer, ema, log=lambda m: None)
    ready.send(iteration)
    while True:
        step(model, optimizer, ema, iteration)
        iteration += 1
        save_checkpoint(checkpoint_dir(output_dir), iteration, model, optimizer, ema, keep=2)


def test_sigkill_at_random_moments_leaves_complete_checkpoints_that_resume(tmp_path):
    """Ten real SIGKILLs of a process writing checkpoints in a loop, after seeded random
    delays: each time the folder holds only complete checkpoints that load (and maybe a
    temporary, which the next start removes), and the newest one resumes."""
    out, folder = str(tmp_path), checkpoint_dir(str(tmp_path))
    rng = random.Random(12)
    fork = multiprocessing.get_context("fork")  # the test's Paddle, without a new import
    mid_write = 0
    for _ in range(10):
        receive, send = fork.Pipe(duplex=False)
        writer = fork.Process(target=_write_until_killed, args=(out, send), daemon=True)
        writer.start()
        assert receive.poll(60), "the writer did not start"
        started = receive.recv()
        time.sleep(rng.uniform(0.05, 0.5))
        os.kill(writer.pid, signal.SIGKILL)
        writer.join(10)
        assert writer.exitcode == -signal.SIGKILL
        names = os.listdir(folder)
        temporaries = [n for n in names if n.startswith(".tmp-")]
        assert sorted(temporaries + [n for n in names if PATTERN.match(n)]) == sorted(names)
        mid_write += bool(temporaries)
        found = list_checkpoints(folder)
        assert found and found[-1][0] >= started  # a writer never loses the one it resumed
        for _, path in found:
            arrays, meta = load_pdparams(path)   # complete: each one loads
            assert any(k.startswith("optim/") for k in arrays) and "iteration" in meta
        model, optimizer, ema = make_wide(512, seed=1)
        assert start_iteration(out, True, model, optimizer, ema,
                               log=lambda m: None)[0] == found[-1][0]
        newest, _ = load_pdparams(found[-1][1])
        np.testing.assert_array_equal(model.b.weight.numpy(), newest["model/b.weight"])
        # The next start clears what the kill left half-written, and says so.
        lines = []
        remove_interrupted_writes(out, lines.append)
        assert not [n for n in os.listdir(folder) if n.startswith(".tmp-")]
        assert len([m for m in lines if "left by an interrupted write" in m]) == len(temporaries)
    assert mid_write >= 1, "no kill landed during a write"


def test_removing_temporaries_of_interrupted_writes(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / ".tmp-abc.pdparams").write_bytes(b"x" * 1000)
    (tmp_path / ".tmp-def.pdparams").write_bytes(b"y" * 500)
    (tmp_path / "model_final.pdparams").write_bytes(b"z")
    lines = []
    assert remove_interrupted_writes(str(tmp_path), lines.append) == 1500
    assert sorted(os.listdir(tmp_path)) == ["checkpoints", "model_final.pdparams"]
    assert os.listdir(folder) == []
    assert any(".tmp-abc.pdparams" in m for m in lines)
    assert any(".tmp-def.pdparams" in m for m in lines)
    assert "removed 2 temporary file(s)" in lines[-1]
    lines.clear()
    assert remove_interrupted_writes(str(tmp_path), lines.append) == 0 and lines == []


def test_damaged_newest_is_set_aside_and_the_resumed_checkpoint_is_never_pruned(tmp_path):
    """Issue 12: a resume fell back from a truncated iter 200 to iter 100, then pruning
    counted the truncated file, deleted 100 and kept the broken one."""
    out, folder = str(tmp_path), checkpoint_dir(str(tmp_path))
    model, optimizer, ema = make()
    step(model, optimizer, ema, 0)
    save_checkpoint(folder, 100, model, optimizer, ema, keep=2)
    save_checkpoint(folder, 200, model, optimizer, ema, keep=2)
    damaged = os.path.join(folder, "iter_0000200.pdparams")
    with open(damaged, "r+b") as f:
        f.truncate(os.path.getsize(damaged) // 2)

    model, optimizer, ema = make(seed=4)
    messages = []
    assert start_iteration(out, True, model, optimizer, ema, log=messages.append)[0] == 100
    assert os.path.exists(damaged + ".damaged") and not os.path.exists(damaged)
    assert any("iter_0000200.pdparams does not load" in m and ".damaged" in m
               for m in messages)
    assert [i for i, _ in list_checkpoints(folder)] == [100]
    # The resumed run saves at 150 (another save_iter), 200, 250: with keep=2 the one it
    # resumed from stays as well, and the damaged file is neither counted nor removed.
    resumed = os.path.join(folder, "iter_0000100.pdparams")
    for it in (150, 200, 250):
        step(model, optimizer, ema, it)
        save_checkpoint(folder, it, model, optimizer, ema, keep=2, protect=[resumed])
    assert [i for i, _ in list_checkpoints(folder)] == [100, 200, 250]
    assert os.path.exists(damaged + ".damaged")
    # keep=1 still never deletes the file just written.
    save_checkpoint(folder, 300, model, optimizer, ema, keep=1, protect=[resumed])
    assert [i for i, _ in list_checkpoints(folder)] == [100, 300]


def test_other_shapes_are_named_before_anything_is_loaded(tmp_path):
    """Resuming with a config of other shapes: one WeightFileError naming the tensors and
    both shapes (Paddle warned "Skip loading" and failed an assertion at the first step)."""
    out = str(tmp_path)
    model, optimizer, ema = make()
    step(model, optimizer, ema, 0)
    save_checkpoint(checkpoint_dir(out), 1, model, optimizer, ema)

    for use_ema in (False, True):
        wide, wide_opt, wide_ema = make_wide(5, seed=2)
        before = wide.a.weight.numpy().copy()
        with pytest.raises(WeightFileError) as caught:
            start_iteration(out, True, wide, wide_opt, wide_ema if use_ema else None,
                            log=lambda m: None)
        message = str(caught.value)
        assert "iter_0000001.pdparams" in message and "does not fit this model" in message
        assert "model a.weight: [3, 4] in the checkpoint, [3, 5] here" in message
        assert "model a.bias: [4] in the checkpoint, [5] here" in message
        np.testing.assert_array_equal(wide.a.weight.numpy(), before)  # nothing loaded
        step(wide, wide_opt, wide_ema, 1)  # and the optimizer took no foreign state


def test_optimizer_and_ema_parts_are_checked_too(tmp_path):
    model, optimizer, ema = make()
    step(model, optimizer, ema, 0)
    save_checkpoint(str(tmp_path), 1, model, optimizer, ema)
    _, arrays, meta, _ = load_latest(str(tmp_path))
    # EMA state of another shape with a fitting model and optimizer.
    bad_ema = dict(arrays, **{"ema/b.weight": np.zeros((2, 2), "float32")})
    model2, optimizer2, ema2 = make(seed=1)
    with pytest.raises(WeightFileError, match=r"EMA b\.weight: \[2, 2\] in the checkpoint, "
                                              r"\[4, 1\] here"):
        restore(bad_ema, meta, model2, optimizer2, ema2)
    # A parameter that trains now but was frozen when the checkpoint was written has no
    # momentum in it: Paddle would fail an assertion at the first step.
    frozen = {k: v for k, v in arrays.items() if not k.startswith("optim/b.")}
    missing = r"optimizer tensors missing from the checkpoint: \['b\.bias::velocity_0', "
    with pytest.raises(WeightFileError, match=missing + r"'b\.weight::velocity_0'\]"):
        restore(frozen, meta, model2, optimizer2, ema2)
    # Velocity of another shape.
    bad_slot = dict(arrays, **{"optim/a.bias::velocity_0": np.zeros(7, "float32")})
    with pytest.raises(WeightFileError, match=r"optimizer a\.bias::velocity_0: \[7\]"):
        restore(bad_slot, meta, model2, optimizer2, ema2)
    assert restore(arrays, meta, model2, optimizer2, ema2) == 1  # the real one still fits


def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    folder = str(tmp_path)
    model, optimizer, ema = make()
    step(model, optimizer, ema, 0)
    save_checkpoint(folder, 1, model, optimizer, ema, keep=1)
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    step(model, optimizer, ema, 1)
    with pytest.raises(OutputError, match="no space left on the device while writing "
                                          ".*iter_0000002.pdparams"):
        save_checkpoint(folder, 2, model, optimizer, ema, keep=1)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert os.listdir(folder) == ["iter_0000001.pdparams"]  # no temporary, 1 not pruned
    model2, optimizer2, ema2 = make(seed=3)
    _, arrays, meta, _ = load_latest(folder)
    assert restore(arrays, meta, model2, optimizer2, ema2) == 1
