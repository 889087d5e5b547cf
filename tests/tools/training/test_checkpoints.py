import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import paddle
import pytest

from tools.errors import UserError
from tools.training.checkpoints import (
    list_checkpoints,
    load_latest,
    restore,
    save_checkpoint,
    start_iteration,
)
from tools.training.optim import ModelEMA
from tools.weights.files import WeightFileError

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
