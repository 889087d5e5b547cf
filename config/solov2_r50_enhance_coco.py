"""Config 3: PaddleDetection 2.x "SOLOv2 enhance": config 2's network plus DCNv2 in every
conv of the mask feature head, trained with BN statistics unfrozen.

Reference: PaddleDetection release/2.6 configs/solov2/solov2_r50_enhance_coco.yml with
_base_/solov2_r50_fpn.yml and _base_/solov2_light_reader.yml.
"""

from .base import Published, SOLOv2Config
from .solov2_light_r50_vd_fpn_dcn_512_3x import SSLD_BACKBONE, SOLOv2_Light_R50_VD_FPN_DCN_512_3x


class SOLOv2_R50_Enhance_COCO(SOLOv2_Light_R50_VD_FPN_DCN_512_3x):
    name = "solov2_r50_enhance_coco"
    number = 3
    published = (
        Published(file="solov2_r50_enhance_coco.pdparams",
                  url="https://paddledet.bj.bcebos.com/models/solov2_r50_enhance_coco.pdparams",
                  converter="1_paddle_solov2_r50_enhance_coco2paddle.py",
                  output="dygraph_solov2_r50_enhance_coco.pdparams"),
        SSLD_BACKBONE,
    )

    def __init__(self):
        super().__init__()
        # freeze_at: 0 in 2.x freezes the stem and res2 (as frozen_stages=1 does, inherited);
        # freeze_norm: false with sync_bn: backbone BN statistics are trained.
        self.backbone_norm = "train"
        self.head_dcn_bias = True  # 2.x DeformableConvV2 always has a bias
        self.mask_feat_dcn = True  # SOLOv2MaskHead use_dcn_in_tower: True
        # The 2.x light reader keeps the R50 scale ranges, unlike the static light config.
        self.scale_ranges = SOLOv2Config().scale_ranges
        self.native_preprocess = "ppdet2"
        # Training starts from the same converted ResNet50-vd SSLD backbone as config 2
        # (PaddleDetection 2.x used its "ssld_v2" release of that ImageNet model).
        self.train_cfg.update(
            # 36 epochs, x0.1 after epochs 24 and 33 (7330 iterations per epoch at batch 16).
            max_iters=36 * 7330,
            lr_milestones=(24 * 7330, 33 * 7330),
        )
