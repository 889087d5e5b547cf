"""Config 2 (default): SOLOv2-Light, ResNet50-vd with DCNv2 in res3-res5, 512/852 test size.

Reference: PaddleDetection release/0.5 configs/solov2/solov2_light_r50_vd_fpn_dcn_512_3x.yml
and solov2_light_reader.yml (static graph).
"""

from .base import Published, SOLOv2Config

# PaddleClas's ImageNet ResNet50-vd (SSLD distillation), the backbone configs 2 and 3 train
# from; the .tar unpacks to a folder of per-parameter files.
SSLD_BACKBONE = Published(
    file="ResNet50_vd_ssld_pretrained.tar",
    url="https://paddle-imagenet-models-name.bj.bcebos.com/ResNet50_vd_ssld_pretrained.tar",
    converter="1_paddle_r50vd_ssld_2paddle.py",
    output="dygraph_r50vd_ssld.pdparams",
    role="backbone",
    unpacked="ResNet50_vd_ssld_pretrained")


class SOLOv2_Light_R50_VD_FPN_DCN_512_3x(SOLOv2Config):
    name = "solov2_light_r50_vd_fpn_dcn_512_3x"
    number = 2
    published = (
        Published(file="solov2_light_r50_vd_fpn_dcn_512_3x.pdparams",
                  url="https://paddlemodels.bj.bcebos.com/object_detection/"
                      "solov2_light_r50_vd_fpn_dcn_512_3x.pdparams",
                  converter="1_paddle_solov2_light_r50_vd_fpn_dcn_512_3x2paddle.py",
                  output="dygraph_solov2_light_r50_vd_fpn_dcn_512_3x.pdparams"),
        SSLD_BACKBONE,
    )

    def __init__(self):
        super().__init__()
        self.backbone_variant = "d"
        self.backbone_dcn_stages = (3, 4, 5)
        # The static ResNet defaulted to freeze_norm=True.
        self.backbone_norm = "frozen"
        self.head_stacked_convs = 3
        self.head_seg_feat_channels = 256
        # The last of the three tower convs is DCNv2 (dcn_v2_stages: [2]); the static code
        # gave it no bias.
        self.head_dcn_convs = (2,)
        self.head_dcn_bias = False
        self.mask_feat_channels = 128
        self.scale_ranges = ((1, 64), (32, 128), (64, 256), (128, 512), (256, 2048))
        self.drop_block = True
        # SOLOv2Loss weights each positive by whether its target mask is non-empty.
        self.dice_average = "nonempty"
        self.native_preprocess = "ppdet_static"
        self.test_size = (512, 852)
        self.train_sizes = (352, 384, 416, 448, 480, 512)
        self.train_max_size = 852
        self.train_color_distort = True
        self.train_random_crop = True
        self.train_cfg.update(
            model_path=SSLD_BACKBONE.output,
            # LinearWarmup start_factor 0 over 1000 steps; 270k iterations with x0.1 at
            # 180k and 240k; EMA 0.9998; backbone lr_mult_list [0.05, 0.05, 0.1, 0.15].
            warmup_iters=1000,
            warmup_ratio=0.0,
            max_iters=270000,
            lr_milestones=(180000, 240000),
            # The static PaddleDetection trainer applied no gradient clipping.
            grad_clip=None,
            backbone_lr_mult=(0.05, 0.05, 0.1, 0.15),
            backbone_norm_decay=False,
            ema=True,
        )
