"""Feature Pyramid Network (Lin et al. 2017) as SOLOv2 uses it.

1x1 lateral convs, top-down pathway with 2x nearest upsampling, 3x3 output convs (all with
bias, no norm), and P6 as a stride-2 max-pool (kernel 1) of P5 (mmdet FPN without extra
convs; PaddleDetection's ``_subsampled_2x`` level). For an exact 2x upsample the nearest
rules of PyTorch (floor) and of Paddle's old align_corners resize agree, so one op serves
every weight source.
"""

import paddle.nn as nn
import paddle.nn.functional as F


class FPN(nn.Layer):
    """forward([C2, C3, C4, C5]) -> [P2, P3, P4, P5, P6], each [N, channels, H/2^k, W/2^k]."""

    def __init__(self, in_channels=(256, 512, 1024, 2048), channels=256):
        super().__init__()
        self.lateral_convs = nn.LayerList([nn.Conv2D(c, channels, 1) for c in in_channels])
        self.fpn_convs = nn.LayerList(
            [nn.Conv2D(channels, channels, 3, padding=1) for _ in in_channels])

    def forward(self, features):
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, features)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest")
        outputs = [conv(lateral) for conv, lateral in zip(self.fpn_convs, laterals)]
        outputs.append(F.max_pool2d(outputs[-1], 1, stride=2))
        return outputs
