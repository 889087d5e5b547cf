"""Where every parameter of our model lives in each published weight format.

Each ``*_pairs(cfg)`` function lists (our name, source name) for every tensor, generated from
the config so that the lists stay exact for every architecture variant. Sources:

  solo_pth      original SOLO (mmdet 1.0) .pth: backbone.layer1.0.conv1.weight,
                neck.lateral_convs.0.conv.weight, bbox_head.kernel_convs.0.gn.weight, ...
  ppdet_static  PaddleDetection release/0.5 (fluid) .pdparams: res2a_branch2a_weights,
                bn2a_branch2a_scale, fpn_inner_res5_sum_w, bbox_head.kernel_convs.0_weights,
                mask_feat_head.convs_all_levels.1.conv0.gn_scale, ...
  ppdet2        PaddleDetection 2.x dygraph .pdparams: backbone.res2.res2a.branch2a.conv.weight,
                neck.fpn_inner_res5_sum.weight, solov2_head.bbox_head.solo_cate.weight, ...
  ssld          ImageNet ResNet50-vd (PaddleClas, fluid parameter folder): the static
                backbone names plus the classifier fc_0.*; backbone only.

Conv and norm tensors have the same layout (OIHW, per-channel vectors) in all of them, so a
tensor is copied as it is; only names change.
"""

from model.resnet import STAGE_BLOCKS

from ..errors import ConfigError

BN_SUFFIXES = ("weight", "bias", "_mean", "_variance")
TORCH_BN = ("weight", "bias", "running_mean", "running_var")
FLUID_BN = ("scale", "offset", "mean", "variance")


def _norm(ours, theirs, their_suffixes, sep="."):
    return [(f"{ours}.norm.{a}", f"{theirs}{sep}{b}") for a, b in zip(BN_SUFFIXES, their_suffixes)]


def _gn(ours, theirs, their_suffixes, sep="."):
    return [(f"{ours}.norm.{a}", f"{theirs}{sep}{b}")
            for a, b in zip(("weight", "bias"), their_suffixes)]


def _blocks():
    """(our block prefix, stage number 2..5, block index, letter) for ResNet-50."""
    for s, count in enumerate(STAGE_BLOCKS):
        for b in range(count):
            yield f"backbone.stages.{s}.{b}", s + 2, b, chr(ord("a") + b)


def _has_shortcut(b):
    return b == 0  # the first block of every ResNet-50 stage projects its input


def _check_supported(cfg, source, backbone_dcn=True, head_dcn=True, mask_dcn=True):
    problems = []
    if cfg.backbone_dcn_stages and not backbone_dcn:
        problems.append("a DCN backbone")
    if cfg.head_dcn_convs and not head_dcn:
        problems.append("DCN in the head")
    if cfg.mask_feat_dcn and not mask_dcn:
        problems.append("DCN in the mask feature head")
    if problems:
        raise ConfigError(f"{cfg.name} has {' and '.join(problems)}, which {source} "
                          "weights never have; pick the matching --config")


# ------------------------------------------------------------------------ SOLO .pth
def solo_pth_pairs(cfg):
    _check_supported(cfg, "SOLO .pth", backbone_dcn=False, head_dcn=False, mask_dcn=False)
    if cfg.backbone_variant != "b":
        raise ConfigError("SOLO .pth files hold a ResNet-b backbone; use config 0 or 1")
    pairs = [("backbone.stem.0.conv.weight", "backbone.conv1.weight")]
    pairs += _norm("backbone.stem.0", "backbone.bn1", TORCH_BN)
    for ours, stage, b, _ in _blocks():
        theirs = f"backbone.layer{stage - 1}.{b}"
        for k in (1, 2, 3):
            pairs.append((f"{ours}.conv{k}.conv.weight", f"{theirs}.conv{k}.weight"))
            pairs += _norm(f"{ours}.conv{k}", f"{theirs}.bn{k}", TORCH_BN)
        if _has_shortcut(b):
            pairs.append((f"{ours}.shortcut.proj.conv.weight", f"{theirs}.downsample.0.weight"))
            pairs += _norm(f"{ours}.shortcut.proj", f"{theirs}.downsample.1", TORCH_BN)
    for i in range(4):
        for kind in ("lateral_convs", "fpn_convs"):
            for p in ("weight", "bias"):
                pairs.append((f"neck.{kind}.{i}.{p}", f"neck.{kind}.{i}.conv.{p}"))
    for branch in ("kernel_convs", "cate_convs"):
        for i in range(cfg.head_stacked_convs):
            ours, theirs = f"head.{branch}.{i}", f"bbox_head.{branch}.{i}"
            pairs.append((f"{ours}.conv.weight", f"{theirs}.conv.weight"))
            pairs += _gn(ours, f"{theirs}.gn", ("weight", "bias"))
    for out in ("solo_kernel", "solo_cate"):
        pairs += [(f"head.{out}.{p}", f"bbox_head.{out}.{p}") for p in ("weight", "bias")]
    for level, j in _mask_convs():
        ours = f"mask_feat_head.convs_all_levels.{level}.{j}"
        theirs = f"mask_feat_head.convs_all_levels.{level}.conv{j}"
        pairs.append((f"{ours}.conv.weight", f"{theirs}.conv.weight"))
        pairs += _gn(ours, f"{theirs}.gn", ("weight", "bias"))
    pairs.append(("mask_feat_head.conv_pred.conv.weight", "mask_feat_head.conv_pred.0.conv.weight"))
    pairs += _gn("mask_feat_head.conv_pred", "mask_feat_head.conv_pred.0.gn", ("weight", "bias"))
    return pairs


def solo_pth_ignored(name):
    # BatchNorm's update counter: meaningful to PyTorch's momentum=None mode only.
    return name.endswith(".num_batches_tracked")


def _mask_convs():
    """(level, conv index) of every 3x3 conv of the mask feature head."""
    yield 0, 0
    for level in range(1, 4):
        for j in range(level):
            yield level, j


# ---------------------------------------------------------------- PaddleDetection 0.5
def _fluid_backbone_pairs(cfg, with_offsets=True):
    """Backbone names shared by the static detector files and the ImageNet folders."""
    if cfg.backbone_variant == "d":
        stem = ["conv1_1", "conv1_2", "conv1_3"]
        stem_bn = ["bnv1_1", "bnv1_2", "bnv1_3"]
    else:
        stem, stem_bn = ["conv1"], ["bn_conv1"]
    pairs = []
    for k, (conv, bn) in enumerate(zip(stem, stem_bn)):
        pairs.append((f"backbone.stem.{k}.conv.weight", f"{conv}_weights"))
        pairs += _norm(f"backbone.stem.{k}", bn, FLUID_BN, sep="_")
    for ours, stage, b, letter in _blocks():
        name = f"res{stage}{letter}"
        dcn = stage in cfg.backbone_dcn_stages
        for k, branch in zip((1, 2, 3), ("branch2a", "branch2b", "branch2c")):
            conv = f"{ours}.conv{k}"
            if k == 2 and dcn:
                pairs.append((f"{conv}.conv.conv.weight", f"{name}_{branch}_weights"))
                if with_offsets:
                    pairs.append((f"{conv}.conv.conv_offset.weight",
                                  f"{name}_{branch}_conv_offset.w_0"))
                    pairs.append((f"{conv}.conv.conv_offset.bias",
                                  f"{name}_{branch}_conv_offset.b_0"))
            else:
                pairs.append((f"{conv}.conv.weight", f"{name}_{branch}_weights"))
            pairs += _norm(conv, f"bn{stage}{letter}_{branch}", FLUID_BN, sep="_")
        if _has_shortcut(b):
            pairs.append((f"{ours}.shortcut.proj.conv.weight", f"{name}_branch1_weights"))
            pairs += _norm(f"{ours}.shortcut.proj", f"bn{stage}{letter}_branch1", FLUID_BN,
                           sep="_")
    return pairs


def _fluid_conv(ours, theirs, dcn, bias):
    """A ConvNorm built by PaddleDetection 0.5's ConvNorm / DeformConvNorm helpers."""
    if not dcn:
        return [(f"{ours}.conv.weight", f"{theirs}_weights")]
    pairs = [(f"{ours}.conv.conv.weight", f"{theirs}_weights"),
             (f"{ours}.conv.conv_offset.weight", f"{theirs}_conv_offset.w_0"),
             (f"{ours}.conv.conv_offset.bias", f"{theirs}_conv_offset.b_0")]
    if bias:
        pairs.append((f"{ours}.conv.conv.bias", f"{theirs}_bias"))
    return pairs


def ppdet_static_pairs(cfg):
    _check_supported(cfg, "PaddleDetection 0.5", mask_dcn=False)
    pairs = _fluid_backbone_pairs(cfg)
    # FPN: the top level's 1x1 conv is fpn_inner_res5_sum, the others *_lateral.
    for i, stage in enumerate((2, 3, 4, 5)):
        inner = "fpn_inner_res5_sum" if stage == 5 else f"fpn_inner_res{stage}_sum_lateral"
        pairs += [(f"neck.lateral_convs.{i}.weight", f"{inner}_w"),
                  (f"neck.lateral_convs.{i}.bias", f"{inner}_b"),
                  (f"neck.fpn_convs.{i}.weight", f"fpn_res{stage}_sum_w"),
                  (f"neck.fpn_convs.{i}.bias", f"fpn_res{stage}_sum_b")]
    for branch in ("kernel_convs", "cate_convs"):
        for i in range(cfg.head_stacked_convs):
            ours, theirs = f"head.{branch}.{i}", f"bbox_head.{branch}.{i}"
            pairs += _fluid_conv(ours, theirs, i in cfg.head_dcn_convs, cfg.head_dcn_bias)
            pairs += _gn(ours, f"{theirs}.gn", ("scale", "offset"), sep="_")
    for out in ("solo_kernel", "solo_cate"):
        pairs += [(f"head.{out}.{p}", f"bbox_head.{out}.{p}") for p in ("weight", "bias")]
    for level, j in _mask_convs():
        ours = f"mask_feat_head.convs_all_levels.{level}.{j}"
        theirs = f"mask_feat_head.convs_all_levels.{level}.conv{j}"
        pairs += _fluid_conv(ours, theirs, False, False)
        pairs += _gn(ours, f"{theirs}.gn", ("scale", "offset"), sep="_")
    pairs += _fluid_conv("mask_feat_head.conv_pred", "mask_feat_head.conv_pred.0", False, False)
    pairs += _gn("mask_feat_head.conv_pred", "mask_feat_head.conv_pred.0.gn",
                 ("scale", "offset"), sep="_")
    return pairs


# ---------------------------------------------------------------- PaddleDetection 2.x
def _ppdet2_conv(ours, theirs, dcn):
    """ppdet.modeling.layers.ConvNormLayer: plain .conv or DeformableConvV2 (with bias)."""
    if not dcn:
        return [(f"{ours}.conv.weight", f"{theirs}.conv.weight")]
    return [(f"{ours}.conv.conv.weight", f"{theirs}.conv.conv_dcn.weight"),
            (f"{ours}.conv.conv.bias", f"{theirs}.conv.conv_dcn.bias"),
            (f"{ours}.conv.conv_offset.weight", f"{theirs}.conv.conv_offset.weight"),
            (f"{ours}.conv.conv_offset.bias", f"{theirs}.conv.conv_offset.bias")]


def ppdet2_pairs(cfg):
    if cfg.head_dcn_convs and not cfg.head_dcn_bias:
        raise ConfigError(f"{cfg.name} builds head DCNs without bias; PaddleDetection 2.x "
                          "head DCNs have one (use config 3 for the enhance model)")
    pairs = []
    stem = ["conv1_1", "conv1_2", "conv1_3"] if cfg.backbone_variant == "d" else ["conv1"]
    for k, name in enumerate(stem):
        theirs = f"backbone.conv1.{name}"
        pairs.append((f"backbone.stem.{k}.conv.weight", f"{theirs}.conv.weight"))
        pairs += _norm(f"backbone.stem.{k}", f"{theirs}.norm", BN_SUFFIXES)
    for ours, stage, b, letter in _blocks():
        theirs = f"backbone.res{stage}.res{stage}{letter}"
        for k, branch in zip((1, 2, 3), ("branch2a", "branch2b", "branch2c")):
            conv = f"{ours}.conv{k}"
            if k == 2 and stage in cfg.backbone_dcn_stages:
                # The backbone's ConvNormLayer keeps a bare DeformConv2D (no bias) as .conv.
                src = f"{theirs}.{branch}"
                pairs += [(f"{conv}.conv.conv.weight", f"{src}.conv.weight"),
                          (f"{conv}.conv.conv_offset.weight", f"{src}.conv_offset.weight"),
                          (f"{conv}.conv.conv_offset.bias", f"{src}.conv_offset.bias")]
            else:
                pairs.append((f"{conv}.conv.weight", f"{theirs}.{branch}.conv.weight"))
            pairs += _norm(conv, f"{theirs}.{branch}.norm", BN_SUFFIXES)
        if _has_shortcut(b):
            # ResNet-vd wraps the strided shortcuts in Sequential(pool, conv).
            short = f"{theirs}.short.conv" if cfg.backbone_variant == "d" and stage > 2 \
                else f"{theirs}.short"
            pairs.append((f"{ours}.shortcut.proj.conv.weight", f"{short}.conv.weight"))
            pairs += _norm(f"{ours}.shortcut.proj", f"{short}.norm", BN_SUFFIXES)
    for i, stage in enumerate((2, 3, 4, 5)):
        inner = "fpn_inner_res5_sum" if stage == 5 else f"fpn_inner_res{stage}_sum_lateral"
        for p in ("weight", "bias"):
            pairs += [(f"neck.lateral_convs.{i}.{p}", f"neck.{inner}.{p}"),
                      (f"neck.fpn_convs.{i}.{p}", f"neck.fpn_res{stage}_sum.{p}")]
    for branch in ("kernel_convs", "cate_convs"):
        for i in range(cfg.head_stacked_convs):
            ours, theirs = f"head.{branch}.{i}", f"solov2_head.bbox_head.{branch}.{i}"
            pairs += _ppdet2_conv(ours, theirs, i in cfg.head_dcn_convs)
            pairs += _gn(ours, f"{theirs}.norm", ("weight", "bias"))
    for out in ("solo_kernel", "solo_cate"):
        pairs += [(f"head.{out}.{p}", f"solov2_head.bbox_head.{out}.{p}")
                  for p in ("weight", "bias")]
    for level, j in _mask_convs():
        ours = f"mask_feat_head.convs_all_levels.{level}.{j}"
        theirs = f"mask_head.conv_pre_feat{level}.mask_feat_head.convs_all_levels.{level}.conv{j}"
        pairs += _ppdet2_conv(ours, theirs, cfg.mask_feat_dcn)
        pairs += _gn(ours, f"{theirs}.norm", ("weight", "bias"))
    theirs = "mask_head.mask_feat_head.conv_pred.0"
    pairs += _ppdet2_conv("mask_feat_head.conv_pred", theirs, cfg.mask_feat_dcn)
    pairs += _gn("mask_feat_head.conv_pred", f"{theirs}.norm", ("weight", "bias"))
    return pairs


# Paddle 2.x registers a layer added with add_sublayer('a.b', layer) and also assigned to
# self.attr under both names, so such tensors may appear twice. alias prefix -> canonical.
PPDET2_ALIASES = {
    "solov2_head.solo_kernel.": "solov2_head.bbox_head.solo_kernel.",
    "solov2_head.solo_cate.": "solov2_head.bbox_head.solo_cate.",
    "mask_head.conv_pred.": "mask_head.mask_feat_head.conv_pred.0.",
}


# ----------------------------------------------------------------- ImageNet backbone
def ssld_pairs(cfg):
    """Backbone only; DCN offset predictors have no ImageNet counterpart (they start at 0)."""
    return _fluid_backbone_pairs(cfg, with_offsets=False)


def ssld_ignored(name):
    # The ImageNet classifier (fc_0.w_0 [2048, 1000], fc_0.b_0 [1000]).
    return name.startswith("fc_0.")


def detect_source(names):
    """Guess the format of a pickled .pdparams from its tensor names."""
    names = set(names)
    if any(n.startswith(("solov2_head.", "mask_head.")) for n in names):
        return "ppdet2"
    fluid_names = any(n.endswith("_weights") for n in names)
    if fluid_names and any(n.startswith("bbox_head.") for n in names):
        return "ppdet_static"
    if any(n.startswith("backbone.stem.") for n in names):
        return "ours"
    if any(n.startswith("bbox_head.") for n in names):
        return "solo_pth"
    return None
