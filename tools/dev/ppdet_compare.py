"""Our network and PaddleDetection 2.6's, same architecture, same weights, same input,
timed side by side in one process (``tools/benchmark.py --compare-ppdet``).

PaddleDetection is a development dependency (requirements-dev.txt), never a runtime one:
this module is only imported when asked for. Its SOLOv2 is built by its own workspace from
the architecture values of tools/dev/ppdet_arch.py and given OUR weights, renamed with the
converter's PaddleDetection 2.x name map (tools/weights/maps.py) read backwards; every tensor
of its model must be filled. The one thing the renaming adds: config 2's head DCNs have no
bias (PaddleDetection 0.5 built them so) while PaddleDetection 2.x's have one, so those
biases are zero. Before any timing the two networks' outputs are compared on the input.

Both forward passes are the network alone (backbone, FPN, mask-feature branch, head), as
each framework runs it in eval mode: for PaddleDetection ``SOLOv2.model_arch()``, which
stops before its post-processing. They run interleaved, pass by pass, at each thread count,
so that the machine's load falls on both alike.
"""

import os
import statistics
import time
from dataclasses import dataclass

import numpy as np
import paddle

from tools import runtime
from tools.errors import UserError
from tools.weights.files import load_any
from tools.weights.maps import PPDET2_ALIASES, ppdet2_pairs

from .ppdet_arch import ARCHITECTURES, build_ppdet


class PPDetUnavailable(UserError):
    """PaddleDetection is not importable, or has no model with this config's architecture."""


def import_ppdet():
    try:
        import ppdet  # noqa: F401
    except Exception as err:  # ImportError, or its own imports (pkg_resources, ...) failing
        raise PPDetUnavailable(
            f"--compare-ppdet needs PaddleDetection 2.6 importable ({type(err).__name__}: "
            f"{err}); install it with: pip install -r requirements-dev.txt") from None


def ppdet_state(cfg, ours, wanted):
    """PaddleDetection 2.6 state dict (name -> array) holding the arrays of ``ours`` (our
    names), for a model whose state has the names and shapes ``wanted``."""
    no_bias = bool(cfg.head_dcn_convs) and not cfg.head_dcn_bias
    pairs = ppdet2_pairs(_with_head_bias(cfg) if no_bias else cfg)
    state = {}
    for our_name, their_name in pairs:
        if our_name in ours:
            state[their_name] = ours[our_name]
        elif no_bias and our_name.startswith("head.") and our_name.endswith(".conv.conv.bias"):
            state[their_name] = np.zeros(wanted[their_name], np.float32)
        else:
            raise KeyError(f"our weights have no {our_name}")
    for name in wanted:  # twins registered under two names hold the same tensor
        for alias, canonical in PPDET2_ALIASES.items():
            if name.startswith(alias) and canonical + name[len(alias):] in state:
                state[name] = state[canonical + name[len(alias):]]
    missing = sorted(set(wanted) - set(state))
    unexpected = sorted(set(state) - set(wanted))
    misshaped = sorted(k for k in wanted if k in state and tuple(state[k].shape) != wanted[k])
    if missing or unexpected or misshaped:
        raise PPDetUnavailable(f"our weights do not fill PaddleDetection's {cfg.name} model: "
                               f"missing {missing[:3]}, unexpected {unexpected[:3]}, "
                               f"misshaped {misshaped[:3]}")
    return state


def _with_head_bias(cfg):
    """A shallow copy of ``cfg`` whose head DCNs have a bias, as PaddleDetection 2.x's do,
    so that the name map lists the bias names (filled with zeros by ppdet_state)."""
    import copy

    biased = copy.copy(cfg)
    biased.head_dcn_bias = True
    return biased


def build_pair(cfg, weights):
    """(our SOLOv2, PaddleDetection's SOLOv2), both in eval mode with the weights of
    ``weights`` (a file in our layout)."""
    from model import build_model
    from tools.weights.load import load_weights

    import_ppdet()
    if cfg.number not in ARCHITECTURES:
        raise PPDetUnavailable(f"--compare-ppdet: PaddleDetection 2.6 has no model with the "
                               f"architecture of config {cfg.number} ({cfg.name}); configs "
                               f"{sorted(ARCHITECTURES)} have one")
    ours = build_model(cfg)
    load_weights(ours, weights, cfg)
    theirs = build_ppdet(ARCHITECTURES[cfg.number])
    wanted = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    arrays, _, _ = load_any(weights)
    theirs.set_state_dict(ppdet_state(cfg, arrays, wanted))
    ours.eval()
    theirs.eval()
    return ours, theirs


def forward_ours(model, image):
    with paddle.no_grad():
        out = model(image)
    return out["mask_feat"].numpy(), out["kernels"].numpy()


def forward_ppdet(model, image):
    with paddle.no_grad():
        model.inputs = {"image": image}
        model.model_arch()
    kernels = [k.numpy() for k in model.kernel_pred_list]
    return model.seg_pred.numpy(), kernels


def agreement(ours_out, ppdet_out):
    """Largest relative difference of the mask features and of the kernels (all levels)."""
    mask_ours, kernels_ours = ours_out
    mask_theirs, kernels_theirs = ppdet_out
    # PaddleDetection keeps kernels per level as [N, E, S, S]; ours are [N, sum S*S, E].
    flat = np.concatenate([k.reshape(k.shape[0], k.shape[1], -1) for k in kernels_theirs],
                          axis=2).transpose(0, 2, 1)

    def rel(a, b):
        return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))

    return rel(mask_ours, mask_theirs), rel(kernels_ours, flat)


def time_side_by_side(ours, theirs, image, repeats, thread_counts):
    """{threads: (our median s, PaddleDetection's median s)} of the network forward on
    ``image`` (a [1, 3, H, W] tensor), one warm-up each, passes interleaved."""
    from paddle.base import core

    out = {}
    for threads in thread_counts:
        core.set_num_threads(threads)
        forward_ours(ours, image)
        forward_ppdet(theirs, image)
        seconds = {"ours": [], "ppdet": []}
        for _ in range(repeats):
            for name, run, model in (("ours", forward_ours, ours),
                                     ("ppdet", forward_ppdet, theirs)):
                start = time.perf_counter()
                run(model, image)
                seconds[name].append(time.perf_counter() - start)
        out[threads] = (statistics.median(seconds["ours"]), statistics.median(seconds["ppdet"]))
    return out


@dataclass
class SideBySide:
    """What compare_ppdet measured; table() prints it for tools/benchmark.py."""

    image: str
    input_hw: tuple
    agreement: tuple              # (mask features, kernels) max relative difference
    seconds: dict                 # threads -> (ours, PaddleDetection's) median seconds
    version: str
    # PaddleDetection's forward as its users get it: a fresh process, 1 thread, MKL's own
    # kernel choice (no AMD fast path); None where that is this process already.
    as_shipped: float = None

    def table(self, dygraph=None):
        """The side-by-side lines; ``dygraph`` is the benchmark's (images/s per pass,
        stages) of our dygraph engine, to set our end to end beside their network."""
        from tabulate import tabulate

        h, w = self.input_hw
        lines = [f"\nside by side with PaddleDetection {self.version}: network forward on "
                 f"{self.image} (padded input {h}x{w}), same weights; outputs equal to "
                 f"{self.agreement[0]:.1e} (mask features) and {self.agreement[1]:.1e} "
                 "(kernels) max relative difference"]
        rows = [[threads, f"{ours:.2f}", f"{ppdet:.2f}", f"{ppdet / ours:.2f}x"]
                for threads, (ours, ppdet) in sorted(self.seconds.items())]
        lines.append(tabulate(rows, headers=["threads", "ours s", "PaddleDetection s",
                                             "PaddleDetection / ours"]))
        default = self.as_shipped or self.seconds.get(1, (None, None))[1]
        if self.as_shipped:
            lines.append(f"PaddleDetection as shipped (fresh process, 1 thread, no "
                         f"MKL_DEBUG_CPU_TYPE): {self.as_shipped:.2f} s")
        if dygraph is not None and default:
            end_to_end = 1.0 / statistics.median(dygraph[0])
            lines.append(f"our dygraph engine end to end (read, preprocess, network, "
                         f"post-processing, draw; every core): {end_to_end:.2f} s per image "
                         f"= {end_to_end / default:.2f} x PaddleDetection's network alone as "
                         "shipped")
        return "\n".join(lines)


def compare_ppdet(cfg, weights, image_path, repeats, thread_counts=None):
    """Build both networks with ``weights``, check their outputs agree on ``image_path``
    (preprocessed as our engines do), time them; returns a SideBySide."""
    import ppdet

    from tools.data.preprocess import pad_batch, preprocess, preprocess_style, read_image
    from tools.runtime import cpu_cores, use_all_cpu_cores

    ours, theirs = build_pair(cfg, weights)
    _, meta, _ = load_any(weights)
    chw, _, _ = preprocess(read_image(image_path), cfg.test_size, cfg.pixel_mean,
                           cfg.pixel_std, preprocess_style(cfg, meta))
    batch = pad_batch([chw])
    image = paddle.to_tensor(batch)
    agree = agreement(forward_ours(ours, image), forward_ppdet(theirs, image))
    counts = thread_counts or sorted({1, cpu_cores()})
    try:
        seconds = time_side_by_side(ours, theirs, image, repeats, counts)
    finally:
        use_all_cpu_cores()  # what the rest of the benchmark runs with
    shipped = None
    if runtime.fast_path_set:
        shipped = time_as_shipped(cfg, weights, batch, repeats)
    return SideBySide(os.path.basename(image_path), tuple(batch.shape[2:]), agree, seconds,
                      getattr(ppdet, "__version__", "2.6"), shipped)


def time_as_shipped(cfg, weights, batch, repeats):
    """Median seconds of PaddleDetection's forward in a fresh process at its defaults: one
    thread and no MKL_DEBUG_CPU_TYPE (which this process set for itself, and which MKL only
    reads when it loads)."""
    import json
    import subprocess
    import sys
    import tempfile

    env = {k: v for k, v in os.environ.items() if k not in ("MKL_DEBUG_CPU_TYPE", "MKL_CBWR")}
    env["SOLOV2_AMD_FAST_PATH"] = "0"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "input.npy")
        np.save(path, batch)
        done = subprocess.run([sys.executable, "-m", "tools.dev.ppdet_compare", str(cfg.number),
                               weights, path, str(repeats)], cwd=root, env=env,
                              capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"timing PaddleDetection as shipped failed:\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["mkl_debug_cpu_type"] is not None:
        raise RuntimeError("the as-shipped process still had MKL_DEBUG_CPU_TYPE="
                           f"{report['mkl_debug_cpu_type']}")
    return report["seconds"]


def _time_default_main(argv):
    """``python -m tools.dev.ppdet_compare CONFIG WEIGHTS INPUT.npy REPEATS``: PaddleDetection's
    forward at Paddle's default thread count, its median seconds as one json line."""
    import json

    from config import load_config

    number, weights, path, repeats = argv
    cfg = load_config(int(number))
    _, theirs = build_pair(cfg, weights)
    image = paddle.to_tensor(np.load(path))
    forward_ppdet(theirs, image)  # warm-up
    seconds = []
    for _ in range(int(repeats)):
        start = time.perf_counter()
        forward_ppdet(theirs, image)
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds": statistics.median(seconds),
                      "mkl_debug_cpu_type": os.environ.get("MKL_DEBUG_CPU_TYPE")}))


if __name__ == "__main__":
    import sys

    _time_default_main(sys.argv[1:])
