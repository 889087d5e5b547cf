"""Export a config's weights to a deployable inference model: Paddle Inference and ONNX.

    python tools/export_model.py --config=2                    # -> inference_model/<config name>/
    python tools/export_model.py --config=0 --output out/r50 model_path=w.pdparams
    python tools/export_model.py --weights output/<run>/model_final.pdparams   # its config

Writes model.json / model.pdiparams (Paddle 3 graph), model.onnx (when paddle2onnx converts
it), the network alone (network.*, which this repo's engines run before the numpy
post-processing) and deploy.json into the output folder; ``--split`` also writes the
post-processing graph alone (postprocess.*), which tools/benchmark.py --mode split times. What each
file holds and what is known not to work: tools/deploy/export.py. Run the result with
``python demo.py --engine paddle-inference`` or ``--engine onnx``.
"""

import os
import sys

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import config_parser  # noqa: E402
from tools.deploy.export import export  # noqa: E402
from tools.device import use_device  # noqa: E402
from tools.errors import entry_point  # noqa: E402
from tools.inference.backends import default_model_dir  # noqa: E402
from tools.weights.describe import load_described_config, summary  # noqa: E402


@entry_point
def main(argv=None):
    parser = config_parser(__doc__, weights=True)  # --weights: default test_cfg.model_path
    parser.add_argument("--output", help="folder to write (default inference_model/<config>)")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX conversion")
    parser.add_argument("--split", action="store_true",
                        help="also save the post-processing graph alone (for benchmarks)")
    args = parser.parse_intermixed_args(argv)
    cfg, described = load_described_config(args.config, args.overrides, args.weights,
                                           "test_cfg")
    if described:
        print(summary(described))
    output = args.output or default_model_dir(cfg)
    use_device(args.device)
    info = export(cfg, cfg.test_cfg.model_path, output,
                  onnx=not args.no_onnx, split=args.split, download=not args.no_download)
    failed = {part: why for part, why in info["onnx"].items() if why != "ok"}
    print(f"exported {cfg.name} to {output}" +
          (f" (no ONNX: {failed})" if failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
