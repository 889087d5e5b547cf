"""Unified mask feature branch of SOLOv2 (Wang et al. 2020, Sec. 3.2.2, Fig. 4).

Level i of P2..P5 goes through i rounds of (3x3 conv, GN, ReLU, 2x bilinear upsample) -- one
plain conv for P2 -- so all four land at stride 4; P5 gets the CoordConv channels first.
The sum passes a 1x1 conv + GN + ReLU that outputs the E channels the dynamic kernels use.
"""

import paddle
import paddle.nn as nn

from .head import bilinear
from .layers import ConvNorm, coord_features, init_conv_weights


class MaskFeatHead(nn.Layer):
    """Args:
        in_channels: FPN width.
        mid_channels: width of the per-level towers (128 in every published model).
        out_channels: E, the mask feature channels.
        dcn: every conv is DCNv2 with a bias (PaddleDetection 2.x "enhance").

    forward([P2, P3, P4, P5]) -> mask feature [N, E, H/4, W/4]
    """

    def __init__(self, in_channels=256, mid_channels=128, out_channels=256, dcn=False):
        super().__init__()
        self.convs_all_levels = nn.LayerList()
        self.convs_all_levels.append(nn.LayerList(
            [ConvNorm(in_channels, mid_channels, 3, norm="gn", dcn=dcn, bias=dcn)]))
        for level in range(1, 4):
            convs = nn.LayerList()
            for j in range(level):
                if j == 0:
                    # CoordConv on the coarsest level only [SOLO MaskFeatHead, i == 3].
                    chn = in_channels + 2 if level == 3 else in_channels
                else:
                    chn = mid_channels
                convs.append(ConvNorm(chn, mid_channels, 3, norm="gn", dcn=dcn, bias=dcn))
            self.convs_all_levels.append(convs)
        self.conv_pred = ConvNorm(mid_channels, out_channels, 1, norm="gn", dcn=dcn, bias=dcn)
        init_conv_weights(self)

    def forward(self, features):
        total = None
        for level, (x, convs) in enumerate(zip(features[:4], self.convs_all_levels)):
            if level == 3:
                x = paddle.concat([x, coord_features(x)], axis=1)
            for j, conv in enumerate(convs):
                x = conv(x)
                if level > 0:
                    # 2x up to the next finer level's size: the reference's scale_factor=2
                    # (sizes halve exactly), written as a size because paddle2onnx cannot
                    # read a resize scale from a Paddle 3 model (see tools/deploy/export.py).
                    x = bilinear(x, size=features[level - 1 - j].shape[-2:])
            total = x if total is None else total + x
        return self.conv_pred(total)

