import numpy as np
import paddle
import pytest

from config import load_config
from model import build_model
from tools.training.optim import (
    ModelEMA,
    build_optimizer,
    freeze_backbone,
    lr_at,
    param_groups,
    scaled_lr,
    set_train_mode,
)


def test_schedule_config0_mmdet_linear_warmup_and_steps():
    train = load_config(0).train_cfg
    lr = 0.01
    assert lr_at(0, lr, train) == pytest.approx(0.01 * 0.01)
    assert lr_at(250, lr, train) == pytest.approx(0.01 * (0.01 + 0.99 * 0.5))
    assert lr_at(500, lr, train) == pytest.approx(0.01)
    assert lr_at(27 * 7330 - 1, lr, train) == pytest.approx(0.01)
    assert lr_at(27 * 7330, lr, train) == pytest.approx(0.001)
    assert lr_at(33 * 7330, lr, train) == pytest.approx(0.0001)


def test_schedule_config2_starts_from_zero():
    train = load_config(2).train_cfg
    assert lr_at(0, 0.01, train) == 0.0
    assert lr_at(500, 0.01, train) == pytest.approx(0.005)
    assert lr_at(180000, 0.01, train) == pytest.approx(0.001)
    assert lr_at(240000, 0.01, train) == pytest.approx(0.0001)


def test_linear_scaling_and_switch():
    cfg = load_config(2)
    assert scaled_lr(cfg.train_cfg, 16) == pytest.approx(0.01)
    assert scaled_lr(cfg.train_cfg, 2) == pytest.approx(0.00125)
    cfg.train_cfg.scale_lr = False
    assert scaled_lr(cfg.train_cfg, 2) == 0.01


@pytest.fixture(scope="module")
def config2_model():
    cfg = load_config(2, ["num_classes=3"])
    model = build_model(cfg)
    freeze_backbone(model, cfg.backbone_frozen_stages, cfg.backbone_norm)
    return cfg, model


def test_frozen_stages_and_frozen_norm(config2_model):
    cfg, model = config2_model
    params = dict(model.named_parameters())
    assert params["backbone.stem.0.conv.weight"].stop_gradient
    assert params["backbone.stages.0.0.conv1.conv.weight"].stop_gradient
    assert not params["backbone.stages.1.0.conv1.conv.weight"].stop_gradient
    assert params["backbone.stages.3.2.conv3.norm.weight"].stop_gradient  # freeze_norm
    assert not params["head.solo_cate.weight"].stop_gradient


def test_groups_lr_mult_and_no_decay_on_norms(config2_model):
    cfg, model = config2_model
    groups = param_groups(model, cfg.train_cfg)
    by_name = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for g in groups:
        for p in g["params"]:
            by_name[names[id(p)]] = (g["learning_rate"], g["weight_decay"])
    assert "backbone.stem.0.conv.weight" not in by_name  # frozen: not optimised
    assert by_name["backbone.stages.1.0.conv2.conv.conv.weight"] == (0.05, 1e-4)
    assert by_name["backbone.stages.2.0.conv1.conv.weight"] == (0.1, 1e-4)
    assert by_name["backbone.stages.3.0.conv1.conv.weight"] == (0.15, 1e-4)
    assert by_name["head.solo_cate.weight"] == (1.0, 1e-4)
    cfg3 = load_config(3, ["num_classes=3"])
    model3 = build_model(cfg3)
    freeze_backbone(model3, 1, "train")
    names3 = {id(p): n for n, p in model3.named_parameters()}
    norm = {names3[id(p)]: g["weight_decay"] for g in param_groups(model3, cfg3.train_cfg)
            for p in g["params"]}
    assert norm["backbone.stages.1.0.conv1.norm.weight"] == 0.0  # PD norm_decay = 0
    assert norm["head.kernel_convs.0.norm.weight"] == 1e-4


@pytest.mark.parametrize("norm, expect_training", [("affine", False), ("frozen", False),
                                                   ("train", True)])
def test_batchnorm_modes(norm, expect_training):
    cfg = load_config(1, ["num_classes=3"])
    model = build_model(cfg)
    set_train_mode(model, 1, norm)
    assert model.head.training
    assert not model.backbone.stem[0].norm.training          # frozen stage: always eval
    assert not model.backbone.stages[0][0].conv1.norm.training
    assert model.backbone.stages[1][0].conv1.norm.training == expect_training


def test_optimizer_step_respects_freezing_and_multipliers():
    paddle.seed(0)
    cfg = load_config(1, ["num_classes=3", "train_cfg.backbone_lr_mult=(0.0, 0.0, 0.0, 0.5)"])
    model = build_model(cfg)
    freeze_backbone(model, 1, "affine")
    optimizer = build_optimizer(model, cfg.train_cfg, 0.01)
    before = {n: p.numpy().copy() for n, p in model.named_parameters()}
    set_train_mode(model, 1, "affine")
    cates, kernels, feat = model.head_outputs(paddle.randn([1, 3, 64, 64]))
    loss = sum(c.sum() for c in cates) + sum(k.sum() for k in kernels) + feat.sum()
    loss.backward()
    optimizer.step()
    after = {n: p.numpy() for n, p in model.named_parameters()}
    changed = {n for n in before if not np.array_equal(before[n], after[n])}
    assert "backbone.stem.0.conv.weight" not in changed
    assert "backbone.stages.1.0.conv1.conv.weight" not in changed   # multiplier 0
    assert "backbone.stages.3.0.conv1.conv.weight" in changed
    assert "head.solo_cate.weight" in changed


def test_ema_threshold_decay():
    layer = paddle.nn.Linear(2, 1)
    w0 = layer.weight.numpy().copy()
    ema = ModelEMA(layer, decay=0.9998)
    layer.weight.set_value(w0 + 1.0)
    ema.update(layer)       # step 0: d = min(0.9998, 1/10) = 0.1
    np.testing.assert_allclose(ema.state["weight"].numpy(), 0.1 * w0 + 0.9 * (w0 + 1),
                               rtol=1e-6)
    for _ in range(5):
        ema.update(layer)
    assert ema.step == 6
    ema.step = 10 ** 6      # late in training the configured decay applies
    previous = ema.state["weight"].numpy().copy()
    layer.weight.set_value(previous + 1.0)
    ema.update(layer)
    np.testing.assert_allclose(ema.state["weight"].numpy(), previous + 0.0002, rtol=1e-5)
