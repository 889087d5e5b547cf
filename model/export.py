"""The layers tools/deploy saves as inference graphs: the network with tuple outputs, the
post-processing as tensor ops (model/postprocess_graph.py), and the two in one layer."""

import paddle
import paddle.nn as nn

from .postprocess import cell_strides
from .postprocess_graph import segment


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
    """Network and post-processing in one layer: what tools/deploy/export.py saves.

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
