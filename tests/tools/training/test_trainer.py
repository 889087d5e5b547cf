import math
import os

import numpy as np
import paddle
import pytest

from config import load_config
from tools.training.checkpoints import list_checkpoints, load_latest
from tools.training.trainer import NonFiniteLoss, Trainer, loss_curve


class Fake(paddle.nn.Layer):
    """Stands in for SOLOv2's training forward: one output, w * images."""

    def __init__(self):
        super().__init__()
        self.backbone = paddle.nn.Linear(2, 2)
        self.w = self.create_parameter([2], default_initializer=paddle.nn.initializer.Constant(1.0))

    def forward(self, images):
        return (self.w * images,)


def fake_criterion(weighted, targets):
    """Stands in for the loss: loss = sum(w * images) * scale, scale taken from the batch."""
    loss = weighted.sum() * targets["cate_labels"]
    return {"loss": loss, "loss_ins": loss * 0.5, "loss_cate": loss * 0.5}


class Sampler:
    def __init__(self):
        self.epochs = []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)


def batch(scale):
    return {"images": paddle.ones([2]), "cate_labels": paddle.to_tensor(scale, "float32"),
            "ins_index": [], "ins_masks": [], "num_pos": paddle.to_tensor([1])}


def trainer(tmp_path, max_iters=4):
    cfg = load_config(1, [f"train_cfg.max_iters={max_iters}", "train_cfg.save_iter=2",
                          "train_cfg.log_iter=1", "train_cfg.warmup_iters=0",
                          "train_cfg.eval_iter=0"])
    model = Fake()
    optimizer = paddle.optimizer.Momentum(0.1, parameters=model.parameters())
    return Trainer(cfg, model, model, fake_criterion, optimizer, None, 0.1, str(tmp_path),
                   meta={"config": cfg.name}), model


def test_runs_logs_saves_and_reshuffles(tmp_path):
    run, _ = trainer(tmp_path)
    sampler = Sampler()
    final = run.train([batch(1.0), batch(2.0), batch(1.0)], sampler)
    assert sampler.epochs == [0, 1]  # 4 iterations over 3 batches: a second epoch began
    assert os.path.exists(final)
    assert [i for i, _ in list_checkpoints(str(tmp_path / "checkpoints"))] == [2, 4]
    # The best AP so far travels with the checkpoint, so a resumed run does not replace
    # best_model.pdparams with a worse one.
    assert load_latest(str(tmp_path / "checkpoints"))[2]["best_ap"] == "-inf"
    iters, losses = loss_curve(str(tmp_path / "train.log"))
    assert iters.tolist() == [1, 2, 3, 4] and np.isfinite(losses).all()
    text = (tmp_path / "train.log").read_text()
    assert "img/s" in text and "eta" in text and "lr 0.1" in text


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, bad):
    run, model = trainer(tmp_path, max_iters=6)
    with pytest.raises(NonFiniteLoss):
        run.train([batch(1.0), batch(1.0), batch(bad), batch(1.0)], Sampler())
    assert [i for i, _ in list_checkpoints(str(tmp_path / "checkpoints"))] == [2]
    _, arrays, _, _ = load_latest(str(tmp_path / "checkpoints"))
    assert all(np.isfinite(v).all() for v in arrays.values())
    assert np.isfinite(model.w.numpy()).all()  # the bad step was never applied
    log = (tmp_path / "train.log").read_text()
    assert "non-finite loss at iteration 3" in log and "iter_0000002.pdparams" in log


def test_loss_scaler_path_matches_plain_steps(tmp_path):
    """The --amp code path (GradScaler: scale, step, update) gives the plain update; on a
    CPU build auto_cast has nothing to cast here, so this checks the scaling only."""
    plain, plain_model = trainer(tmp_path / "plain")
    plain.train([batch(1.0)] * 3, Sampler())
    scaled, scaled_model = trainer(tmp_path / "scaled")
    scaled.scaler = paddle.amp.GradScaler(init_loss_scaling=2.0 ** 15)
    scaled.train([batch(1.0)] * 3, Sampler())
    np.testing.assert_allclose(scaled_model.w.numpy(), plain_model.w.numpy(), rtol=1e-5)
    assert not np.allclose(plain_model.w.numpy(), 1.0)
