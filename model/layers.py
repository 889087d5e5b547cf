"""Building blocks shared by the backbone and the heads."""

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.vision.ops import DeformConv2D

from .deform_conv import deform_conv_train, uses_fast_backward


class ModulatedDeformConv(nn.Layer):
    """DCNv2 (Zhu et al. 2019): a plain conv predicts offsets and a modulation mask.

    ``conv_offset`` outputs 3*k*k channels, split as [2*k*k offsets, k*k mask logits] in
    that order, which is how both PaddleDetection generations lay them out; the mask goes
    through a sigmoid. ``conv_offset`` is zero-initialised, so a fresh DCN starts as a
    plain conv scaled by sigmoid(0) = 0.5.

    In training on the CPU the convolution runs through model/deform_conv.py, which gives
    the output and the gradients of Paddle's CPU kernels bit for bit, several times faster.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, bias=False):
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.num_offsets = 2 * kernel_size * kernel_size
        zeros = paddle.ParamAttr(initializer=nn.initializer.Constant(0.0))
        self.conv_offset = nn.Conv2D(in_channels, 3 * kernel_size * kernel_size, kernel_size,
                                     stride=stride, padding=padding,
                                     weight_attr=zeros, bias_attr=zeros)
        self.conv = DeformConv2D(in_channels, out_channels, kernel_size, stride=stride,
                                 padding=padding, bias_attr=None if bias else False)

    def forward(self, x):
        offset_mask = self.conv_offset(x)
        offset = offset_mask[:, :self.num_offsets]
        mask = F.sigmoid(offset_mask[:, self.num_offsets:])
        if self.training and uses_fast_backward(x, self.conv):
            return deform_conv_train(self.conv, x, offset, mask)
        return self.conv(x, offset, mask=mask)


class ConvNorm(nn.Layer):
    """conv (plain or DCNv2) -> BatchNorm / GroupNorm(32) / nothing -> optional ReLU.

    Parameters live under ``conv`` (``conv.conv`` and ``conv.conv_offset`` for DCN) and
    ``norm``, so converted weights have one predictable name per tensor.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, norm="bn",
                 relu=True, dcn=False, bias=False):
        super().__init__()
        if dcn:
            self.conv = ModulatedDeformConv(in_channels, out_channels, kernel_size, stride,
                                            bias=bias)
        else:
            self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                                  padding=(kernel_size - 1) // 2,
                                  bias_attr=None if bias else False)
        if norm == "bn":
            self.norm = nn.BatchNorm2D(out_channels)
        elif norm == "gn":
            self.norm = nn.GroupNorm(32, out_channels)
        elif norm is None:
            self.norm = None
        else:
            raise ValueError(f"unknown norm {norm!r}")
        self.relu = relu

    def forward(self, x):
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x) if self.relu else x


def init_conv_weights(layer, std=0.01):
    """N(0, std) for every conv weight under ``layer`` except DCN offset predictors, which
    stay zero [SOLO init_weights: normal_init(std=0.01)]."""
    normal = nn.initializer.Normal(std=std)
    for name, sub in layer.named_sublayers():
        if isinstance(sub, (nn.Conv2D, DeformConv2D)) and "conv_offset" not in name:
            normal(sub.weight)


def coord_features(x):
    """CoordConv channels for ``x`` [N, C, H, W]: x then y, each linspace(-1, 1) -> [N, 2, H, W]."""
    n, _, h, w = x.shape
    xs = paddle.linspace(-1, 1, w, dtype=x.dtype)
    ys = paddle.linspace(-1, 1, h, dtype=x.dtype)
    grid_y, grid_x = paddle.meshgrid(ys, xs)
    coords = paddle.stack([grid_x, grid_y]).unsqueeze(0)
    return coords.expand([n, 2, h, w])


class DropBlock(nn.Layer):
    """DropBlock (Ghiasi et al. 2018) as PaddleDetection applies it to the SOLOv2 towers.

    Seeds fall with rate gamma = (1 - keep_prob) / block^2 * W^2 / (W - block + 1)^2 (the
    reference computes it from the width only; SOLOv2 grids are square), each seed zeroes a
    block x block window, and the survivors are rescaled by numel / kept. Identity in eval.
    """

    def __init__(self, block_size=3, keep_prob=0.9):
        super().__init__()
        self.block_size = block_size
        self.keep_prob = keep_prob

    def forward(self, x):
        if not self.training or self.keep_prob >= 1.0:
            return x
        width = float(x.shape[-1])
        block = float(self.block_size)
        gamma = (1.0 - self.keep_prob) / block ** 2 * width ** 2 / (width - block + 1) ** 2
        seeds = (paddle.rand(x.shape, dtype=x.dtype) < gamma).astype(x.dtype)
        dropped = F.max_pool2d(seeds, self.block_size, stride=1, padding=self.block_size // 2)
        keep = 1.0 - dropped
        scale = float(keep.numel()) / paddle.clip(keep.sum(), min=1.0)
        return x * keep * scale
