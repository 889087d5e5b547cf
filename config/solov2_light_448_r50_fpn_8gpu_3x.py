"""Config 1: SOLOv2-Light, ResNet50-vb FPN, 448/768 test size.

Reference: WXinlong/SOLO configs/solov2/solov2_light_448_r50_fpn_8gpu_3x.py.
"""

from .base import Published, SOLOv2Config


class SOLOv2_Light_448_R50_FPN_8GPU_3x(SOLOv2Config):
    name = "solov2_light_448_r50_fpn_8gpu_3x"
    number = 1
    published = (
        Published(file="SOLOv2_LIGHT_448_R50_3x.pth",
                  url="https://cloudstor.aarnet.edu.au/plus/s/cn1jABtVJwsbb2G/download",
                  converter="1_solov2_light_448_r50_fpn_8gpu_3x2paddle.py",
                  output="dygraph_solov2_light_448_r50_fpn_8gpu_3x.pdparams"),
    )

    def __init__(self):
        super().__init__()
        self.head_stacked_convs = 2
        self.head_seg_feat_channels = 256
        self.mask_feat_channels = 128
        self.scale_ranges = ((1, 56), (28, 112), (56, 224), (112, 448), (224, 896))
        self.test_size = (448, 768)
        self.train_sizes = (352, 384, 416, 448, 480, 512)
        self.train_max_size = 768
