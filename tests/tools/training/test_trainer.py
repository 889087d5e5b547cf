import errno
import json
import math
import os

import numpy as np
import paddle
import pytest

from config import load_config
from tools.files import OutputError
from tools.training.checkpoints import list_checkpoints, load_latest
from tools.training.trainer import NonFiniteLoss, Trainer, TrainLog, loss_curve


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


def trainer(tmp_path, max_iters=4, extra=(), log=None):
    cfg = load_config(1, [f"train_cfg.max_iters={max_iters}", "train_cfg.save_iter=2",
                          "train_cfg.log_iter=1", "train_cfg.warmup_iters=0",
                          "train_cfg.eval_iter=0", *extra])
    model = Fake()
    optimizer = paddle.optimizer.Momentum(0.1, parameters=model.parameters())
    return Trainer(cfg, model, model, fake_criterion, optimizer, None, 0.1, str(tmp_path),
                   meta={"config": cfg.name}, log=log), model


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


def test_start_clears_temporaries_and_a_resumed_run_keeps_its_checkpoint(tmp_path):
    first, _ = trainer(tmp_path, max_iters=2)
    first.train([batch(1.0)], Sampler())
    # What a SIGKILL in the middle of writing a checkpoint and a model file leaves.
    (tmp_path / "checkpoints" / ".tmp-a1.pdparams").write_bytes(b"\0" * 2_000_000)
    (tmp_path / ".tmp-b2.pdparams").write_bytes(b"\0" * 1000)
    resumed, _ = trainer(tmp_path, max_iters=6, extra=["train_cfg.keep_checkpoints=1"])
    resumed.train([batch(1.0)], Sampler(), start_iter=2)
    names = os.listdir(tmp_path / "checkpoints") + os.listdir(tmp_path)
    assert not [n for n in names if n.startswith(".tmp-")]
    log = (tmp_path / "train.log").read_text()
    assert ".tmp-a1.pdparams, left by an interrupted write" in log
    assert "removed 2 temporary file(s) of interrupted writes, 2.0 MB" in log
    # keep_checkpoints=1, yet iteration 2 (where this run started) is never pruned.
    assert [i for i, _ in list_checkpoints(str(tmp_path / "checkpoints"))] == [2, 6]


def disk_full_at_write(monkeypatch, folder, n):
    """From the ``n``-th file written into ``folder`` on, os.fsync fails as on a full disk
    (files are written to a random temporary name, so they are counted, not named)."""
    real, calls = os.fsync, []

    def fsync(fd):
        if os.path.dirname(os.readlink(f"/proc/self/fd/{fd}")) == os.path.realpath(folder):
            calls.append(fd)
            if len(calls) >= n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names open files via /proc")
def test_disk_full_at_a_checkpoint_is_one_message_and_the_last_one_stays(tmp_path, monkeypatch):
    run, _ = trainer(tmp_path, max_iters=6, extra=["train_cfg.keep_checkpoints=1"])
    disk_full_at_write(monkeypatch, tmp_path / "checkpoints", 2)
    with pytest.raises(OutputError) as caught:
        run.train([batch(1.0)], Sampler())
    message = str(caught.value)
    assert "no space left on the device while writing" in message
    assert "iter_0000004.pdparams" in message and "\n" not in message
    assert message.endswith("last complete checkpoint: "
                            f"{tmp_path / 'checkpoints' / 'iter_0000002.pdparams'}")
    monkeypatch.undo()
    assert os.listdir(tmp_path / "checkpoints") == ["iter_0000002.pdparams"]
    iteration, arrays, _, _ = load_latest(str(tmp_path / "checkpoints"))
    assert iteration == 2 and "model/w" in arrays


def test_a_full_disk_under_the_log_is_an_output_error(tmp_path):
    log = TrainLog(str(tmp_path))
    log("first line")

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        flush = close = write

    log.file.close()
    log.file = Full()
    with pytest.raises(OutputError, match="no space left on the device while writing "
                                          ".*train.log"):
        log("second line")
    assert (tmp_path / "train.log").read_text() == "first line\n"


def test_scalars_go_to_metrics_jsonl_and_a_resumed_run_appends(tmp_path):
    from tools.training.metrics import read_metrics

    first, _ = trainer(tmp_path, max_iters=2)
    first.train([batch(1.0), batch(2.0)], Sampler())
    resumed, _ = trainer(tmp_path, max_iters=4)
    resumed.train([batch(1.0)], Sampler(), start_iter=2)
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [(r["iteration"], r.get("event")) for r in lines] == [
        (0, "start"), (1, None), (2, None), (2, "start"), (3, None), (4, None)]
    records = read_metrics(str(tmp_path / "metrics.jsonl"))
    assert [r["iteration"] for r in records] == [1, 2, 3, 4]
    logged = [line for line in (tmp_path / "train.log").read_text().splitlines()
              if line.startswith("iter ")]
    for record, line in zip(records, logged):
        # The same numbers as the log line: the loss, its parts, the LR, the two times.
        words = line.replace("(", " ").replace(")", " ").replace(",", " ").split()
        assert f"{record['train/loss']:.4f}" == words[3]
        assert f"{record['train/loss_ins']:.4f}" == words[5]
        assert f"{record['train/loss_cate']:.4f}" == words[7]
        assert f"{record['train/lr']:.6g}" == words[9]
        assert f"{record['train/data_time']:.3f}" == words[13]
        assert record["train/step_time"] >= record["train/data_time"] >= 0
    assert sorted(records[0]) == ["iteration", "time", "train/data_time", "train/loss",
                                  "train/loss_cate", "train/loss_ins", "train/lr",
                                  "train/step_time"]


def test_evaluation_ap_goes_to_metrics_and_visualdl_only_with_vdl(tmp_path, monkeypatch):
    import sys
    import types

    from tools.training.metrics import curve, read_metrics

    tags = []

    class LogWriter:
        def __init__(self, logdir):
            pass

        def add_scalar(self, tag, value, step):
            tags.append((tag, step))

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "visualdl", types.SimpleNamespace(LogWriter=LogWriter))
    run, _ = trainer(tmp_path / "plain", max_iters=2, extra=["train_cfg.eval_iter=2"])
    run.evaluate = lambda: {"AP": 0.25, "AP50": 0.5, "AP75": 0.125, "detections": 3,
                            "images": 1}
    run.train([batch(1.0)], Sampler())
    assert tags == []  # VisualDL is installed (here: a stand-in) but --vdl was not given
    assert curve(read_metrics(str(tmp_path / "plain" / "metrics.jsonl")), "eval/AP") == (
        [2], [0.25])

    run, _ = trainer(tmp_path / "vdl", max_iters=2, extra=["train_cfg.eval_iter=2"],
                     log=TrainLog(str(tmp_path / "vdl"), vdl=True))
    run.evaluate = lambda: {"AP": 0.25, "AP50": 0.5, "AP75": 0.125, "detections": 3,
                            "images": 1}
    run.train([batch(1.0)], Sampler())
    assert ("eval/AP", 2) in tags and ("train/loss", 1) in tags and ("train/lr", 2) in tags
