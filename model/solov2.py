"""SOLOv2: backbone -> FPN -> (kernel + category head, mask feature head)."""

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .fpn import FPN
from .head import SOLOv2Head
from .mask_feat_head import MaskFeatHead
from .postprocess import cell_strides, get_seg_single, points_nms
from .postprocess_graph import segment
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
    image; outputs are the network's (tensors or numpy arrays), crop_hws / ori_hws give
    each image's resized and original (height, width).
    """

    def __init__(self, test_cfg, num_grids, strides):
        self.cfg = test_cfg
        self.cell_strides = cell_strides(num_grids, strides)

    def __call__(self, outputs, crop_hws, ori_hws):
        arrays = [np.asarray(outputs[key]) for key in ("cate_scores", "kernels", "mask_feat")]
        return [get_seg_single(*(a[i] for a in arrays), self.cell_strides, crop_hw, ori_hw,
                               self.cfg)
                for i, (crop_hw, ori_hw) in enumerate(zip(crop_hws, ori_hws))]


class NetworkOutputs(nn.Layer):
    """SOLOv2 in eval mode with its outputs as a tuple, for saving as a graph:
    forward(image) -> (cate_scores [N, L, C], kernels [N, L, E], mask_feat [N, E, H/4, W/4])."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        outputs = self.model(image)
        return outputs["cate_scores"], outputs["kernels"], outputs["mask_feat"]


class SegmentLayer(nn.Layer):
    """:func:`model.postprocess_graph.segment` as a layer with exportable inputs:

    forward(cate_scores [1, L, C], kernels [1, L, E], mask_feat [1, E, h, w],
            im_shape [1, 2], scale_factor [1, 2]) -> (masks, labels, scores, boxes)

    im_shape: float32 (height, width) of the resized image inside the padding.
    scale_factor: float32 resized / original size, (y, x); the original size is recovered
    as round(im_shape / scale_factor), exact for the ratios the predictors pass.
    Outputs: masks [k, H0, W0] bool at the original size, labels [k] int64, scores [k]
    float32, boxes [k, 4] float32 (x0, y0, x1, y1, exclusive ends); k may be 0.
    """

    def __init__(self, test_cfg, num_grids, strides):
        super().__init__()
        self.cfg = test_cfg
        self.register_buffer("cell_strides",
                             paddle.to_tensor(cell_strides(num_grids, strides)))

    def forward(self, cate_scores, kernels, mask_feat, im_shape, scale_factor):
        crop_hw = im_shape[0].astype("int32")
        ori_hw = paddle.floor(im_shape[0] / scale_factor[0] + 0.5).astype("int32")
        return segment(cate_scores[0], kernels[0], mask_feat[0], self.cell_strides,
                       crop_hw, ori_hw, self.cfg)


class SOLOv2Inference(nn.Layer):
    """Network and post-processing in one layer: what tools/export_model.py saves.

    forward(image [1, 3, H, W], im_shape [1, 2], scale_factor [1, 2])
        -> (masks, labels, scores, boxes) as in :class:`SegmentLayer`.
    One image at a time, because each image's masks come out at its own original size.
    image is normalised and zero-padded (H, W multiples of 32).
    """

    def __init__(self, network, segment_layer):
        super().__init__()
        self.network = network
        self.segment = segment_layer

    def forward(self, image, im_shape, scale_factor):
        cate_scores, kernels, mask_feat = self.network(image)
        return self.segment(cate_scores, kernels, mask_feat, im_shape, scale_factor)


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


def build_inference_model(cfg, model, part="all"):
    """``model`` (weights loaded) as a layer to save: part 'all' (SOLOv2Inference),
    'network' (NetworkOutputs) or 'postprocess' (SegmentLayer); in eval mode."""
    model.eval()
    network = NetworkOutputs(model)
    segment_layer = SegmentLayer(cfg.test_cfg, cfg.num_grids, cfg.strides)
    layers = {"all": lambda: SOLOv2Inference(network, segment_layer),
              "network": lambda: network, "postprocess": lambda: segment_layer}
    if part not in layers:
        raise ValueError(f"part must be one of {sorted(layers)}, got {part!r}")
    layer = layers[part]()
    layer.eval()
    return layer
