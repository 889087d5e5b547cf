"""Config 0: SOLOv2, ResNet50-vb FPN, 3x multi-scale schedule, 800/1333 test size.

Reference: WXinlong/SOLO configs/solov2/solov2_r50_fpn_8gpu_3x.py. The same architecture is
PaddleDetection's solov2_r50_fpn_3x (release/0.5) and solov2_r50_fpn_3x_coco (2.x), so their
weights load here too; each converted file records which preprocessing it expects.
"""

from .base import Published, SOLOv2Config


class SOLOv2_R50_FPN_8GPU_3x(SOLOv2Config):
    name = "solov2_r50_fpn_8gpu_3x"
    number = 0
    published = (
        Published(file="SOLOv2_R50_3x.pth",
                  url="https://cloudstor.aarnet.edu.au/plus/s/nkxN1FipqkbfoKX/download",
                  converter="1_solov2_r50_fpn_8gpu_3x2paddle.py",
                  output="dygraph_solov2_r50_fpn_8gpu_3x.pdparams"),
        Published(file="solov2_r50_fpn_3x.pdparams",
                  url="https://paddlemodels.bj.bcebos.com/object_detection/"
                      "solov2_r50_fpn_3x.pdparams",
                  converter="1_paddle_solov2_r50_fpn_8gpu_3x2paddle.py",
                  output="dygraph_paddle_solov2_r50_fpn_3x.pdparams"),
        Published(file="solov2_r50_fpn_3x_coco.pdparams",
                  url="https://paddledet.bj.bcebos.com/models/solov2_r50_fpn_3x_coco.pdparams",
                  converter="1_paddle_solov2_r50_fpn_8gpu_3x2paddle.py",
                  output="dygraph_solov2_r50_fpn_3x_coco.pdparams"),
    )

    def __init__(self):
        super().__init__()
        # The base class already holds this config's values: 4 x 512-channel towers,
        # 256-channel kernels, scale ranges up to 2048, 800/1333 test, 640..800 train.
