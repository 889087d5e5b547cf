"""SOLOv2 kernel and category branches (Wang et al. 2020, Sec. 3 and Fig. 3).

Each FPN level is resized to an S x S grid. The category branch predicts, per grid cell, a
score for every class; the kernel branch predicts the E weights of a 1x1 dynamic conv that,
applied to the unified mask feature, segments the instance centred in that cell.
The two towers are shared across levels (same parameters at every level).
"""

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .layers import ConvNorm, DropBlock, coord_features, init_conv_weights


def bilinear(x, size=None, scale_factor=None):
    """Bilinear resize with half-pixel centres (PyTorch align_corners=False, Paddle
    align_mode=0). Every reference implementation resizes this way; it decides whether
    published weights reproduce their AP."""
    return F.interpolate(x, size=size, scale_factor=scale_factor, mode="bilinear",
                         align_corners=False, align_mode=0)


class SOLOv2Head(nn.Layer):
    """Args:
        num_classes: category channels (80 on COCO).
        in_channels: FPN width.
        seg_feat_channels: tower width.
        stacked_convs: tower depth.
        kernel_channels: E, channels of the mask feature the kernels are applied to.
        num_grids: S per level.
        dcn_convs: tower conv indices that are DCNv2; dcn_bias: whether those have a bias.
        drop_block: DropBlock before the last conv of each tower (training only).
    """

    def __init__(self, num_classes=80, in_channels=256, seg_feat_channels=512,
                 stacked_convs=4, kernel_channels=256, num_grids=(40, 36, 24, 16, 12),
                 dcn_convs=(), dcn_bias=False, drop_block=False):
        super().__init__()
        self.num_classes = num_classes
        self.num_grids = tuple(num_grids)
        self.kernel_convs = nn.LayerList()
        self.cate_convs = nn.LayerList()
        for i in range(stacked_convs):
            dcn = i in dcn_convs
            # The kernel branch sees the two CoordConv channels; the category branch not.
            kernel_in = in_channels + 2 if i == 0 else seg_feat_channels
            cate_in = in_channels if i == 0 else seg_feat_channels
            self.kernel_convs.append(ConvNorm(kernel_in, seg_feat_channels, 3, norm="gn",
                                              dcn=dcn, bias=dcn and dcn_bias))
            self.cate_convs.append(ConvNorm(cate_in, seg_feat_channels, 3, norm="gn",
                                            dcn=dcn, bias=dcn and dcn_bias))
        self.drop_block = DropBlock() if drop_block else None
        self.solo_kernel = nn.Conv2D(seg_feat_channels, kernel_channels, 3, padding=1)
        self.solo_cate = nn.Conv2D(seg_feat_channels, num_classes, 3, padding=1)
        self._init_weights()

    def _init_weights(self):
        # Tower and output convs ~ N(0, 0.01); the category bias starts at the focal-loss
        # prior -log((1 - 0.01) / 0.01) (Lin et al. 2017) [SOLO init_weights].
        init_conv_weights(self)
        prior = float(-np.log((1 - 0.01) / 0.01))
        nn.initializer.Constant(prior)(self.solo_cate.bias)
        nn.initializer.Constant(0.0)(self.solo_kernel.bias)

    @staticmethod
    def level_inputs(features):
        """P2..P6 -> the five head inputs: P2 halved to P3's stride, P6 resized to P5's
        size [SOLO split_feats]. Strides of the result: 8, 8, 16, 32, 32."""
        p2, p3, p4, p5, p6 = features
        # P2 halved has exactly P3's size (inputs are padded to multiples of 32), so resizing
        # to that size is the reference's scale_factor=0.5. A size rather than a scale is
        # what paddle2onnx can read (see tools/deploy/export.py).
        return [bilinear(p2, size=p3.shape[-2:]), p3, p4, p5,
                bilinear(p6, size=p5.shape[-2:])]

    def _tower(self, x, convs):
        for conv in convs:
            x = conv(x)
        if self.drop_block is not None:
            x = self.drop_block(x)
        return x

    def forward_level(self, x, grid):
        """x [N, C, H, W] -> (category logits [N, num_classes, S, S], kernels [N, E, S, S])."""
        with_coords = paddle.concat([x, coord_features(x)], axis=1)
        kernel_feat = bilinear(with_coords, size=(grid, grid))
        # Resizing is per channel, so slicing off the coordinates after the resize equals
        # resizing the plain feature.
        cate_feat = kernel_feat[:, :-2]
        kernels = self.solo_kernel(self._tower(kernel_feat, self.kernel_convs))
        cate = self.solo_cate(self._tower(cate_feat, self.cate_convs))
        return cate, kernels

    def forward(self, features):
        """features: FPN [P2..P6]. Returns (cate_logits, kernels), lists over the five levels
        of [N, num_classes, S, S] and [N, E, S, S] with S = num_grids[level]."""
        cates, kernels = [], []
        for x, grid in zip(self.level_inputs(features), self.num_grids):
            cate, kernel = self.forward_level(x, grid)
            cates.append(cate)
            kernels.append(kernel)
        return cates, kernels
