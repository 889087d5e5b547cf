"""model/deform_conv.py: the training DCN gives the output and gradients of Paddle's CPU kernels,
bit for bit, on one thread and on two."""

import numpy as np
import paddle
import pytest
from paddle.vision.ops import deform_conv2d

import model.layers as layers
from config import load_config
from model import build_model, deform_conv
from model.deform_conv import deform_conv_forward, deform_conv_grads, uses_fast_backward
from model.layers import ModulatedDeformConv


def native(x, offset, mask, weight, dout, stride, padding, dilation):
    """Paddle's kernels: (output, [dx, doffset, dmask, dweight])."""
    tensors = [paddle.to_tensor(a, stop_gradient=False) for a in (x, offset, mask, weight)]
    out = deform_conv2d(tensors[0], tensors[1], tensors[3], stride=stride, padding=padding,
                        dilation=dilation, mask=tensors[2])
    out.backward(paddle.to_tensor(dout))
    return out.numpy(), [t.grad.numpy() for t in tensors]


@pytest.fixture(params=[1, 2], ids=["1 thread", "2 threads"])
def threads(request):
    """Paddle's CPU thread count, which the numpy work follows (restored afterwards)."""
    from paddle.base import core

    before = deform_conv._cpu_threads()
    core.set_num_threads(request.param)
    assert deform_conv._cpu_threads() == request.param
    yield request.param
    core.set_num_threads(before)


def case(seed, n, c, hw, co, k, stride, padding, dilation, spread):
    """Random inputs; offsets of ``spread`` pixels push some samples outside the image,
    and a few are whole numbers (samples exactly on a pixel, and on the border -1)."""
    rng = np.random.RandomState(seed)
    h, w = hw
    out_h = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    out_w = (w + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    x = rng.randn(n, c, h, w).astype("float32")
    offset = (rng.randn(n, 2 * k * k, out_h, out_w) * spread).astype("float32")
    offset[0, :, 0, 0] = -1.0
    offset[0, :, -1, -1] = 0.0
    offset[-1, :, 0, -1] = np.round(offset[-1, :, 0, -1])
    mask = rng.rand(n, k * k, out_h, out_w).astype("float32")
    weight = (rng.randn(co, c, k, k) * 0.1).astype("float32")
    dout = rng.randn(n, co, out_h, out_w).astype("float32")
    return x, offset, mask, weight, dout


@pytest.mark.parametrize("n, c, hw, co, k, stride, padding, dilation, spread", [
    (2, 8, (7, 9), 5, 3, 1, 1, 1, 1.5),      # odd sizes, samples falling off every side
    (1, 16, (12, 10), 8, 3, 2, 1, 1, 0.7),   # stride 2 (ResNet-vd's first DCN of a stage)
    (3, 4, (6, 6), 3, 3, 1, 1, 1, 6.0),      # most samples outside the image
    (2, 5, (9, 8), 4, 3, 1, 2, 2, 1.0),      # dilation 2
    (1, 3, (5, 7), 2, 1, 1, 0, 1, 0.9),      # 1 x 1 kernel
])
def test_output_and_gradients_equal_paddles_kernels_bit_for_bit(threads, n, c, hw, co, k,
                                                                stride, padding, dilation,
                                                                spread):
    x, offset, mask, weight, dout = case(0, n, c, hw, co, k, stride, padding, dilation, spread)
    geometry = ([stride] * 2, [padding] * 2, [dilation] * 2)
    out, ref = native(x, offset, mask, weight, dout, *geometry)
    mine = deform_conv_forward(x, offset, mask, weight, *geometry).numpy()
    assert mine.shape == out.shape and np.array_equal(mine, out)
    ours = deform_conv_grads(x, offset, mask, weight, dout, *geometry)
    ours = list(ours[:3]) + [ours[3].numpy()]
    for name, a, b in zip(("x", "offset", "mask", "weight"), ours, ref):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        assert np.array_equal(a, b), (name, float(np.abs(a - b).max()))
    assert np.abs(ref[0]).max() > 0 and np.abs(ref[1]).max() > 0  # something to compare


@pytest.mark.parametrize("bias", [False, True])
def test_layer_trains_with_paddles_forward_and_gradients(bias):
    paddle.seed(3)
    layer = ModulatedDeformConv(6, 4, 3, stride=1, bias=bias)
    rng = np.random.RandomState(4)
    # Non-zero offset predictor, so that the samples leave the pixel grid.
    layer.conv_offset.weight.set_value(
        (rng.randn(*layer.conv_offset.weight.shape) * 0.3).astype("float32"))
    x = rng.randn(2, 6, 9, 11).astype("float32")
    results = []
    for fast in (False, True):
        layer.clear_gradients()
        layer.train()
        xt = paddle.to_tensor(x, stop_gradient=False)
        assert uses_fast_backward(xt, layer.conv)
        original = layers.uses_fast_backward
        if not fast:
            layers.uses_fast_backward = lambda *args: False
        try:
            out = layer(xt)
        finally:
            layers.uses_fast_backward = original
        (out * out).sum().backward()
        grads = {name: p.grad.numpy() for name, p in layer.named_parameters()}
        results.append((out.numpy(), xt.grad.numpy(), grads))
    (out_a, dx_a, grads_a), (out_b, dx_b, grads_b) = results
    assert np.array_equal(out_a, out_b) and np.array_equal(dx_a, dx_b)
    assert set(grads_a) == set(grads_b) == {n for n, _ in layer.named_parameters()}
    for name in grads_a:
        assert np.array_equal(grads_a[name], grads_b[name]), name


def test_eval_and_no_grad_keep_paddles_layer():
    layer = ModulatedDeformConv(4, 4, 3)
    x = paddle.ones([1, 4, 5, 5])
    with paddle.no_grad():
        assert not uses_fast_backward(x, layer.conv)
    layer.eval()
    assert np.array_equal(layer(x).numpy(), layer.conv(x, *offset_and_mask(layer, x)).numpy())


def offset_and_mask(layer, x):
    offset_mask = layer.conv_offset(x)
    return (offset_mask[:, :layer.num_offsets],
            paddle.nn.functional.sigmoid(offset_mask[:, layer.num_offsets:]))


def test_input_without_gradient_gets_none():
    layer = ModulatedDeformConv(3, 2, 3)
    layer.train()
    x = paddle.to_tensor(np.random.RandomState(5).randn(1, 3, 6, 6).astype("float32"))
    layer(x).sum().backward()  # x.stop_gradient: only the parameters get gradients
    assert x.grad is None
    assert layer.conv.weight.grad is not None and layer.conv_offset.weight.grad is not None


def test_full_step_loss_and_gradients_equal_paddles_dcn(threads):
    """Config 2's network (DCN in res3-res5 and in the head towers): one step's loss and
    every parameter gradient, with Paddle's DCN backward and with ours, on a fixed batch."""
    from tools.data.targets import TargetCollator
    from tools.training.benchmark import to_tensors
    from tools.training.build import build_criterion
    from tools.training.optim import freeze_backbone, set_train_mode

    # Small grids: the head's cost does not shrink with the image, and the test only needs
    # every DCN to run.
    cfg = load_config(2, ["drop_block=False", "num_grids=(12, 10, 8, 6, 4)"])
    paddle.seed(0)
    model = build_model(cfg)
    rng = np.random.RandomState(0)
    for name, param in model.named_parameters():
        if "conv_offset" in name:  # zero-initialised; make the samples leave the grid
            param.set_value((rng.randn(*param.shape) * 0.02).astype("float32"))
    freeze_backbone(model, cfg.backbone_frozen_stages, cfg.backbone_norm)
    set_train_mode(model, cfg.backbone_frozen_stages, cfg.backbone_norm)
    h, w = 64, 64
    samples = []
    for i in range(2):
        masks = np.zeros((2, h, w), np.uint8)
        masks[0, 6:40, 10:40] = 1
        masks[1, 30:60, 30 + 5 * i:60] = 1
        samples.append({"image": rng.randn(3, h, w).astype("float32"), "masks": masks,
                        "labels": np.array([1, 3])})
    images, targets = to_tensors(TargetCollator(cfg.num_grids, cfg.scale_ranges,
                                                cfg.sigma)(samples))
    criterion = build_criterion(cfg)
    runs = []
    for fast in (False, True):
        original = layers.uses_fast_backward
        if not fast:
            layers.uses_fast_backward = lambda *args: False
        try:
            losses = criterion(*model.head_outputs(images), targets)
            losses["loss"].backward()
        finally:
            layers.uses_fast_backward = original
        grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters()
                 if p.grad is not None}
        model.clear_gradients()
        runs.append(({k: float(v) for k, v in losses.items()}, grads))
    (losses_a, grads_a), (losses_b, grads_b) = runs
    assert losses_a == losses_b
    assert sum(not p.stop_gradient for p in model.parameters()) == len(grads_a) == len(grads_b)
    # Every DCN layer took part: 13 in res3-res5, one in each head tower.
    assert sum(n.endswith("conv_offset.weight") for n in grads_a) == 15
    for name in grads_a:
        assert np.array_equal(grads_a[name], grads_b[name]), name
