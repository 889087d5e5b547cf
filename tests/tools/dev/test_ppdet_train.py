"""tools/dev/ppdet_train.py: PaddleDetection's training step works on our batch with our
weights, trains what ours trains, and computes our loss."""

import numpy as np
import paddle
import pytest

from config import load_config
from tools.deploy.benchmark import fixture_weights
from tools.training import benchmark
from tools.training.benchmark import Batch, Clock, benchmark_config, build_our_step


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    try:
        import ppdet  # noqa: F401
    except Exception as err:
        pytest.skip(f"PaddleDetection 2.6 not importable: {err}")
    pytest.importorskip("imgviz")
    from tools.dev import ppdet_train

    folder = tmp_path_factory.mktemp("ppdet_train")
    # DropBlock is random: off, so that the two losses can be compared.
    cfg = benchmark_config(load_config(2, ["drop_block=False"]), (96, 128))
    weights = fixture_weights(cfg, str(folder))
    samples = Batch(cfg, *benchmark.photo_set(str(folder / "photos")), batch_size=2)()
    ours = build_our_step(cfg, weights, 2)
    theirs = ppdet_train.build_ppdet_step(cfg, weights, ours.model, ours.lr)
    return cfg, samples, ours, theirs


def test_its_targets_of_our_samples_have_our_positives(pair):
    from tools.dev.ppdet_train import ppdet_inputs

    cfg, samples, ours, _ = pair
    mine = ours.collate(samples)
    inputs = ppdet_inputs(cfg, samples)
    assert inputs["image"].shape == list(mine["images"].shape)
    assert np.array_equal(inputs["image"].numpy(), mine["images"])
    assert int(inputs["fg_num"].numpy().sum()) == int(mine["num_pos"][0]) > 0
    for level, grid in enumerate(cfg.num_grids):
        theirs = inputs[f"cate_label{level}"].numpy().reshape(-1, grid, grid)
        assert np.array_equal(theirs, mine["cate_labels"][level]), level


def test_it_trains_what_ours_trains(pair):
    _, _, ours, theirs = pair
    trainable = [p for p in theirs.model.parameters() if not p.stop_gradient]
    assert len(trainable) == sum(not p.stop_gradient for p in ours.model.parameters())
    assert len(theirs.optimizer._parameter_list) == len(trainable)
    # Its frozen stem and res2, and the zero head-DCN biases config 2 has no twin for.
    frozen = {n for n, p in theirs.model.named_parameters() if p.stop_gradient}
    assert any(n.startswith("backbone.res2.") for n in frozen)
    assert any(n.startswith("backbone.conv1.") for n in frozen)
    assert any("solov2_head" in n and n.endswith("conv_dcn.bias") for n in frozen)


def test_same_weights_same_batch_same_loss_then_a_step(pair):
    from tools.dev.ppdet_train import ppdet_inputs

    cfg, samples, ours, theirs = pair
    # Forward and loss of both on the batch, without training.
    images, targets = benchmark.to_tensors(ours.collate(samples))
    with paddle.no_grad():
        our_losses = {k: float(v) for k, v in
                      ours.criterion(*ours.net(images), targets).items()}
        theirs.model.inputs = ppdet_inputs(cfg, samples)
        theirs.model.model_arch()
        their_losses = theirs.model.get_loss()
    for key in ("loss_ins", "loss_cate"):
        assert float(their_losses[key].numpy().ravel()[0]) == pytest.approx(
            our_losses[key], rel=2e-6), key
    before = theirs.model.state_dict()["solov2_head.bbox_head.solo_cate.weight"].numpy().copy()
    clock = Clock()
    losses = theirs(samples, clock)
    assert list(clock.seconds) == ["targets", "forward", "loss", "backward", "optimizer"]
    assert losses["loss"] == pytest.approx(our_losses["loss"], rel=2e-6)
    after = theirs.model.state_dict()["solov2_head.bbox_head.solo_cate.weight"].numpy()
    assert not np.array_equal(before, after)


def test_samples_survive_the_trip_to_a_fresh_process(tmp_path):
    from tools.dev.ppdet_train import load_samples, save_samples

    rng = np.random.RandomState(0)
    samples = [{"image": rng.randn(3, 8, 8).astype("float32"),
                "masks": (rng.rand(k, 8, 8) > 0.5).astype("uint8"),
                "boxes": rng.rand(k, 4).astype("float32"), "labels": np.arange(k)}
               for k in (2, 3)]
    save_samples(str(tmp_path / "s.npz"), samples)
    back = load_samples(str(tmp_path / "s.npz"))
    assert len(back) == 2
    for a, b in zip(samples, back):
        for key in a:
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key])
