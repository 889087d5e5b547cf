"""tools/dev/ppdet_compare.py: PaddleDetection's SOLOv2 gets exactly our weights and gives
exactly our raw outputs; the side-by-side table says what was measured."""

import builtins

import numpy as np
import paddle
import pytest

from config import load_config
from tools.deploy.benchmark import fixture_weights
from tools.dev import ppdet_compare
from tools.dev.ppdet_compare import PPDetUnavailable, SideBySide
from tools.files import repo_path


def ppdet_or_skip():
    try:
        import ppdet  # noqa: F401
    except Exception as err:
        pytest.skip(f"PaddleDetection 2.6 not importable: {err}")


@pytest.mark.parametrize("number", [2, 3])
def test_ppdet_twin_is_filled_with_our_weights_and_agrees_exactly(tmp_path, number):
    ppdet_or_skip()
    cfg = load_config(number)
    weights = fixture_weights(cfg, str(tmp_path))
    ours, theirs = ppdet_compare.build_pair(cfg, weights)
    # An input that is no multiple of anything convenient (padded to 32 as our loop pads).
    image = paddle.to_tensor(np.random.RandomState(1).normal(0, 1, (1, 3, 96, 160))
                             .astype("float32"))
    mask_rel, kernel_rel = ppdet_compare.agreement(ppdet_compare.forward_ours(ours, image),
                                                   ppdet_compare.forward_ppdet(theirs, image))
    assert mask_rel == 0.0 and kernel_rel == 0.0


def test_a_tensor_left_unfilled_is_named():
    cfg = load_config(2)
    with pytest.raises(KeyError, match="our weights have no"):
        ppdet_compare.ppdet_state(cfg, {}, {})


def test_missing_ppdet_is_one_line_saying_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_ppdet(name, *args, **kwargs):
        if name == "ppdet" or name.startswith("ppdet."):
            raise ImportError("No module named 'ppdet'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ppdet)
    with pytest.raises(PPDetUnavailable, match="requirements-dev.txt"):
        ppdet_compare.import_ppdet()


def test_config_without_a_ppdet_twin_is_refused(tmp_path):
    ppdet_or_skip()
    cfg = load_config(1)
    with pytest.raises(PPDetUnavailable, match="no model with the architecture of config 1"):
        ppdet_compare.build_pair(cfg, str(tmp_path / "unused.pdparams"))


def test_table_reports_ratios_and_the_as_shipped_time():
    side = SideBySide("a.png", (512, 864), (0.0, 0.0), {1: (4.0, 6.0), 2: (2.0, 3.5)},
                      "2.6.0", as_shipped=9.0)
    text = side.table(dygraph=([0.5, 0.4, 0.6], {}))
    assert "1.50x" in text and "1.75x" in text
    assert "as shipped (fresh process, 1 thread, no MKL_DEBUG_CPU_TYPE): 9.00 s" in text
    assert "2.00 s per image = 0.22 x" in text  # 1 / 0.5 images/s against 9.0 s


def test_as_shipped_is_timed_whenever_this_process_set_the_fast_path(tmp_path, monkeypatch):
    # The entry points print and empty runtime.startup_notes before the benchmark gets
    # here; what decides is that this process, not the user, set MKL_DEBUG_CPU_TYPE.
    ppdet_or_skip()
    from tools import runtime

    cfg = load_config(2, ["test_size=(64, 96)"])
    weights = fixture_weights(cfg, str(tmp_path))
    monkeypatch.setattr(ppdet_compare, "time_side_by_side",
                        lambda *args: {1: (1.0, 2.0)})
    calls = []
    monkeypatch.setattr(ppdet_compare, "time_as_shipped",
                        lambda *args: calls.append(args) or 7.0)
    monkeypatch.setattr(runtime, "startup_notes", [])
    image = repo_path("images/test/chelsea.png")
    for fast_path_set, expected in ((False, None), (True, 7.0)):
        monkeypatch.setattr(runtime, "fast_path_set", fast_path_set)
        side = ppdet_compare.compare_ppdet(cfg, weights, image, 1)
        assert side.as_shipped == expected
    assert len(calls) == 1


def test_as_shipped_process_runs_without_the_fast_path(tmp_path, monkeypatch):
    ppdet_or_skip()
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "5")  # as this process set it for itself
    cfg = load_config(2, ["test_size=(64, 96)"])
    weights = fixture_weights(cfg, str(tmp_path))
    batch = np.random.RandomState(2).normal(0, 1, (1, 3, 64, 96)).astype("float32")
    seconds = ppdet_compare.time_as_shipped(cfg, weights, batch, 1)
    assert seconds > 0
