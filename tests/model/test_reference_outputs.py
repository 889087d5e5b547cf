"""Our network and post-processing against outputs of the reference implementations.

tests/fixtures/goldens/*.npz were produced by running the ORIGINAL code -- WXinlong/SOLO's
mmdet 1.0 SOLOv2 on CPU PyTorch, and PaddleDetection 2.6's SOLOv2 -- with the fixture
weights of tools/weights/standin.py on the input below, keeping every k-th element of each
raw output (k stored alongside). Here the same weights go through our converter and model.

static_light512 covers config 2, whose published file comes from PaddleDetection 0.5 (static
graph), which cannot run here. Its golden is PaddleDetection 2.6's dygraph SOLOv2 built with
config 2's architecture (ResNet50-vd, DCNv2 in res3-res5 and in the last head tower conv,
3 stacked convs, 128-channel kernels and mask features), given the fixture weights in the
static file's layout after our converter; the static file has no bias on the head's DCN
convs, so PaddleDetection 2.6's got zeros.
"""

import os

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from config import load_config
from model import build_model, build_postprocess
from model.postprocess import points_nms
from tools.weights.convert import convert_file
from tools.weights.load import load_weights
from tools.weights.standin import (
    STATIC_LIGHT_512,
    make_state,
    ppdet_static_keys,
    read_keys,
    save_fluid_pickle,
    save_mmcv_pth,
    save_paddle2_pdparams,
)

GOLDENS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "goldens")
CASES = [
    ("solo_r50", 0, "solo_solov2_r50_fpn_8gpu_3x.keys", "pth"),
    ("solo_light448", 1, "solo_solov2_light_448_r50_fpn_8gpu_3x.keys", "pth"),
    ("ppdet2_r50", 0, "ppdet2_solov2_r50_fpn_3x_coco.keys", "pdparams"),
    ("ppdet2_enhance", 3, "ppdet2_solov2_r50_enhance_coco.keys", "pdparams"),
    ("static_light512", 2, None, "static"),
]


def reference_input():
    return np.random.RandomState(0).normal(0, 1, (1, 3, 160, 256)).astype("float32")


def converted_model(tmp_path, number, keys, container):
    if container == "pth":
        pytest.importorskip("torch")
        source = str(tmp_path / "source.pth")
        save_mmcv_pth(source, make_state(read_keys(keys)), legacy=True)
    elif container == "static":
        source = str(tmp_path / "source.pdparams")
        save_fluid_pickle(source, make_state(ppdet_static_keys(**STATIC_LIGHT_512)))
    else:
        source = str(tmp_path / "source.pdparams")
        save_paddle2_pdparams(source, make_state(read_keys(keys)))
    cfg = load_config(number)
    convert_file(cfg, source, str(tmp_path / "converted.pdparams"))
    model = build_model(cfg)
    load_weights(model, str(tmp_path / "converted.pdparams"), cfg)
    model.eval()
    return cfg, model


def relative_error(ours, golden):
    return float(np.abs(ours - golden).max() / np.abs(golden).max())


@pytest.mark.parametrize("golden, number, keys, container", CASES)
def test_raw_head_outputs_match_reference(tmp_path, golden, number, keys, container):
    ref = np.load(os.path.join(GOLDENS, f"{golden}.npz"))
    cfg, model = converted_model(tmp_path, number, keys, container)
    x = paddle.to_tensor(reference_input())
    with paddle.no_grad():
        cates, kernels, mask_feat = model.head_outputs(x)
    ours = {"mask_feat": mask_feat.numpy()}
    for level in range(5):
        ours[f"cate_{level}"] = cates[level].numpy()
        ours[f"cate_eval_{level}"] = points_nms(F.sigmoid(cates[level])).transpose(
            [0, 2, 3, 1]).numpy()
        ours[f"kernel_{level}"] = kernels[level].numpy()
    compared = 0
    for name in ref.files:
        if name not in ours:
            continue
        assert tuple(ref[name + "__shape"]) == ours[name].shape, name
        sample = ours[name].ravel()[::int(ref[name + "__step"])]
        assert relative_error(sample, ref[name]) < 1e-4, name
        compared += 1
    assert compared == 11


def _match(ours, ref_labels, ref_scores, ref_masks):
    """Pair every reference detection with an unused one of ours: same class, score within
    5e-3, mask IoU >= 0.99 (two empty masks count as equal). Near-tied scores of one class
    may swap order between float implementations, and Matrix NMS decays depend on that
    order, hence matching rather than index-by-index equality."""
    unused = set(range(len(ours["scores"])))
    for label, score, mask in zip(ref_labels, ref_scores, ref_masks):
        best, best_iou = None, -1.0
        for i in unused:
            if ours["labels"][i] != label or abs(ours["scores"][i] - score) > 5e-3:
                continue
            union = (ours["masks"][i] | mask).sum()
            iou = 1.0 if union == 0 else (ours["masks"][i] & mask).sum() / union
            if iou > best_iou:
                best, best_iou = i, iou
        assert best is not None and best_iou >= 0.99, (label, score, best_iou)
        unused.remove(best)
    assert not unused


@pytest.mark.parametrize("golden, number, keys, container", CASES[:2])
def test_masks_match_reference_post_processing(tmp_path, golden, number, keys, container):
    ref = np.load(os.path.join(GOLDENS, f"{golden}.npz"))
    cfg, model = converted_model(tmp_path, number, keys, container)
    with paddle.no_grad():
        outputs = model(paddle.to_tensor(reference_input()))
    crop, ori = tuple(ref["img_shape"]), tuple(ref["ori_shape"])
    ours = build_postprocess(cfg)(outputs, [crop], [ori])[0]
    shape = tuple(ref["seg_masks_shape"])
    ref_masks = np.unpackbits(ref["seg_masks_packed"], axis=-1, count=shape[-1]).astype(bool)
    assert ours["masks"].shape == ref_masks.shape == (100,) + ori
    # Most detections agree exactly, position by position.
    same = np.mean(ours["labels"] == ref["seg_labels"])
    assert same > 0.9
    _match(ours, ref["seg_labels"], ref["seg_scores"], ref_masks)
