"""SOLOv2: backbone -> FPN -> (kernel + category head, mask feature head)."""

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .fpn import FPN
from .head import SOLOv2Head
from .mask_feat_head import MaskFeatHead
from .postprocess import cell_strides, get_seg_single, points_nms
from .resnet import ResNet50


class SOLOv2(nn.Layer):
    """The network. ``criterion`` (training loss) is attached by the training code.

    forward(images, targets=None):
        images: [N, 3, H, W] normalised RGB, H and W multiples of 32.
        training with targets -> dict of scalar losses from ``criterion``.
        otherwise -> dict(
            cate_scores [N, L, C]: sigmoid category scores after points NMS,
            kernels     [N, L, E]: dynamic 1x1 kernels,
            mask_feat   [N, E, H/4, W/4]: unified mask feature),
        where L = sum(S^2) over the five grids, cells in level order, row-major.
    """

    def __init__(self, backbone, neck, head, mask_feat_head, criterion=None):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.mask_feat_head = mask_feat_head
        self.criterion = criterion

    def head_outputs(self, images):
        """Raw outputs: (cate_logits, kernels, mask_feat) with cate_logits and kernels lists
        over levels of [N, C, S, S] and [N, E, S, S], mask_feat [N, E, H/4, W/4].
        These are what the reference heads return before any post-processing."""
        features = self.neck(self.backbone(images))
        cate_logits, kernels = self.head(features)
        mask_feat = self.mask_feat_head(features[:4])
        return cate_logits, kernels, mask_feat

    def forward(self, images, targets=None):
        cate_logits, kernels, mask_feat = self.head_outputs(images)
        if self.training and targets is not None:
            if self.criterion is None:
                raise RuntimeError("SOLOv2 has no criterion attached; training code sets one")
            return self.criterion(cate_logits, kernels, mask_feat, targets)
        n = images.shape[0]
        cate_scores = [points_nms(F.sigmoid(c)).transpose([0, 2, 3, 1]).reshape([n, -1, c.shape[1]])
                       for c in cate_logits]
        kernels = [k.transpose([0, 2, 3, 1]).reshape([n, -1, k.shape[1]]) for k in kernels]
        return {"cate_scores": paddle.concat(cate_scores, axis=1),
                "kernels": paddle.concat(kernels, axis=1),
                "mask_feat": mask_feat}


class PostProcess:
    """Turns SOLOv2 eval outputs into per-image masks, labels, scores and boxes.

    __call__(outputs, crop_hws, ori_hws) -> list of dicts (see get_seg_single), one per
    image; crop_hws / ori_hws give each image's resized and original (height, width).
    """

    def __init__(self, test_cfg, num_grids, strides):
        self.cfg = test_cfg
        self.cell_strides = paddle.to_tensor(cell_strides(num_grids, strides))

    def __call__(self, outputs, crop_hws, ori_hws):
        results = []
        for i, (crop_hw, ori_hw) in enumerate(zip(crop_hws, ori_hws)):
            results.append(get_seg_single(
                outputs["cate_scores"][i], outputs["kernels"][i], outputs["mask_feat"][i],
                self.cell_strides, crop_hw, ori_hw, self.cfg))
        return results


def build_model(cfg):
    """SOLOv2 for a config (see config/base.py for the fields)."""
    backbone = ResNet50(cfg.backbone_variant, cfg.backbone_dcn_stages)
    neck = FPN(channels=cfg.fpn_channels)
    head = SOLOv2Head(num_classes=cfg.num_classes, in_channels=cfg.fpn_channels,
                      seg_feat_channels=cfg.head_seg_feat_channels,
                      stacked_convs=cfg.head_stacked_convs,
                      kernel_channels=cfg.mask_feat_channels, num_grids=cfg.num_grids,
                      dcn_convs=cfg.head_dcn_convs, dcn_bias=cfg.head_dcn_bias,
                      drop_block=cfg.drop_block)
    mask_feat_head = MaskFeatHead(in_channels=cfg.fpn_channels,
                                  mid_channels=cfg.mask_feat_mid_channels,
                                  out_channels=cfg.mask_feat_channels, dcn=cfg.mask_feat_dcn)
    return SOLOv2(backbone, neck, head, mask_feat_head)


def build_postprocess(cfg):
    return PostProcess(cfg.test_cfg, cfg.num_grids, cfg.strides)
