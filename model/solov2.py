"""SOLOv2: backbone -> FPN -> (kernel + category head, mask feature head).

The network only. The loss (model/loss.py) takes :meth:`SOLOv2.head_outputs`; the
post-processing (model/postprocess.py) takes what :meth:`SOLOv2.forward` returns; the layers
an export saves are in model/export.py.
"""

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .fpn import FPN
from .head import SOLOv2Head
from .mask_feat_head import MaskFeatHead
from .postprocess import points_nms
from .resnet import ResNet50


class SOLOv2(nn.Layer):
    """The network.

    forward(images) -> dict(
            cate_scores [N, L, C]: sigmoid category scores after points NMS,
            kernels     [N, L, E]: dynamic 1x1 kernels,
            mask_feat   [N, E, H/4, W/4]: unified mask feature),
        images: [N, 3, H, W] normalised RGB, H and W multiples of 32; L = sum(S^2) over
        the five grids (S = 40, 36, 24, 16, 12 for every published config), cells in level
        order, row-major; C = num_classes; E = mask_feat_channels.
    Training calls :meth:`head_outputs` and gives them to the loss (model/loss.py), as
    DETR's criterion takes the model's outputs; forward is for prediction only.
    """

    def __init__(self, backbone, neck, head, mask_feat_head):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.mask_feat_head = mask_feat_head

    def head_outputs(self, images):
        """Raw outputs: (cate_logits, kernels, mask_feat) with cate_logits and kernels lists
        over levels of [N, C, S, S] and [N, E, S, S], mask_feat [N, E, H/4, W/4].
        These are what the reference heads return before any post-processing."""
        features = self.neck(self.backbone(images))
        cate_logits, kernels = self.head(features)
        mask_feat = self.mask_feat_head(features[:4])
        return cate_logits, kernels, mask_feat

    def forward(self, images):
        cate_logits, kernels, mask_feat = self.head_outputs(images)
        n = images.shape[0]
        cate_scores = [points_nms(F.sigmoid(c)).transpose([0, 2, 3, 1]).reshape([n, -1, c.shape[1]])
                       for c in cate_logits]
        kernels = [k.transpose([0, 2, 3, 1]).reshape([n, -1, k.shape[1]]) for k in kernels]
        return {"cate_scores": paddle.concat(cate_scores, axis=1),
                "kernels": paddle.concat(kernels, axis=1),
                "mask_feat": mask_feat}


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
