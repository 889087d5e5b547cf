"""Building training from a config: the training forward, the loss, SyncBatchNorm."""

import numpy as np
import paddle
import pytest

from config import load_config
from model import build_model
from tools.data.targets import TargetCollator
from tools.training.build import HeadOutputs, build_criterion, build_training, use_sync_bn


def test_training_forward_is_head_outputs_and_the_loss_reaches_every_head():
    """What the trainer differentiates: HeadOutputs(model)(images) is model.head_outputs,
    and the loss on it gives the category and kernel outputs a gradient."""
    cfg = load_config(4)
    model = build_model(cfg)
    model.eval()
    images = paddle.to_tensor(np.random.RandomState(0).randn(1, 3, 64, 96).astype("float32"))
    net = HeadOutputs(model)
    cates, kernels, mask_feat = net(images)
    ref_cates, ref_kernels, ref_feat = model.head_outputs(images)
    np.testing.assert_array_equal(mask_feat.numpy(), ref_feat.numpy())
    for ours, ref in zip(cates + kernels, ref_cates + ref_kernels):
        np.testing.assert_array_equal(ours.numpy(), ref.numpy())
    assert [p.name for p in net.parameters()] == [p.name for p in model.parameters()]
    # Real targets for one square instance, as the loader's collator builds them.
    mask = np.zeros((1, 64, 96), np.uint8)
    mask[0, 10:40, 20:60] = 1
    batch = TargetCollator(cfg.num_grids, cfg.scale_ranges, cfg.sigma)(
        [{"image": images.numpy()[0], "masks": mask, "labels": np.array([1])}])
    targets = {"cate_labels": [paddle.to_tensor(c) for c in batch["cate_labels"]],
               "ins_index": [paddle.to_tensor(i) for i in batch["ins_index"]],
               "ins_masks": [paddle.to_tensor(m) for m in batch["ins_masks"]],
               "num_pos": paddle.to_tensor(batch["num_pos"])}
    assert int(batch["num_pos"][0]) > 0
    losses = build_criterion(cfg)(*net(images), targets)
    assert sorted(losses) == ["loss", "loss_cate", "loss_ins"]
    losses["loss"].backward()
    for layer in (model.head.solo_cate, model.head.solo_kernel):
        assert float(paddle.abs(layer.weight.grad).sum()) > 0


def test_sync_batchnorm_only_for_trained_norms_on_several_gpus(monkeypatch):
    cfg3, cfg2 = load_config(3), load_config(2)
    assert use_sync_bn(cfg3, 2, on_gpu=True)
    assert not use_sync_bn(cfg3, 1, on_gpu=True)      # one GPU: plain BatchNorm
    assert not use_sync_bn(cfg2, 4, on_gpu=True)      # frozen statistics: nothing to sync
    assert not use_sync_bn(cfg3, 2, on_gpu=False)     # no CPU kernel in Paddle
    # On a (pretended) GPU the backbone's BatchNorms become SyncBatchNorm.
    monkeypatch.setattr(paddle.device, "get_device", lambda: "gpu:0")
    cfg3 = load_config(3, ["num_classes=3", "train_cfg.model_path=None"])
    model, _, _, lr = build_training(cfg3, world_size=2, log=lambda m: None)
    kinds = {type(layer).__name__ for layer in model.backbone.sublayers()}
    assert "SyncBatchNorm" in kinds and "BatchNorm2D" not in kinds
    assert lr == pytest.approx(0.01 * 4 / 16)   # 2 processes x batch 2


def test_the_training_set_drops_images_too_elongated_for_the_config_sizes(tmp_path):
    import json

    import cv2

    from tests.fixtures.coco_data import voc_dataset
    from tools.training.build import build_train_set

    ann, image_dir, data = voc_dataset(str(tmp_path), copies=1)
    # 10 x 200 fits config 4's 128 / 192 resize (up to 192 / 8 = 24:1); 10 x 1000 does not.
    for image_id, width in ((50, 200), (51, 1000)):
        name = f"strip{width}.png"
        cv2.imwrite(f"{image_dir}/{name}", np.full((10, width, 3), 200, np.uint8))
        data["images"].append({"id": image_id, "file_name": name, "height": 10, "width": width})
        data["annotations"].append({
            "id": 100 + image_id, "image_id": image_id, "iscrowd": 0, "area": 40.0,
            "category_id": data["categories"][0]["id"], "bbox": [2, 2, 20, 4],
            "segmentation": [[2, 2, 22, 2, 22, 6, 2, 6]]})
    with open(ann, "w") as f:
        json.dump(data, f)
    cfg = load_config(4, [f"train_path={ann}", f"train_pre_path={image_dir}"])
    dataset = build_train_set(cfg)
    assert [r["image_id"] for r in dataset.records] == [1, 50]
    assert dataset.skipped["elongated"] == 1
