"""PaddleDetection 2.6's own SOLOv2, built by its own workspace, for the goldens
(tools/dev/make_goldens.py) and the side-by-side timing (tools/dev/ppdet_compare.py).

Only the architecture values are written here, taken from PaddleDetection's config files
(tag v2.6.0); the model is whatever the installed ``ppdet`` package builds from them.
"""

import copy

# PaddleDetection 2.6 architecture settings, as in configs/solov2/_base_/solov2_r50_fpn.yml
# and the config files named below (training-only fields left out: they do not change inference).
PPDET_BASE = {
    "architecture": "SOLOv2",
    "SOLOv2": {"backbone": "ResNet", "neck": "FPN", "solov2_head": "SOLOv2Head",
               "mask_head": "SOLOv2MaskHead"},
    "ResNet": {"depth": 50, "freeze_at": 0, "return_idx": [0, 1, 2, 3], "num_stages": 4},
    "FPN": {"out_channel": 256},
    "SOLOv2Head": {"seg_feat_channels": 512, "stacked_convs": 4,
                   "num_grids": [40, 36, 24, 16, 12], "kernel_out_channels": 256},
    "SOLOv2MaskHead": {"mid_channels": 128, "out_channels": 256, "start_level": 0,
                       "end_level": 3},
}
ENHANCE = {  # solov2_r50_enhance_coco.yml
    "ResNet": {"variant": "d", "freeze_norm": False, "norm_type": "sync_bn",
               "dcn_v2_stages": [1, 2, 3]},
    "SOLOv2Head": {"seg_feat_channels": 256, "stacked_convs": 3, "kernel_out_channels": 128,
                   "dcn_v2_stages": [2], "drop_block": True},
    "SOLOv2MaskHead": {"out_channels": 128, "use_dcn_in_tower": True},
}
LIGHT_512 = {  # config 2 (config/solov2_light_r50_vd_fpn_dcn_512_3x.py) in ppdet 2.6 terms
    "ResNet": {"variant": "d", "dcn_v2_stages": [1, 2, 3]},
    "SOLOv2Head": {"seg_feat_channels": 256, "stacked_convs": 3, "kernel_out_channels": 128,
                   "dcn_v2_stages": [2]},
    "SOLOv2MaskHead": {"out_channels": 128},
}


def build_ppdet(overrides):
    """ppdet's SOLOv2 created by its own workspace from PPDET_BASE merged with overrides."""
    from ppdet.core import workspace

    registry = workspace.global_config
    touched = set(PPDET_BASE) | set(overrides)
    # merge_config writes into the registered class entries; keep their items to restore.
    pristine = {k: dict(registry[k]) for k in touched if isinstance(registry.get(k), dict)}
    try:
        workspace.merge_config(copy.deepcopy(PPDET_BASE))
        workspace.merge_config(copy.deepcopy(overrides))
        return workspace.create("SOLOv2")
    finally:  # leave the registry as imported, so that cases do not leak into each other
        for key in touched:
            if key in pristine:
                registry[key].clear()
                registry[key].update(pristine[key])
            else:
                registry.pop(key, None)


# Our config number -> the PaddleDetection 2.6 overrides of PPDET_BASE with that architecture.
ARCHITECTURES = {0: {}, 2: LIGHT_512, 3: ENHANCE}
