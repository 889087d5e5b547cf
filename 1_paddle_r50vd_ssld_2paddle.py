"""Convert the ImageNet ResNet50-vd (SSLD) backbone that config 2 trains from.

    python 1_paddle_r50vd_ssld_2paddle.py [SOURCE] [--output OUT]

SOURCE is the folder of per-parameter files ResNet50_vd_ssld_pretrained/ or the .tar it
comes in (the default takes whichever exists); OUT defaults to dygraph_r50vd_ssld.pdparams.
The output holds the backbone only; the DCN offset predictors start at zero in training.
"""

import os
import sys

from tools.errors import entry_point
from tools.weights.convert import converter_main

main = entry_point(converter_main)

if __name__ == "__main__":
    sys.exit(main(os.path.basename(__file__)))
