"""Modulated deformable convolution (DCNv2) for training on the CPU: Paddle's own forward
kernel, and a backward pass that gives Paddle's CPU gradients bit for bit in a fraction of
the time.

Why: Paddle 3.3's CPU ``deformable_conv_grad`` kernel walks every (channel, kernel tap,
output pixel) in one thread and, for the input gradient, searches a 5 x 5 neighbourhood
around each sampling point. On config 2 at 480 x 640 its 23 DCN layers took half of a whole
training step (forward + backward + SGD), more than every other op together.

How it stays exact: the backward below does the same arithmetic as that kernel
(paddle/phi/kernels/impl/deformable_conv_grad_kernel_impl.h and cpu/deformable_conv_grad_
kernel.cc), in the same float32 operation order, only vectorised with numpy:
  * column buffer (bilinear samples times the modulation mask) and the two matrix products
    per image (weight^T x out_grad, out_grad x columns^T) through paddle.matmul with the
    kernel's own transposes, so MKL runs the very same sgemm calls; the weight gradient is
    the sum of the per-image products in image order, as the kernel adds them;
  * offset and mask gradients: per sampling point the kernel adds the channels' terms one
    after another; numpy's reduction over the leading axis of a C-contiguous array adds its
    rows in that same order;
  * input gradient: the kernel adds, into each input pixel, the contributions of the kernel
    taps, output pixels and bilinear corners in that lexicographic order; ``index_add_``
    adds its rows in the order of the index, which is laid out the same way.
tests/model/test_deform_conv.py compares all four gradients with Paddle's kernel with
``array_equal`` on odd shapes, strides, sampling points outside the image and exactly on
pixel centres. Only DCNv2 as SOLOv2 uses it (one deformable group, one group, a mask) takes
this path; anything else, eval mode, and GPUs keep Paddle's kernel.
"""

import numpy as np
import paddle
from paddle.autograd import PyLayer
from paddle.vision.ops import deform_conv2d

F32 = np.float32
ONE = F32(1)


class Workspace:
    """Scratch arrays reused from call to call: allocating a fresh 20 MB array for every
    temporary costs more in page faults than the arithmetic done in it."""

    def __init__(self):
        self.arrays = {}

    def get(self, name, shape):
        size = int(np.prod(shape))
        buf = self.arrays.get(name)
        if buf is None or buf.size < size:
            buf = self.arrays[name] = np.empty(size, F32)
        return buf[:size].reshape(shape)


_WORKSPACE = Workspace()


def _sampling(offset_k, rows, cols, tap, dilation, hw):
    """Where tap ``tap`` = (i, j) samples for every output pixel, as the kernel computes it:
    (ph, pw) float32 [L], their floors (hl, wl) and the flat input index of the four
    bilinear corners [4, L] in the order (low, low), (low, high), (high, low), (high, high),
    an out-of-image corner (or a point the kernel skips) pointing at the zero column H*W."""
    h, w = hw
    i, j = tap
    # (output pixel * stride - pad + tap * dilation) is an integer, then the float offset
    # is added: the kernel's h_in + i * dilation_h + offset_h.
    ph = ((rows + i * dilation[0]).astype(F32) + offset_k[0]).reshape(-1)
    pw = ((cols + j * dilation[1]).astype(F32) + offset_k[1]).reshape(-1)
    inside = (ph > -1) & (pw > -1) & (ph < h) & (pw < w)
    hl, wl = np.floor(ph), np.floor(pw)
    hli, wli = hl.astype(np.int64), wl.astype(np.int64)
    top_ok, bottom_ok = inside & (hli >= 0), inside & (hli + 1 <= h - 1)
    left_ok, right_ok = wli >= 0, wli + 1 <= w - 1
    base = hli * w + wli
    corners = np.stack([np.where(top_ok & left_ok, base, h * w),
                        np.where(top_ok & right_ok, base + 1, h * w),
                        np.where(bottom_ok & left_ok, base + w, h * w),
                        np.where(bottom_ok & right_ok, base + w + 1, h * w)])
    return ph, pw, hl, wl, corners


def _image_grads(x_b, offset_b, mask_b, weight2d, dout_b, geometry, grads, ws):
    """Gradients of one image: fills grads' doffset [2K, Ho, Wo] and dmask [K, Ho, Wo]
    views, returns (dx [C, H, W], dweight [Co, C*K] tensor)."""
    stride, padding, dilation, (kh, kw) = geometry
    doffset_b, dmask_b = grads
    c, h, w = x_b.shape
    k_taps = kh * kw
    out_h, out_w = dout_b.shape[1:]
    length = out_h * out_w
    rows = (np.arange(out_h) * stride[0] - padding[0])[:, None]
    cols = (np.arange(out_w) * stride[1] - padding[1])[None, :]
    x_pad = ws.get("x", (c, h * w + 1))  # one zero column for every skipped corner
    x_pad[:, :h * w] = x_b.reshape(c, h * w)
    x_pad[:, h * w] = 0
    corner = [ws.get(f"v{n}", (c, length)) for n in range(4)]
    term = ws.get("term", (c, length))
    rows_t = ws.get("rows_t", (length, c))
    spread = ws.get("spread", (length, 4, c))
    column = ws.get("column", (c, k_taps, length))

    dout_t = paddle.from_dlpack(np.ascontiguousarray(dout_b.reshape(-1, length)))
    dcol = np.from_dlpack(paddle.matmul(weight2d, dout_t, transpose_x=True))
    dcol = dcol.reshape(c, k_taps, length)
    dx_rows = paddle.zeros([h * w + 1, c])  # input gradient, one row per pixel
    for k in range(k_taps):
        ph, pw, hl, wl, corners = _sampling(offset_b[2 * k:2 * k + 2], rows, cols,
                                            divmod(k, kw), dilation, (h, w))
        for n in range(4):
            np.take(x_pad, corners[n], axis=1, out=corner[n], mode="clip")
        mask = mask_b[k].reshape(length)
        lh, lw = ph - hl, pw - wl
        hh, hw = ONE - lh, ONE - lw
        # Bilinear sample w1 v1 + w2 v2 + w3 v3 + w4 v4, summed left to right.
        sample = column[:, k, :]
        np.multiply(hh * hw, corner[0], out=sample)
        for weight, v in ((hh * lw, corner[1]), (lh * hw, corner[2]), (lh * lw, corner[3])):
            np.multiply(weight, v, out=term)
            sample += term
        dc = dcol[:, k, :]
        np.multiply(dc, sample, out=term)
        dmask_b[k] = np.add.reduce(term, axis=0).reshape(out_h, out_w)
        sample *= mask  # the column buffer the weight gradient multiplies
        # d sample / d ph and d sample / d pw with the kernel's corner terms and signs.
        right, left = (wl + ONE) - pw, pw - wl
        lower, upper = (hl + ONE) - ph, ph - hl
        for direction, coefs in ((0, (-right, -left, right, left)),
                                 (1, (-lower, lower, -upper, upper))):
            np.multiply(coefs[0], corner[0], out=term)
            for coef, v in zip(coefs[1:], corner[1:]):
                term += coef * v
            term *= dc
            term *= mask
            doffset_b[2 * k + direction] = np.add.reduce(term, axis=0).reshape(out_h, out_w)
        # Input gradient: (dcol * mask) spread to the four corners with the kernel's
        # gradient weights, added pixel row by pixel row in (tap, output pixel, corner) order.
        np.multiply(dc, mask, out=term)
        rows_t[...] = term.T
        h_low, w_low = hl + ONE, wl + ONE
        corner_weights = np.stack([(h_low - ph) * (w_low - pw),
                                   (h_low - ph) * ((pw + ONE) - w_low),
                                   ((ph + ONE) - h_low) * (w_low - pw),
                                   ((ph + ONE) - h_low) * ((pw + ONE) - w_low)], axis=1)
        np.multiply(rows_t[:, None, :], corner_weights[:, :, None], out=spread)
        dx_rows.index_add_(paddle.from_dlpack(np.ascontiguousarray(corners.T.reshape(-1))), 0,
                           paddle.from_dlpack(spread.reshape(-1, c)))
    dweight = paddle.matmul(dout_t, paddle.from_dlpack(column.reshape(c * k_taps, length)),
                            transpose_y=True)
    dx = np.ascontiguousarray(np.from_dlpack(dx_rows)[:h * w].T).reshape(c, h, w)
    return dx, dweight


def deform_conv_grads(x, offset, mask, weight, dout, stride, padding, dilation,
                      workspace=None):
    """Gradients of ``deform_conv2d(x, offset, weight, mask=mask)`` (no bias, one group,
    one deformable group) with respect to x, offset, mask and weight, equal bit for bit to
    Paddle's CPU kernel. numpy float32 in: x [N, C, H, W], offset [N, 2K, Ho, Wo] (dy, dx per
    tap), mask [N, K, Ho, Wo], weight [Co, C, kh, kw], dout [N, Co, Ho, Wo]; numpy out,
    except dweight, a paddle Tensor."""
    ws = workspace or _WORKSPACE
    n = x.shape[0]
    co, c, kh, kw = weight.shape
    geometry = (stride, padding, dilation, (kh, kw))
    weight2d = paddle.from_dlpack(np.ascontiguousarray(weight.reshape(co, c * kh * kw)))
    dx = np.empty(x.shape, F32)
    doffset, dmask = np.empty(offset.shape, F32), np.empty(mask.shape, F32)
    dweight = None
    for b in range(n):
        dx[b], d = _image_grads(x[b], offset[b], mask[b], weight2d, dout[b], geometry,
                                (doffset[b], dmask[b]), ws)
        dweight = d if dweight is None else dweight + d  # image order, as the kernel
    return dx, doffset, dmask, dweight.reshape(weight.shape)


class _DeformConv(PyLayer):
    @staticmethod
    def forward(ctx, x, offset, mask, weight, stride, padding, dilation):
        ctx.geometry = (stride, padding, dilation)
        ctx.save_for_backward(x, offset, mask, weight)
        return deform_conv2d(x, offset, weight, stride=stride, padding=padding,
                             dilation=dilation, mask=mask)

    @staticmethod
    def backward(ctx, dout):
        x, offset, mask, weight = ctx.saved_tensor()
        dx, doffset, dmask, dweight = deform_conv_grads(
            x.numpy(), offset.numpy(), mask.numpy(), weight.numpy(), dout.numpy(),
            *ctx.geometry)
        grads = (paddle.from_dlpack(dx), paddle.from_dlpack(doffset),
                 paddle.from_dlpack(dmask), dweight)
        return tuple(None if t.stop_gradient else g
                     for t, g in zip((x, offset, mask, weight), grads))


def uses_fast_backward(x, conv):
    """Whether :func:`deform_conv_train` applies: dygraph on the CPU, recording gradients,
    float32, one group and one deformable group (every DCN of SOLOv2)."""
    return (paddle.in_dynamic_mode() and paddle.is_grad_enabled() and x.place.is_cpu_place()
            and x.dtype == paddle.float32 and conv._groups == 1
            and conv._deformable_groups == 1)


def deform_conv_train(conv, x, offset, mask):
    """``conv(x, offset, mask=mask)`` for a paddle.vision.ops.DeformConv2D ``conv``: the same
    forward output bit for bit, gradients by :func:`deform_conv_grads`. The bias is added
    as DeformConv2D adds it (an elementwise add broadcast over channels), so its gradient
    is Paddle's too."""
    out = _DeformConv.apply(x, offset, mask, conv.weight, list(conv._stride),
                            list(conv._padding), list(conv._dilation))
    if conv.bias is not None:
        out = paddle.add(out, conv.bias.reshape([1, -1, 1, 1]))
    return out
