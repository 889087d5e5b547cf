"""Predict images with SOLOv2 and draw the instances.

    python demo.py --config=2                      # images/test -> images/res
    python demo.py --config=0 --input photo.jpg --output out/ --thresh 0.5
    python demo.py --config=2 --engine onnx        # the model exported by tools/export_model.py
    python demo.py --weights output/<run>/model_final.pdparams   # config and classes from it
"""

import os
import sys
import time

from config import config_parser, config_table, positive_int, probability
from tools.data.coco import load_class_names
from tools.errors import MissingInputError, entry_point
from tools.inference.backends import add_engine_arguments, load_backend
from tools.inference.outputs import check_output_folders, common_folder, list_inputs, plan_outputs
from tools.inference.predictor import StageTimes, predict_stream, progress_bar
from tools.inference.visualize import draw_instances, save_image
from tools.weights.describe import load_described_config, summary


def parse_args(argv=None):
    parser = config_parser(__doc__, weights=True)
    parser.add_argument("--input", help="image file, folder or glob (default test_cfg.input)")
    parser.add_argument("--output", help="folder for drawn images (default test_cfg.output)")
    parser.add_argument("--batch-size", type=positive_int, help="images per forward pass")
    parser.add_argument("--thresh", type=probability,
                        help="draw detections scoring at least this (0..1)")
    parser.add_argument("--workers", type=positive_int, default=2,
                        help="reader and writer threads each")
    add_engine_arguments(parser)
    return parser.parse_intermixed_args(argv)


@entry_point
def main(argv=None):
    args = parse_args(argv)
    cfg, described = load_described_config(args.config, args.overrides, args.weights,
                                           "test_cfg")
    test = cfg.test_cfg
    input_spec = args.input or test.input
    output_dir = args.output or test.output
    batch_size = args.batch_size or test.batch_size
    thresh = test.draw_thresh if args.thresh is None else args.thresh
    print(config_table(cfg))
    if described:
        print(summary(described))

    class_names = (described or {}).get("class_names") or load_class_names(cfg)
    paths = list_inputs(input_spec)
    # Every output is named, and its folder proven writable, before anything is predicted.
    outputs = plan_outputs(paths, output_dir)
    check_output_folders(outputs, output_dir)
    predictor, style = load_backend(args.engine, cfg, test.model_path, args.model_dir)
    shown = input_spec if isinstance(input_spec, str) else " ".join(input_spec)
    print(f"{len(paths)} images from {shown}; preprocessing style {style!r}")
    if paths and any(os.sep in os.path.relpath(out, output_dir) for out in outputs):
        print(f"drawn images keep their paths below {common_folder(paths)} under {output_dir}")

    def draw_and_save(item, result):
        drawn = draw_instances(item.image, result, class_names, thresh)
        path = save_image(outputs[item.index], drawn)
        return path, int((result["scores"] >= thresh).sum())

    stream = dict(size=cfg.test_size, mean=cfg.pixel_mean, std=cfg.pixel_std, style=style,
                  batch_size=batch_size, num_workers=args.workers, keep_image=True)
    # Warm-up: the first images through the network are slow (memory allocation, kernel
    # selection); they are run once, untimed and unsaved.
    predict_stream(predictor, paths[:batch_size], on_error=lambda item: None,
                   **stream)
    # After the warm-up, which is where an engine may have had to give up oneDNN.
    print(f"engine: {getattr(predictor, 'description', args.engine)}")

    times = StageTimes()
    start = time.perf_counter()
    with progress_bar(len(paths), "demo") as bar:
        outputs = predict_stream(
            predictor, paths, consumer=draw_and_save, times=times, progress=bar.update,
            on_error=lambda item: bar.write(f"skipped: {item.error}", file=sys.stderr),
            **stream)
    wall = time.perf_counter() - start
    done = [out for out in outputs if out is not None]
    for path, count in done:
        print(f"{path}: {count} instances at score >= {thresh}")
    if not done:
        raise MissingInputError(f"no image could be read from {input_spec}")
    print(f"\n{len(done)} images in {wall:.2f} s: {len(done) / wall:.2f} FPS including "
          f"reading, preprocessing, post-processing and drawing (batch size {batch_size})")
    print(times.report(wall, len(done)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
