"""Regenerate tests/fixtures/goldens/*.npz by running the reference implementations.

tests/model/test_reference_outputs.py compares our network with these files. Each one holds
what an ORIGINAL implementation computes from the stand-in weights of tools/weights/standin.py
on the fixed input of ``reference_input()``:

  solo_r50, solo_light448  WXinlong/SOLO (mmdet 1.0) SOLOv2, configs/solov2/
                           solov2_r50_fpn_8gpu_3x.py and solov2_light_448_r50_fpn_8gpu_3x.py,
                           on CPU PyTorch; raw head outputs plus SOLO's own get_seg results.
  ppdet2_r50, ppdet2_enhance  PaddleDetection 2.6.0 (pip paddledet) SOLOv2, built from the
                           values of configs/solov2/solov2_r50_fpn_3x_coco.yml and
                           solov2_r50_enhance_coco.yml (tag v2.6.0).
  static_light512          PaddleDetection 2.6.0 SOLOv2 with config 2's architecture, given
                           the static (fluid) stand-in file after OUR converter, renamed to
                           PaddleDetection 2.x names; its head DCNs get a zero bias because
                           the static file has none.

The reference code is imported at run time from the user's SOLO checkout (--solo-root) and
the installed ppdet package; nothing of it is copied here. SOLO's compiled extensions
(mmdet/ops/*_cuda, nms_cpu, ...) and the setup.py-generated mmdet/version.py are absent from
a bare checkout; none of them is used by SOLOv2 R50 inference, so each missing one is
replaced by an empty module whose functions raise if ever called. The same holds for
torchvision, which mmcv 0.2.16 only uses to look up ImageNet download links.

Every raw output keeps every k-th element of its flattened array, with
k = max(1, size // 4096) (inferred from the committed files: it holds for every array),
stored as NAME__step next to NAME__shape.

Reproducibility, measured on an AVX-512 CPU with python 3.11, torch 2.13.0+cpu, paddlepaddle
3.3.1, paddledet 2.6.0, mmcv 0.2.16, SOLO at f4cd03b: all five files written by this script
are byte-identical to the committed ones (numpy's npz has fixed zip timestamps), and
``--check`` reports 0 for every array. That needs oneDNN's AVX2 kernels, which main() asks
for through ONEDNN_MAX_CPU_ISA=AVX2 unless the variable is already set: with the AVX-512
kernels SOLO's raw outputs land 1.9e-6 .. 3.6e-6 (max |new - old| / max |old|) from the
files, seg_scores up to 4.6e-4, and 0.002% of mask bytes differ; PaddleDetection's outputs
are the same either way. Both are far inside the test tolerances (1e-4 on raw outputs, a
score/IoU matching on post-processing), so ``--check`` passes at up to TEST_TOLERANCE.
On AMD CPUs the same holds with this repo's MKL fast path off, which this script does itself.

Usage (from the repo root):
  python tools/dev/make_goldens.py --solo-root /path/to/SOLO            # rewrite all
  python tools/dev/make_goldens.py --only ppdet2_r50 --check            # compare only
"""

import argparse
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
import types

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:  # run as a script: make tools.weights importable
    sys.path.insert(0, REPO)
# The references run as their users run them: with MKL's own choice of kernels. The committed
# files were made so, and the AMD fast path (tools/runtime.py) sums in another order
# (PaddleDetection's raw outputs move by up to 3.3e-6 relative), so it is off here; this has
# to happen before tools/ is imported, which is where the fast path is set.
os.environ.setdefault("SOLOV2_AMD_FAST_PATH", "0")

from tools.dev.ppdet_arch import ENHANCE, LIGHT_512, build_ppdet  # noqa: E402
from tools.errors import MissingInputError, entry_point  # noqa: E402
from tools.weights import standin  # noqa: E402

DEFAULT_OUTPUT = os.path.join(REPO, "tests", "fixtures", "goldens")
MAX_KEPT = 4096
LEVELS = 5
# The crop of the padded 160x256 input holding the image, and the size it is rescaled to;
# read back from img_shape / ori_shape in the committed SOLO files (ori = 2 x img).
IMG_SHAPE, ORI_SHAPE = (150, 241, 3), (300, 482, 3)
# Raw outputs above this relative difference fail the tests (test_reference_outputs.py).
TEST_TOLERANCE = 1e-4

SOLO = {  # golden -> (config in the SOLO checkout, stand-in key list)
    "solo_r50": ("configs/solov2/solov2_r50_fpn_8gpu_3x.py",
                 "solo_solov2_r50_fpn_8gpu_3x.keys"),
    "solo_light448": ("configs/solov2/solov2_light_448_r50_fpn_8gpu_3x.py",
                      "solo_solov2_light_448_r50_fpn_8gpu_3x.keys"),
}

PPDET = {  # golden -> (overrides of PPDET_BASE, stand-in key list or "static")
    "ppdet2_r50": ({}, "ppdet2_solov2_r50_fpn_3x_coco.keys"),
    "ppdet2_enhance": (ENHANCE, "ppdet2_solov2_r50_enhance_coco.keys"),
    "static_light512": (LIGHT_512, "static"),
}
NAMES = list(SOLO) + list(PPDET)


def reference_input():
    return np.random.RandomState(0).normal(0, 1, (1, 3, 160, 256)).astype("float32")


def thin(out, name, array):
    """Store every k-th element of ``array`` under ``name`` (see the module docstring)."""
    array = np.asarray(array)
    step = max(1, array.size // MAX_KEPT)
    out[name] = array.ravel()[::step]
    out[name + "__step"] = np.array(step, np.int64)
    out[name + "__shape"] = np.array(array.shape, np.int64)


# ---------------------------------------------------------------------------- SOLO
class _AbsentModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last on sys.meta_path: stands in for modules a bare SOLO checkout cannot provide."""

    def find_spec(self, name, path=None, target=None):
        if name in ("mmdet.version", "torchvision") or name.startswith("mmdet.ops."):
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__version__ = module.short_version = "1.0.0+checkout"

        def absent(attr):
            if attr.startswith("__"):
                raise AttributeError(attr)

            def unavailable(*args, **kwargs):
                raise RuntimeError(f"{spec.name}.{attr} is compiled code that is not built")
            return unavailable

        module.__getattr__ = absent
        return module

    def exec_module(self, module):
        pass


def solo_outputs(name, solo_root):
    """Raw head outputs and get_seg results of SOLO's SOLOv2 for one golden."""
    sys.path.insert(0, os.path.abspath(solo_root))
    if not any(isinstance(f, _AbsentModules) for f in sys.meta_path):
        sys.meta_path.append(_AbsentModules())
    import mmcv
    import torch
    from mmcv.runner import load_checkpoint
    from mmdet.models import build_detector

    config, keys = SOLO[name]
    cfg = mmcv.Config.fromfile(os.path.join(solo_root, config))
    cfg.model.pretrained = None  # the stand-in checkpoint replaces the ImageNet backbone
    model = build_detector(cfg.model, train_cfg=None, test_cfg=cfg.test_cfg)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "standin.pth")
        standin.save_mmcv_pth(path, standin.make_state(standin.read_keys(keys)), legacy=True)
        load_checkpoint(model, path, map_location="cpu", strict=True)
    model.eval()

    # simple_test applies sigmoid + point NMS to the categories, so take the raw logits,
    # the kernels and the mask features from the layers that produce them, level by level.
    seen = {"cate": [], "kernel": [], "mask_feat": []}
    for key, layer in (("cate", model.bbox_head.solo_cate),
                       ("kernel", model.bbox_head.solo_kernel),
                       ("mask_feat", model.mask_feat_head)):
        layer.register_forward_hook(
            lambda module, inputs, output, key=key: seen[key].append(output.numpy().copy()))
    meta = [dict(img_shape=IMG_SHAPE, ori_shape=ORI_SHAPE, pad_shape=(160, 256, 3),
                 scale_factor=ORI_SHAPE[0] / IMG_SHAPE[0], flip=False)]
    with torch.no_grad():
        masks, labels, scores = model.simple_test(
            torch.from_numpy(reference_input()), meta, rescale=True)[0]
    out = {}
    for kind in ("cate", "kernel"):
        for level in range(LEVELS):
            thin(out, f"{kind}_{level}", seen[kind][level])
    thin(out, "mask_feat", seen["mask_feat"][0])
    masks = masks.numpy()
    out["seg_labels"] = labels.numpy().astype(np.int64)
    out["seg_scores"] = scores.numpy().astype(np.float32)
    out["seg_masks_packed"] = np.packbits(masks, axis=-1)
    out["seg_masks_shape"] = np.array(masks.shape, np.int64)
    out["img_shape"] = np.array(IMG_SHAPE[:2], np.int64)
    out["ori_shape"] = np.array(ORI_SHAPE[:2], np.int64)
    return out


# ------------------------------------------------------------- PaddleDetection 2.6
def ppdet2_name(ours):
    """PaddleDetection 2.6 name of one tensor of OUR model (config 2 layout).

    Written from the two models' state_dict names, independently of tools/weights/maps.py;
    static_state() checks that the result fills ppdet's model exactly."""
    rules = [
        (r"backbone\.stem\.(\d)\.", lambda m: f"backbone.conv1.conv1_{int(m[1]) + 1}."),
        (r"backbone\.stages\.(\d)\.(\d+)\.(.*)", _ppdet2_block),
        (r"neck\.lateral_convs\.(\d)\.",
         lambda m: "neck.fpn_inner_res5_sum." if m[1] == "3"
         else f"neck.fpn_inner_res{int(m[1]) + 2}_sum_lateral."),
        (r"neck\.fpn_convs\.(\d)\.", lambda m: f"neck.fpn_res{int(m[1]) + 2}_sum."),
        (r"head\.(kernel_convs|cate_convs)\.(\d)\.conv\.conv\.",
         lambda m: f"solov2_head.bbox_head.{m[1]}.{m[2]}.conv.conv_dcn."),
        (r"head\.", lambda m: "solov2_head.bbox_head."),
        (r"mask_feat_head\.convs_all_levels\.(\d)\.(\d)\.", lambda m:
         f"mask_head.conv_pre_feat{m[1]}.mask_feat_head.convs_all_levels.{m[1]}.conv{m[2]}."),
        (r"mask_feat_head\.conv_pred\.", lambda m: "mask_head.mask_feat_head.conv_pred.0."),
    ]
    for pattern, replace in rules:
        match = re.match(pattern, ours)
        if match:
            return replace(match) + ours[match.end():]
    raise KeyError(ours)


def _ppdet2_block(m):
    stage, block, rest = int(m[1]) + 2, int(m[2]), m[3]
    prefix = f"backbone.res{stage}.res{stage}{chr(ord('a') + block)}."
    rest = re.sub(r"^conv(\d)\.", lambda c: f"branch2{'abc'[int(c[1]) - 1]}.", rest)
    rest = rest.replace("conv.conv.", "conv.").replace("conv.conv_offset.", "conv_offset.")
    # ResNet-vd puts the strided projections (res3a-res5a) behind an average pool.
    short = "short.conv." if stage > 2 else "short."
    return prefix + rest.replace("shortcut.proj.", short)


def static_state(model):
    """The static stand-in file, through our converter for config 2, in ppdet 2.6 names."""
    import paddle

    from config import load_config
    from tools.weights.convert import convert_file

    with tempfile.TemporaryDirectory() as tmp:
        source, ours = os.path.join(tmp, "static.pdparams"), os.path.join(tmp, "ours.pdparams")
        keys = standin.ppdet_static_keys(**standin.STATIC_LIGHT_512)
        standin.save_fluid_pickle(source, standin.make_state(keys))
        convert_file(load_config(2), source, ours)
        converted = paddle.load(ours)
    state = {ppdet2_name(k): np.asarray(v) for k, v in converted.items()
             if isinstance(v, (np.ndarray, paddle.Tensor))}
    for name in list(state):  # the add_sublayer twins hold the same tensors
        for twin, primary in standin.PPDET2_TWINS.items():
            if name.startswith(primary):
                state[twin + name[len(primary):]] = state[name]
    wanted = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for name, shape in wanted.items():
        if name not in state and re.search(r"bbox_head\..*\.conv_dcn\.bias$", name):
            state[name] = np.zeros(shape, np.float32)
    unknown = sorted(set(state) - set(wanted))
    missing = sorted(set(wanted) - set(state))
    misshaped = sorted(k for k in wanted if k in state and state[k].shape != wanted[k])
    if unknown or missing or misshaped:
        raise RuntimeError(f"renaming does not fit ppdet's model: unknown {unknown[:5]}, "
                           f"missing {missing[:5]}, misshaped {misshaped[:5]}")
    return state


def ppdet_outputs(name):
    import paddle

    overrides, keys = PPDET[name]
    model = build_ppdet(overrides)
    if keys == "static":
        state = static_state(model)
    else:
        state = standin.make_state(standin.read_keys(keys))
    missing, unexpected = model.set_state_dict(state)
    if missing or unexpected:
        raise RuntimeError(f"{name}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.eval()
    model.inputs = {"image": paddle.to_tensor(reference_input())}
    with paddle.no_grad():
        model.model_arch()  # fills seg_pred, cate_pred_list, kernel_pred_list
    arrays = {"mask_feat": model.seg_pred.numpy()}
    for level in range(LEVELS):
        arrays[f"cate_eval_{level}"] = model.cate_pred_list[level].numpy()
        arrays[f"kernel_{level}"] = model.kernel_pred_list[level].numpy()
    # Key order of the committed files (it decides whether the npz bytes match).
    if name == "static_light512":
        order = ["mask_feat"] + [f"{kind}_{level}" for level in range(LEVELS)
                                 for kind in ("cate_eval", "kernel")]
    else:
        order = [f"{kind}_{level}" for kind in ("cate_eval", "kernel")
                 for level in range(LEVELS)] + ["mask_feat"]
    out = {}
    for key in order:
        thin(out, key, arrays[key])
    return out


# -------------------------------------------------------------------- comparing
def compare(new, path):
    """Lines describing how ``new`` differs from the file at ``path``; and whether the raw
    outputs stay within TEST_TOLERANCE with every shape, step and integer array equal."""
    old = np.load(path)
    lines, ok = [], set(old.files) == set(new)
    if not ok:
        lines.append(f"  names differ: {sorted(set(old.files) ^ set(new))}")
    for key in old.files:
        if key not in new:
            continue
        a, b = new[key], old[key]
        if a.shape != b.shape:
            lines.append(f"  {key}: shape {a.shape} vs committed {b.shape}")
            ok = False
        elif a.dtype.kind == "f":
            rel = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))
            lines.append(f"  {key:18s} max rel diff {rel:.2e}")
            ok &= key == "seg_scores" or rel <= TEST_TOLERANCE
        else:
            same = float(np.mean(a == b))
            if same < 1.0 or not key.endswith(("__step", "__shape")):
                lines.append(f"  {key:18s} equal {same:.6f}")
            ok &= same == 1.0 or key == "seg_masks_packed"
    return lines, ok


@entry_point
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", choices=NAMES, metavar="NAME",
                        help=f"golden to make (repeatable; default all of {', '.join(NAMES)})")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="folder of the .npz files")
    parser.add_argument("--solo-root", help="checkout of WXinlong/SOLO (for solo_*)")
    parser.add_argument("--check", action="store_true",
                        help="compare with the files in --output instead of writing them")
    args = parser.parse_args(argv)
    # oneDNN (PyTorch's CPU convolutions) picks kernels by the CPU's instruction set; the
    # committed SOLO files come from its AVX2 ones, and the AVX-512 ones it prefers where
    # present sum in another order. Read once, when torch first runs a convolution.
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
    names = args.only or NAMES
    if any(n in SOLO for n in names) and not args.solo_root:
        parser.error("solo_* goldens need --solo-root (or pick others with --only)")
    if args.solo_root and not os.path.isdir(os.path.join(args.solo_root, "mmdet")):
        raise MissingInputError(f"--solo-root {args.solo_root} is not a checkout of "
                                "WXinlong/SOLO (no mmdet/ folder in it)")
    failed = []
    for name in names:
        path = os.path.join(args.output, f"{name}.npz")
        if args.check and not os.path.isfile(path):
            raise MissingInputError(f"--check: {path} does not exist; run without --check "
                                    "to write it")
        out = solo_outputs(name, args.solo_root) if name in SOLO else ppdet_outputs(name)
        if args.check:
            lines, ok = compare(out, path)
            print(f"{name}: {'ok' if ok else 'DIFFERS'}", *lines, sep="\n")
            if not ok:
                failed.append(name)
        else:
            os.makedirs(args.output, exist_ok=True)
            np.savez_compressed(path, **out)
            print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
