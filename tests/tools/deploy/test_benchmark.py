"""The measuring helpers of tools/deploy/benchmark.py: conv FLOPs, the GEMM bound, the table."""

import os

import numpy as np
import paddle.nn as nn
import pytest

import model.postprocess
from config import load_config
from model.layers import ModulatedDeformConv
from tools.deploy.benchmark import (
    conv_flops,
    fixture_weights,
    gemm_bound,
    gemm_rate,
    network_only,
    overlap_line,
    postprocess_steps,
    steps_line,
    table,
    time_overlap,
)
from tools.files import REPO as ROOT
from tools.inference.backends import BackendError, load_dygraph
from tools.inference.predictor import predict_stream


class TinyNet(nn.Layer):
    """16x16 input: a strided conv, a grouped conv, a DCNv2 (its offset conv included) and
    a 1x1 conv with bias, one of them called twice."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2D(3, 8, 3, stride=2, padding=1)
        self.grouped = nn.Conv2D(8, 8, 3, padding=1, groups=4)
        self.dcn = ModulatedDeformConv(8, 4, 3)
        self.head = nn.Conv2D(4, 2, 1)

    def forward(self, x):
        x = self.grouped(self.grouped(self.stem(x)))
        return self.head(self.dcn(x))


def test_conv_flops_of_a_tiny_net_counted_by_hand():
    # Every output is 8x8 (stride 2 once, then "same" padding); 2 * Cin/groups * kh * kw *
    # Cout * Hout * Wout per call.
    stem = 2 * 3 * 3 * 3 * 8 * 64            # 27,648
    grouped = 2 * (8 // 4) * 3 * 3 * 8 * 64  # 18,432, called twice
    offsets = 2 * 8 * 3 * 3 * 27 * 64        # conv_offset: 3 * 3 * 3 = 27 channels
    deform = 2 * 8 * 3 * 3 * 4 * 64
    head = 2 * 4 * 1 * 1 * 2 * 64
    got = conv_flops(TinyNet(), np.zeros((1, 3, 16, 16), np.float32))
    assert got == {"conv": (5, stem + 2 * grouped + offsets + head), "deform": (1, deform)}
    # A batch of two is twice the work.
    two = conv_flops(TinyNet(), np.zeros((2, 3, 16, 16), np.float32))
    assert two["conv"][1] == 2 * got["conv"][1] and two["deform"][1] == 2 * deform


def test_conv_flops_removes_its_hooks():
    net = TinyNet()
    conv_flops(net, np.zeros((1, 3, 16, 16), np.float32))
    assert all(not layer._forward_post_hooks for layer in net.sublayers())


def test_gemm_rate_measures_both_libraries():
    rates = gemm_rate(size=64, repeats=1)
    assert set(rates) == {"numpy", "paddle"}
    assert all(0 < rate < 1e5 for rate in rates.values())  # GFLOP/s


def test_gemm_bound_takes_the_best_rate_and_the_fastest_forward():
    results = {"dygraph": ([0.5], {"forward": [300.0, 320.0, 310.0]}),
               "onnx": ([2.0], {"forward": [30.0, 31.0, 29.0], "postprocess": [3.0]})}
    rates = [{"numpy": 80.0, "paddle": 60.0}, {"numpy": 70.0, "paddle": 100.0}]
    text = gemm_bound(rates, 2e9, {(512, 512): 2, (512, 800): 1}, results)
    assert "best fp32 matmul 100 GFLOP/s (paddle; numpy 80, paddle 100;" in text
    assert "2.0 GFLOP per image" in text and "512x512 (2 images), 512x800;" in text
    assert "at least 20 ms per image" in text  # 2 GFLOP at 100 GFLOP/s
    assert "fastest network pass: onnx 30 ms = 1.50x the bound" in text


def test_table_shares_of_the_forward_pass():
    results = {"onnx": ([0.8, 0.75, 0.9], {"forward": [1000.0], "postprocess": [40.0]}),
               "graph": ([1.0], {"model": [900.0]})}
    rows = {line.split()[0]: line.split() for line in table(results).splitlines()[2:]}
    assert rows["onnx"][-2:] == ["4.0%", "0.80"]  # 40 / 1000; 0.8 images/s * 1 s
    assert rows["graph"][-2:] == ["-", "-"]


def test_postprocess_steps_count_the_masks_the_scoring_computes(monkeypatch):
    cfg = load_config(2)
    cells = sum(g * g for g in cfg.num_grids)
    rng = np.random.RandomState(3)
    outputs = {"cate_scores": rng.uniform(0, 0.3, (1, cells, 80)).astype(np.float32),
               "kernels": rng.normal(0, 1, (1, cells, 128)).astype(np.float32),
               "mask_feat": rng.normal(0, 1, (1, 128, 13, 21)).astype(np.float32)}
    scored = []
    real = model.postprocess.rescore
    monkeypatch.setattr(model.postprocess, "rescore",
                        lambda kernels, *args: scored.append(len(kernels)) or real(kernels, *args))
    steps = postprocess_steps(outputs, (50, 83), (101, 166), cfg, repeats=2)
    per_pass = sum(scored) // 3  # a warm-up pass and two timed ones, the same rows each
    assert sum(scored) == 3 * per_pass and steps["masks"] == per_pass > cfg.test_cfg.nms_pre
    assert steps["candidates"] == int((outputs["cate_scores"] > 0.1).sum())
    assert np.isclose(steps["gflop"], 2 * per_pass * 128 * 13 * 21 / 1e9)
    assert all(steps[name] > 0 for name in ("scoring", "nms", "paste", "products"))
    line = steps_line("x.png", dict(steps, scoring=60.0, nms=10.0, paste=30.0, products=20.0),
                      {"onnx": ([1.0], {"forward": [1000.0]})})
    assert "total 100 = 10.0% of the fastest forward (onnx, 1000 ms)" in line
    assert "the products alone 2.0%" in line


def test_overlapped_post_processing_gives_the_loop_s_detections(tmp_path):
    cfg = load_config(2, ["test_size=(64, 96)"])
    predictor, style = load_dygraph(cfg, fixture_weights(cfg, str(tmp_path)))
    paths = [os.path.join(ROOT, "images", "test", name) for name in ("chelsea.png", "rocket.jpg")]
    stream = dict(size=cfg.test_size, mean=cfg.pixel_mean, std=cfg.pixel_std, style=style)
    expected = predict_stream(predictor, paths, **stream)
    got = predict_stream(network_only(predictor), paths, **stream,
                         consumer=lambda item, pending: predictor.postprocess(
                             pending[0], [pending[1]], [pending[2]])[0])
    for want, have in zip(expected, got):
        assert want["masks"].shape[0] > 0
        for key in ("masks", "labels", "scores", "boxes"):
            assert np.array_equal(want[key], have[key])
    rates = time_overlap(predictor, style, cfg, paths, 1, ["class"] * 80)
    assert [len(rates[k]) for k in ("after", "overlapped")] == [1, 1]
    assert "x)" in overlap_line("dygraph", rates)


def test_overlap_needs_the_numpy_post_processing():
    class GraphMode:
        postprocess = None

    with pytest.raises(BackendError, match="mode 'network'"):
        network_only(GraphMode())
