"""ResNet-50 backbone in the two variants the published SOLOv2 weights use.

'b' (He et al. 2016 as in torchvision / mmdet ``style='pytorch'``): 7x7 stem, stride in the
    3x3 conv of each bottleneck, 1x1 strided projection shortcut.
'd' (He et al. 2019, "Bag of Tricks"): three 3x3 convs in the stem, and the projection
    shortcut of res3-res5 becomes 2x2 average pooling (ceil mode) + a 1x1 stride-1 conv.

Output: C2..C5 at strides 4, 8, 16, 32 with 256, 512, 1024, 2048 channels.
"""

import paddle.nn as nn
import paddle.nn.functional as F

from tools.errors import ConfigError

from .layers import ConvNorm

STAGE_BLOCKS = (3, 4, 6, 3)  # ResNet-50
STAGE_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4


class Shortcut(nn.Layer):
    """Projection shortcut; ``pool`` switches on the ResNet-vd average pooling."""

    def __init__(self, in_channels, out_channels, stride, pool):
        super().__init__()
        self.pool = pool
        self.proj = ConvNorm(in_channels, out_channels, 1, stride=1 if pool else stride,
                             relu=False)

    def forward(self, x):
        if self.pool:
            x = F.avg_pool2d(x, 2, stride=2, ceil_mode=True, exclusive=True)
        return self.proj(x)


class Bottleneck(nn.Layer):
    def __init__(self, in_channels, width, stride, dcn, vd_shortcut):
        super().__init__()
        out_channels = width * EXPANSION
        self.conv1 = ConvNorm(in_channels, width, 1)
        self.conv2 = ConvNorm(width, width, 3, stride=stride, dcn=dcn)
        self.conv3 = ConvNorm(width, out_channels, 1, relu=False)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = Shortcut(in_channels, out_channels, stride,
                                     pool=vd_shortcut and stride != 1)
        else:
            self.shortcut = None

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.conv3(self.conv2(self.conv1(x)))
        return F.relu(out + identity)


class ResNet50(nn.Layer):
    """Args:
        variant: 'b' or 'd'.
        dcn_stages: residual stages (2..5) whose 3x3 convs are DCNv2.

    forward(images [N, 3, H, W]) -> [C2, C3, C4, C5], Ck: [N, 256 * 2^(k-2), H/2^k, W/2^k]
    """

    def __init__(self, variant="b", dcn_stages=()):
        super().__init__()
        if variant not in ("b", "d"):
            raise ConfigError(f"backbone_variant must be 'b' or 'd', got {variant!r}")
        if variant == "d":
            stem = [ConvNorm(3, 32, 3, stride=2), ConvNorm(32, 32, 3), ConvNorm(32, 64, 3)]
        else:
            stem = [ConvNorm(3, 64, 7, stride=2)]
        self.stem = nn.LayerList(stem)
        self.stages = nn.LayerList()
        in_channels = 64
        for index, (blocks, width) in enumerate(zip(STAGE_BLOCKS, STAGE_WIDTHS)):
            stage_number = index + 2  # res2..res5
            stage = nn.LayerList()
            for b in range(blocks):
                stride = 2 if b == 0 and stage_number > 2 else 1
                stage.append(Bottleneck(in_channels, width, stride,
                                        dcn=stage_number in dcn_stages,
                                        vd_shortcut=variant == "d"))
                in_channels = width * EXPANSION
            self.stages.append(stage)

    def forward(self, images):
        x = images
        for conv in self.stem:
            x = conv(x)
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        features = []
        for stage in self.stages:
            for block in stage:
                x = block(x)
            features.append(x)
        return features
