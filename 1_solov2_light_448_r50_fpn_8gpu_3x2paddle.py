"""Convert the original SOLO SOLOv2_LIGHT_448_R50_3x.pth (PyTorch) for config 1.

    python 1_solov2_light_448_r50_fpn_8gpu_3x2paddle.py [SOURCE] [--output OUT] [key=value ...]

SOURCE defaults to SOLOv2_LIGHT_448_R50_3x.pth; OUT to
dygraph_solov2_light_448_r50_fpn_8gpu_3x.pdparams. Needs PyTorch (CPU) to read the file.
"""

import os
import sys

from tools.errors import entry_point
from tools.weights.convert import converter_main

main = entry_point(converter_main)

if __name__ == "__main__":
    sys.exit(main(os.path.basename(__file__)))
