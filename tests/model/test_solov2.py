import inspect

import numpy as np
import paddle
import pytest

from config import load_config
from model import build_model
from model.layers import DropBlock

GRIDS = (40, 36, 24, 16, 12)


@pytest.fixture(scope="module", params=[0, 1, 2, 3])
def built(request):
    paddle.seed(0)
    cfg = load_config(request.param)
    model = build_model(cfg)
    model.eval()
    return cfg, model


def test_head_output_shapes(built):
    cfg, model = built
    images = paddle.randn([2, 3, 96, 128])
    with paddle.no_grad():
        cates, kernels, mask_feat = model.head_outputs(images)
    assert [tuple(c.shape) for c in cates] == [(2, 80, s, s) for s in GRIDS]
    assert [tuple(k.shape) for k in kernels] == [(2, cfg.mask_feat_channels, s, s) for s in GRIDS]
    # The unified mask feature is at stride 4 and passes GN + ReLU last.
    assert tuple(mask_feat.shape) == (2, cfg.mask_feat_channels, 24, 32)
    assert float(mask_feat.min()) >= 0.0


def test_eval_outputs_flatten_levels_row_major(built):
    cfg, model = built
    images = paddle.randn([1, 3, 64, 64])
    with paddle.no_grad():
        out = model(images)
        cates, kernels, _ = model.head_outputs(images)
    cells = sum(s * s for s in GRIDS)
    assert tuple(out["cate_scores"].shape) == (1, cells, 80)
    assert tuple(out["kernels"].shape) == (1, cells, cfg.mask_feat_channels)
    # Cell (i, j) of level 1 sits at 40*40 + i*36 + j.
    i, j = 5, 7
    np.testing.assert_allclose(out["kernels"][0, 1600 + i * 36 + j].numpy(),
                               kernels[1][0, :, i, j].numpy(), rtol=1e-6)
    scores = out["cate_scores"].numpy()
    assert scores.min() >= 0 and scores.max() <= 1


def test_batch_equals_singles_for_same_shape_images():
    cfg = load_config(1)
    paddle.seed(1)
    model = build_model(cfg)
    model.eval()
    images = paddle.randn([3, 3, 96, 160])
    with paddle.no_grad():
        batch = model(images)
        singles = [model(images[i:i + 1]) for i in range(3)]
    for key in ("cate_scores", "kernels", "mask_feat"):
        stacked = np.concatenate([s[key].numpy() for s in singles])
        np.testing.assert_allclose(batch[key].numpy(), stacked, rtol=1e-4, atol=1e-5)


def test_category_bias_starts_at_focal_prior():
    model = build_model(load_config(1))
    np.testing.assert_allclose(model.head.solo_cate.bias.numpy(), -np.log(99.0), rtol=1e-6)


def test_forward_predicts_in_training_mode_too():
    """forward is for prediction only: the trainer gives head_outputs to the loss, so the
    network takes no targets and returns the same kind of output in either mode."""
    model = build_model(load_config(1))
    model.train()
    assert list(inspect.signature(model.forward).parameters) == ["images"]
    with paddle.no_grad():
        out = model(paddle.randn([1, 3, 64, 64]))
    assert sorted(out) == ["cate_scores", "kernels", "mask_feat"]
    assert out["cate_scores"].shape == [1, sum(s * s for s in model.head.num_grids), 80]


def test_dropblock_is_identity_in_eval_and_drops_blocks_in_training():
    layer = DropBlock(block_size=3, keep_prob=0.9)
    x = paddle.ones([4, 8, 24, 24])
    layer.eval()
    np.testing.assert_array_equal(layer(x).numpy(), x.numpy())
    layer.train()
    paddle.seed(3)
    y = layer(x).numpy()
    dropped = y == 0
    assert 0.02 < dropped.mean() < 0.3
    # Survivors are rescaled so the expected activation is unchanged.
    np.testing.assert_allclose(y.mean(), 1.0, rtol=1e-5)
    assert np.allclose(y[~dropped], y[~dropped].flat[0])
