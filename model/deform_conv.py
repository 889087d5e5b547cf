"""Modulated deformable convolution (DCNv2) for training on the CPU: the output and the
gradients of Paddle's CPU kernels, bit for bit, in a fraction of their time.

Why: Paddle 3.3's CPU ``deformable_conv`` kernels walk every (channel, kernel tap, output
pixel) in one thread, and for the input gradient search a 5 x 5 neighbourhood around each
sampling point. On config 2 at 480 x 640 its 23 DCN calls took half of a whole training step
(forward + backward + SGD), more than every other op together.

How it stays exact: both passes do the arithmetic of those kernels
(paddle/phi/kernels/funcs/deformable_conv_functor.cc, impl/deformable_conv_grad_kernel_impl.h,
cpu/deformable_conv_grad_kernel.cc) in the same float32 operation order, vectorised with
numpy:
  * column buffer: each tap's bilinear sample (w1 v1 + w2 v2 + w3 v3 + w4 v4, corners outside
    the image read as 0) times the modulation mask; the matrix products per image (weight x
    columns forward; weight^T x out_grad and out_grad x columns^T backward) go through
    paddle.matmul with the kernel's own transposes, so MKL runs the very same sgemm calls;
    the weight gradient is the sum of the per-image products in image order, as there;
  * offset and mask gradients: per sampling point the kernel adds the channels' terms one
    after another; numpy's reduction over the leading axis of a C-contiguous array adds its
    rows in that same order;
  * input gradient: the kernel adds, into each input pixel, the contributions of the kernel
    taps, output pixels and bilinear corners in that lexicographic order; ``index_add_``
    adds its rows in the order of the index, which is laid out the same way.
The numpy work of the images runs on as many threads as Paddle's kernels were given; the
matrix products stay on the calling thread.
tests/model/test_deform_conv.py compares the output and all four gradients with Paddle's
kernels with ``array_equal`` on odd shapes, strides, dilation, sampling points outside the
image and exactly on pixel centres, on one thread and on two. Only DCNv2 as SOLOv2 uses it
(one deformable group, one group, a mask) takes this path; eval mode, no_grad and GPUs keep
Paddle's kernel.
"""

import ctypes
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import paddle
from paddle.autograd import PyLayer

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


def _cpu_threads():
    """The thread count Paddle's CPU kernels were given (paddle.base.core.set_num_threads
    sets it in the OpenMP runtime Paddle loads, and has no getter); 1 if it cannot be read."""
    global _OMP
    if _OMP is None:
        try:
            _OMP = ctypes.CDLL("libiomp5.so").omp_get_max_threads
        except (OSError, AttributeError):
            _OMP = False
    return max(int(_OMP()), 1) if _OMP else 1


_OMP = None
_POOLS = {}
_WORKSPACES = []


def _per_image(count, work, before=None, after=None):
    """Run ``work(b, before(b), workspace)`` for images b = 0..count-1, on as many threads
    as Paddle's kernels have (the same CPU budget), ``before`` and ``after(b, result)`` on
    this thread in image order. Matrix products stay in ``before`` / ``after``: MKL called
    from two threads at once picks other kernels and rounds differently."""
    workers = min(_cpu_threads(), count)
    if _POOLS.get("pid") != os.getpid():  # a forked child has none of its parent's threads
        _POOLS.clear()
        _POOLS["pid"] = os.getpid()
    while len(_WORKSPACES) < workers:
        _WORKSPACES.append(Workspace())
    if workers > 1 and workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="deform_conv")
    for start in range(0, count, workers):
        images = list(range(start, min(count, start + workers)))
        prepared = [before(b) if before else None for b in images]

        def run(slot):
            return work(images[slot], prepared[slot], _WORKSPACES[slot])

        if len(images) > 1:
            results = list(_POOLS[workers].map(run, range(len(images))))
        else:
            results = [run(0)]
        for b, result in zip(images, results):
            if after:
                after(b, result)


def _tap_samples(x_pad, sampling, corner, term, out):
    """Bilinear samples of every channel at one tap's points into ``out`` [C, L]:
    w1 v1 + w2 v2 + w3 v3 + w4 v4 summed left to right, the kernel's weights and corners
    (a skipped corner reads the zero column)."""
    ph, pw, hl, wl, corners = sampling
    for n in range(4):
        np.take(x_pad, corners[n], axis=1, out=corner[n], mode="clip")
    lh, lw = ph - hl, pw - wl
    hh, hw = ONE - lh, ONE - lw
    np.multiply(hh * hw, corner[0], out=out)
    for weight, v in ((hh * lw, corner[1]), (lh * hw, corner[2]), (lh * lw, corner[3])):
        np.multiply(weight, v, out=term)
        out += term


class _Image:
    """One image's padded input, sampling grid and scratch arrays."""

    def __init__(self, x_b, out_hw, geometry, ws):
        stride, padding, dilation, (kh, kw) = geometry
        self.c, self.h, self.w = x_b.shape
        self.out_hw = out_hw
        self.length = out_hw[0] * out_hw[1]
        self.taps, self.kw, self.dilation = kh * kw, kw, dilation
        self.rows = (np.arange(out_hw[0]) * stride[0] - padding[0])[:, None]
        self.cols = (np.arange(out_hw[1]) * stride[1] - padding[1])[None, :]
        hw = self.h * self.w
        self.x_pad = ws.get("x", (self.c, hw + 1))  # one zero column for skipped corners
        self.x_pad[:, :hw] = x_b.reshape(self.c, hw)
        self.x_pad[:, hw] = 0
        self.corner = [ws.get(f"v{n}", (self.c, self.length)) for n in range(4)]
        self.term = ws.get("term", (self.c, self.length))
        self.column = ws.get("column", (self.c, self.taps, self.length))

    def sampling(self, offset_b, k):
        return _sampling(offset_b[2 * k:2 * k + 2], self.rows, self.cols, divmod(k, self.kw),
                         self.dilation, (self.h, self.w))


def _image_columns(x_b, offset_b, mask_b, geometry, ws):
    """The kernel's column buffer of one image, [C * K, L]: each tap's bilinear samples
    times the modulation mask."""
    img = _Image(x_b, mask_b.shape[1:], geometry, ws)
    for k in range(img.taps):
        sample = img.column[:, k, :]
        _tap_samples(img.x_pad, img.sampling(offset_b, k), img.corner, img.term, sample)
        sample *= mask_b[k].reshape(img.length)
    return img.column.reshape(img.c * img.taps, img.length)


def _image_grads(x_b, offset_b, mask_b, dcol, geometry, grads, ws):
    """Gradients of one image from its column gradient ``dcol`` [C, K, L] (weight^T x
    out_grad): fills grads' dx [C, H, W], doffset [2K, Ho, Wo] and dmask [K, Ho, Wo] views;
    returns the column buffer [C * K, L] for the weight gradient."""
    dx_b, doffset_b, dmask_b = grads
    img = _Image(x_b, mask_b.shape[1:], geometry, ws)
    c, length, term = img.c, img.length, img.term
    rows_t = ws.get("rows_t", (length, c))
    spread = ws.get("spread", (length, 4, c))
    dx_rows = paddle.zeros([img.h * img.w + 1, c])  # input gradient, one row per pixel
    for k in range(img.taps):
        ph, pw, hl, wl, corners = sampling = img.sampling(offset_b, k)
        sample = img.column[:, k, :]
        _tap_samples(img.x_pad, sampling, img.corner, term, sample)
        mask = mask_b[k].reshape(length)
        dc = dcol[:, k, :]
        np.multiply(dc, sample, out=term)
        dmask_b[k] = np.add.reduce(term, axis=0).reshape(img.out_hw)
        sample *= mask  # the column buffer the weight gradient multiplies
        # d sample / d ph and d sample / d pw with the kernel's corner terms and signs.
        right, left = (wl + ONE) - pw, pw - wl
        lower, upper = (hl + ONE) - ph, ph - hl
        for direction, coefs in ((0, (-right, -left, right, left)),
                                 (1, (-lower, lower, -upper, upper))):
            np.multiply(coefs[0], img.corner[0], out=term)
            for coef, v in zip(coefs[1:], img.corner[1:]):
                term += coef * v
            term *= dc
            term *= mask
            doffset_b[2 * k + direction] = np.add.reduce(term, axis=0).reshape(img.out_hw)
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
    dx_b[...] = np.from_dlpack(dx_rows)[:img.h * img.w].T.reshape(dx_b.shape)
    return img.column.reshape(c * img.taps, length)


def _geometry(weight, stride, padding, dilation):
    return (stride, padding, dilation, tuple(weight.shape[2:]))


def _weight2d(weight):
    return paddle.from_dlpack(np.ascontiguousarray(weight.reshape(weight.shape[0], -1)))


def deform_conv_forward(x, offset, mask, weight, stride, padding, dilation):
    """``deform_conv2d(x, offset, weight, mask=mask)`` (no bias, one group, one deformable
    group) equal bit for bit to Paddle's CPU kernel: the same column buffer, the same
    sgemm per image. numpy float32 in (shapes as :func:`deform_conv_grads`), a paddle
    Tensor [N, Co, Ho, Wo] out."""
    geometry = _geometry(weight, stride, padding, dilation)
    weight2d = _weight2d(weight)
    out = np.empty((x.shape[0], weight.shape[0]) + mask.shape[2:], F32)

    def columns(b, _, ws):
        return _image_columns(x[b], offset[b], mask[b], geometry, ws)

    def product(b, column):
        out[b] = np.from_dlpack(paddle.matmul(weight2d, paddle.from_dlpack(column))
                                ).reshape(out.shape[1:])

    _per_image(x.shape[0], columns, after=product)
    return paddle.from_dlpack(out)


def deform_conv_grads(x, offset, mask, weight, dout, stride, padding, dilation):
    """Gradients of ``deform_conv2d(x, offset, weight, mask=mask)`` (no bias, one group,
    one deformable group) with respect to x, offset, mask and weight, equal bit for bit to
    Paddle's CPU kernel. numpy float32 in: x [N, C, H, W], offset [N, 2K, Ho, Wo] (dy, dx per
    tap), mask [N, K, Ho, Wo], weight [Co, C, kh, kw], dout [N, Co, Ho, Wo]; numpy out,
    except dweight, a paddle Tensor."""
    n, c = x.shape[:2]
    geometry = _geometry(weight, stride, padding, dilation)
    taps = weight.shape[2] * weight.shape[3]
    weight2d = _weight2d(weight)
    dx = np.empty(x.shape, F32)
    doffset, dmask = np.empty(offset.shape, F32), np.empty(mask.shape, F32)
    douts, dweight = {}, [None]

    def column_grad(b):
        douts[b] = paddle.from_dlpack(np.ascontiguousarray(dout[b].reshape(dout.shape[1], -1)))
        dcol = paddle.matmul(weight2d, douts[b], transpose_x=True)
        return np.from_dlpack(dcol).reshape(c, taps, -1)

    def grads(b, dcol, ws):
        return _image_grads(x[b], offset[b], mask[b], dcol, geometry,
                            (dx[b], doffset[b], dmask[b]), ws)

    def weight_grad(b, column):
        d = paddle.matmul(douts.pop(b), paddle.from_dlpack(column), transpose_y=True)
        dweight[0] = d if dweight[0] is None else dweight[0] + d  # image order, as there

    _per_image(n, grads, before=column_grad, after=weight_grad)
    return dx, doffset, dmask, dweight[0].reshape(weight.shape)


class _DeformConv(PyLayer):
    @staticmethod
    def forward(ctx, x, offset, mask, weight, stride, padding, dilation):
        ctx.geometry = (stride, padding, dilation)
        ctx.save_for_backward(x, offset, mask, weight)
        return deform_conv_forward(x.numpy(), offset.numpy(), mask.numpy(), weight.numpy(),
                                   stride, padding, dilation)

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
