"""The top-level 1_*2paddle.py scripts on files in the real published containers."""

import os
import runpy
import sys

import numpy as np
import pytest

from tools.weights import standin as fx
from tools.weights.files import load_pdparams

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script, *args):
    """Run a converter script as ``python script args``; returns its exit code."""
    argv = sys.argv
    sys.argv = [script, *args]
    try:
        runpy.run_path(os.path.join(ROOT, script), run_name="__main__")
    except SystemExit as exit_:
        return exit_.code
    finally:
        sys.argv = argv
    return 0


def solo(keys, legacy):
    def write(path, state):
        pytest.importorskip("torch")
        fx.save_mmcv_pth(path, state, legacy=legacy)
    return fx.read_keys(keys), write


CASES = {
    "solo_r50": ("1_solov2_r50_fpn_8gpu_3x2paddle.py", "SOLOv2_R50_3x.pth",
                 *solo("solo_solov2_r50_fpn_8gpu_3x.keys", legacy=False), "mmcv"),
    "solo_light448_legacy": ("1_solov2_light_448_r50_fpn_8gpu_3x2paddle.py",
                             "SOLOv2_LIGHT_448_R50_3x.pth",
                             *solo("solo_solov2_light_448_r50_fpn_8gpu_3x.keys", legacy=True),
                             "mmcv"),
    "static_r50_py2": ("1_paddle_solov2_r50_fpn_8gpu_3x2paddle.py", "solov2_r50_fpn_3x.pdparams",
                       fx.ppdet_static_keys(**fx.STATIC_R50),
                       lambda p, s: fx.save_fluid_pickle(p, s, py2=True), "ppdet_static"),
    "static_light512": ("1_paddle_solov2_light_r50_vd_fpn_dcn_512_3x2paddle.py",
                        "solov2_light_r50_vd_fpn_dcn_512_3x.pdparams",
                        fx.ppdet_static_keys(**fx.STATIC_LIGHT_512), fx.save_fluid_pickle,
                        "ppdet_static"),
    "ppdet2_r50": ("1_paddle_solov2_r50_fpn_8gpu_3x2paddle.py", "solov2_r50_fpn_3x_coco.pdparams",
                   fx.read_keys("ppdet2_solov2_r50_fpn_3x_coco.keys"), fx.save_paddle2_pdparams,
                   "ppdet2"),
    "ppdet2_enhance": ("1_paddle_solov2_r50_enhance_coco2paddle.py",
                       "solov2_r50_enhance_coco.pdparams",
                       fx.read_keys("ppdet2_solov2_r50_enhance_coco.keys"),
                       fx.save_paddle2_pdparams, "ppdet2"),
}

# Hand-checked correspondences: source name -> where the value must land.
SPOT_CHECKS = {
    "solo_r50": {
        "backbone.conv1.weight": "backbone.stem.0.conv.weight",
        "backbone.layer3.5.bn2.running_var": "backbone.stages.2.5.conv2.norm._variance",
        "backbone.layer2.0.downsample.0.weight": "backbone.stages.1.0.shortcut.proj.conv.weight",
        "backbone.layer4.0.downsample.1.bias": "backbone.stages.3.0.shortcut.proj.norm.bias",
        "neck.lateral_convs.3.conv.bias": "neck.lateral_convs.3.bias",
        "neck.fpn_convs.0.conv.weight": "neck.fpn_convs.0.weight",
        "bbox_head.kernel_convs.0.gn.weight": "head.kernel_convs.0.norm.weight",
        "bbox_head.cate_convs.3.conv.weight": "head.cate_convs.3.conv.weight",
        "bbox_head.solo_cate.weight": "head.solo_cate.weight",
        "mask_feat_head.convs_all_levels.3.conv2.conv.weight":
            "mask_feat_head.convs_all_levels.3.2.conv.weight",
        "mask_feat_head.conv_pred.0.gn.bias": "mask_feat_head.conv_pred.norm.bias",
    },
    "static_light512": {
        "conv1_2_weights": "backbone.stem.1.conv.weight",
        "bnv1_3_variance": "backbone.stem.2.norm._variance",
        "res2c_branch2b_weights": "backbone.stages.0.2.conv2.conv.weight",
        "res4f_branch2b_weights": "backbone.stages.2.5.conv2.conv.conv.weight",
        "res4f_branch2b_conv_offset.w_0": "backbone.stages.2.5.conv2.conv.conv_offset.weight",
        "bn5a_branch1_scale": "backbone.stages.3.0.shortcut.proj.norm.weight",
        "fpn_inner_res5_sum_w": "neck.lateral_convs.3.weight",
        "fpn_inner_res2_sum_lateral_b": "neck.lateral_convs.0.bias",
        "fpn_res3_sum_w": "neck.fpn_convs.1.weight",
        "bbox_head.kernel_convs.2_weights": "head.kernel_convs.2.conv.conv.weight",
        "bbox_head.kernel_convs.2_conv_offset.b_0": "head.kernel_convs.2.conv.conv_offset.bias",
        "bbox_head.cate_convs.1.gn_offset": "head.cate_convs.1.norm.bias",
        "mask_feat_head.convs_all_levels.2.conv1_weights":
            "mask_feat_head.convs_all_levels.2.1.conv.weight",
        "mask_feat_head.conv_pred.0.gn_scale": "mask_feat_head.conv_pred.norm.weight",
    },
    "ppdet2_enhance": {
        "backbone.conv1.conv1_1.norm._mean": "backbone.stem.0.norm._mean",
        "backbone.res2.res2a.short.conv.weight": "backbone.stages.0.0.shortcut.proj.conv.weight",
        "backbone.res3.res3a.short.conv.conv.weight":
            "backbone.stages.1.0.shortcut.proj.conv.weight",
        "backbone.res5.res5c.branch2b.conv_offset.bias":
            "backbone.stages.3.2.conv2.conv.conv_offset.bias",
        "neck.fpn_inner_res4_sum_lateral.weight": "neck.lateral_convs.2.weight",
        "solov2_head.bbox_head.kernel_convs.2.conv.conv_dcn.bias":
            "head.kernel_convs.2.conv.conv.bias",
        "solov2_head.bbox_head.solo_cate.bias": "head.solo_cate.bias",
        "solov2_head.solo_cate.bias": "head.solo_cate.bias",
        "mask_head.conv_pre_feat3.mask_feat_head.convs_all_levels.3.conv0.conv.conv_offset.weight":
            "mask_feat_head.convs_all_levels.3.0.conv.conv_offset.weight",
        "mask_head.mask_feat_head.conv_pred.0.conv.conv_dcn.weight":
            "mask_feat_head.conv_pred.conv.conv.weight",
    },
}


def fingerprints(arrays):
    return {(a.shape, a.tobytes()): name for name, a in arrays.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_converter_uses_every_tensor_exactly_once(tmp_path, monkeypatch, case):
    script, default_source, keys, write, preprocess = CASES[case]
    state = fx.make_state(keys)
    monkeypatch.chdir(tmp_path)
    write(default_source, state)
    # Scripts find their default file name; the 2.x R50 file is passed explicitly.
    args = [default_source] if case == "ppdet2_r50" else []
    assert run_script(script, *args, "--output", "out.pdparams") == 0
    out, meta = load_pdparams("out.pdparams")
    assert meta["preprocess"] == preprocess and meta["source"] == default_source

    # Every output tensor is a verbatim copy of one source tensor, and every source tensor
    # that carries weights was used once (values are unique per name). BatchNorm's update
    # counter and the second copy of PaddleDetection 2.x's twin tensors carry none.
    carriers = {k: np.asarray(v) for k, v in state.items()
                if not k.endswith("num_batches_tracked")
                and not any(k.startswith(t) for t in fx.PPDET2_TWINS)}
    sources = fingerprints(carriers)
    used = [sources[(v.shape, v.tobytes())] for v in out.values()]
    assert len(used) == len(set(used)) == len(carriers)
    for source_name, ours in SPOT_CHECKS.get(case, {}).items():
        np.testing.assert_array_equal(out[ours], state[source_name])


def test_ssld_folder_and_tar(tmp_path, monkeypatch):
    state = fx.make_state(fx.ssld_keys())
    monkeypatch.chdir(tmp_path)
    fx.save_tensor_folder("ResNet50_vd_ssld_pretrained", state)
    fx.make_tar("ResNet50_vd_ssld_pretrained", "ResNet50_vd_ssld_pretrained.tar")
    assert run_script("1_paddle_r50vd_ssld_2paddle.py") == 0  # default: the folder
    from_folder, _ = load_pdparams("dygraph_r50vd_ssld.pdparams")
    assert run_script("1_paddle_r50vd_ssld_2paddle.py", "ResNet50_vd_ssld_pretrained.tar",
                      "--output", "from_tar.pdparams") == 0
    from_tar, _ = load_pdparams("from_tar.pdparams")
    assert from_folder.keys() == from_tar.keys()
    # Backbone only, no DCN offset predictors (they have no ImageNet counterpart).
    assert all(k.startswith("backbone.") and "conv_offset" not in k for k in from_folder)
    assert len(from_folder) == len(state) - 2  # all but the classifier fc_0.w_0 / fc_0.b_0
    np.testing.assert_array_equal(from_tar["backbone.stem.0.conv.weight"], state["conv1_1_weights"])
    np.testing.assert_array_equal(from_folder["backbone.stages.1.0.conv2.conv.conv.weight"],
                                  state["res3a_branch2b_weights"])
    np.testing.assert_array_equal(from_folder["backbone.stages.3.2.conv3.norm._variance"],
                                  state["bn5c_branch2c_variance"])


def failing(tmp_path, capsys, script, source, *args):
    """Run a conversion that must fail: exit 1, nothing written, the reason on stderr."""
    output = tmp_path / "out.pdparams"
    code = run_script(script, str(source), "--output", str(output), *args)
    err = capsys.readouterr().err
    assert code == 1 and not output.exists()
    assert "No output file was written" in err
    return err


STATIC = "1_paddle_solov2_light_r50_vd_fpn_dcn_512_3x2paddle.py"


def static_light(tmp_path, edit=None):
    state = fx.make_state(fx.ppdet_static_keys(**fx.STATIC_LIGHT_512))
    if edit:
        edit(state)
    path = tmp_path / "source.pdparams"
    fx.save_fluid_pickle(str(path), state)
    return path


def test_missing_tensor_is_named(tmp_path, capsys):
    path = static_light(tmp_path, lambda s: s.pop("res4c_branch2b_conv_offset.w_0"))
    err = failing(tmp_path, capsys, STATIC, path)
    assert "missing from the source (1)" in err and "res4c_branch2b_conv_offset.w_0" in err


def test_unexpected_tensor_is_named(tmp_path, capsys):
    path = static_light(tmp_path, lambda s: s.update(extra_thing=np.zeros(3, np.float32)))
    err = failing(tmp_path, capsys, STATIC, path)
    assert "in the source but not used (1)" in err and "extra_thing" in err


def test_misshaped_tensor_is_named_and_num_classes_override_fixes_it(tmp_path, capsys):
    def three_classes(state):
        state["bbox_head.solo_cate.weight"] = state["bbox_head.solo_cate.weight"][:3]
        state["bbox_head.solo_cate.bias"] = state["bbox_head.solo_cate.bias"][:3]

    path = static_light(tmp_path, three_classes)
    err = failing(tmp_path, capsys, STATIC, path)
    assert "shape mismatch (2)" in err and "bbox_head.solo_cate.weight [3, 256, 3, 3]" in err
    assert run_script(STATIC, str(path), "--output", str(tmp_path / "ok.pdparams"),
                      "num_classes=3") == 0
    assert load_pdparams(str(tmp_path / "ok.pdparams"))[0]["head.solo_cate.bias"].shape == (3,)


def test_file_for_another_config_is_refused(tmp_path, capsys):
    path = static_light(tmp_path)
    err = failing(tmp_path, capsys, "1_paddle_solov2_r50_fpn_8gpu_3x2paddle.py", path)
    assert "res3a_branch2b_conv_offset.w_0" in err  # DCN tensors config 0 has no place for
    pytest.importorskip("torch")
    pth = tmp_path / "solo.pth"
    fx.save_mmcv_pth(str(pth), fx.make_state(fx.read_keys("solo_solov2_r50_fpn_8gpu_3x.keys")))
    err = failing(tmp_path, capsys, "1_solov2_r50_fpn_8gpu_3x2paddle.py", pth, "--config=2")
    assert "pick the matching --config" in err


def test_truncated_file(tmp_path, capsys):
    path = static_light(tmp_path)
    path.write_bytes(path.read_bytes()[:1000])
    assert "truncated" in failing(tmp_path, capsys, STATIC, path)


def test_disagreeing_twins_are_refused(tmp_path, capsys):
    state = fx.make_state(fx.read_keys("ppdet2_solov2_r50_fpn_3x_coco.keys"))
    state["solov2_head.solo_cate.bias"] = state["solov2_head.solo_cate.bias"] + 1
    path = tmp_path / "p2.pdparams"
    fx.save_paddle2_pdparams(str(path), state)
    err = failing(tmp_path, capsys, "1_paddle_solov2_r50_fpn_8gpu_3x2paddle.py", path)
    assert "solov2_head.solo_cate.bias differs from its alias" in err


def test_booby_trapped_file_is_refused_and_never_run(tmp_path, capsys):
    from tests.tools.weights.test_files import Payload

    marker = tmp_path / "pwned"
    path = static_light(tmp_path, lambda s: s.update(trap=Payload(str(marker))))
    assert "refusing" in failing(tmp_path, capsys, STATIC, path)
    assert not marker.exists()


def test_failed_conversion_keeps_an_existing_output(tmp_path, capsys):
    output = tmp_path / "dygraph.pdparams"
    output.write_bytes(b"previous result")
    path = static_light(tmp_path, lambda s: s.pop("fpn_res2_sum_b"))
    assert run_script(STATIC, str(path), "--output", str(output)) == 1
    assert output.read_bytes() == b"previous result"
