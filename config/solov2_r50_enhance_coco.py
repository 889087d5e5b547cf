"""Config 3: PaddleDetection 2.x "SOLOv2 enhance": ResNet50-vd + DCNv2, DCN mask feature head.

Reference: PaddleDetection release/2.6 configs/solov2/solov2_r50_enhance_coco.yml with
_base_/solov2_r50_fpn.yml and _base_/solov2_light_reader.yml.
"""

from .base import SOLOv2Config


class SOLOv2_R50_Enhance_COCO(SOLOv2Config):
    name = "solov2_r50_enhance_coco"

    def __init__(self):
        super().__init__()
        self.backbone_variant = "d"
        self.backbone_dcn_stages = (3, 4, 5)
        # freeze_at: 0 in 2.x freezes the stem and res2, the same as frozen_stages=1.
        # freeze_norm: false with sync_bn: backbone BN statistics are trained.
        self.backbone_norm = "train"
        self.head_stacked_convs = 3
        self.head_seg_feat_channels = 256
        self.head_dcn_convs = (2,)
        self.head_dcn_bias = True
        self.mask_feat_channels = 128
        self.mask_feat_dcn = True
        # The 2.x light reader keeps the R50 scale ranges, unlike the static light config.
        self.drop_block = True
        self.native_preprocess = "ppdet2"
        self.test_size = (512, 852)
        self.train_sizes = (352, 384, 416, 448, 480, 512)
        self.train_max_size = 852
        self.train_color_distort = True
        self.train_random_crop = True
        self.train_cfg.update(
            warmup_iters=1000,
            warmup_ratio=0.0,
            # 36 epochs, x0.1 after epochs 24 and 33.
            max_iters=36 * 7330,
            lr_milestones=(24 * 7330, 33 * 7330),
            grad_clip=None,
            backbone_lr_mult=(0.05, 0.05, 0.1, 0.15),
            backbone_norm_decay=False,
            ema=True,
        )
        self.test_cfg.model_path = "dygraph_solov2_r50_enhance_coco.pdparams"
        self.eval_cfg.model_path = "dygraph_solov2_r50_enhance_coco.pdparams"
