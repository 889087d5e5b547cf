"""Predict images and videos with SOLOv2 and draw the instances.

    python demo.py --config=2                      # images/test -> images/res
    python demo.py --config=0 --input photo.jpg photos/ --output out/ --thresh 0.5
    python demo.py --config=2 --input clip.mp4     # -> images/res/clip.mp4, every frame drawn
    python demo.py --config=2 --camera 0           # a webcam until Ctrl-C -> images/res/camera0.mp4
    python demo.py --config=2 --save-json --save-masks --no-draw   # results as data only
    python demo.py --config=2 --engine onnx        # exported on first use, or --model-dir DIR
    python demo.py --weights output/<run>/model_final.pdparams   # config and classes from it

The config's default weights are fetched, converted and cached on first use (README,
Weights); --no-download or SOLOV2_OFFLINE=1 turns that off.
"""

import os
import re
import sys
import time

import numpy as np

from config import config_parser, config_table, nonnegative_int, positive_int, probability
from tools.errors import ConfigError, MissingInputError, entry_point
from tools.files import check_writable, repo_path
from tools.inference.api import Predictor
from tools.inference.backends import add_engine_arguments, default_model_dir
from tools.inference.instances import write_results
from tools.inference.outputs import check_output_folders, common_folder, list_inputs
from tools.inference.predictor import StageTimes, progress_bar
from tools.inference.video import (
    gui_available,
    plan_video_outputs,
    predict_video,
    record_camera,
    split_inputs,
)
from tools.inference.visualize import save_image
from tools.weights.describe import load_described_config, summary

RESULTS = "results.json"


def parse_args(argv=None):
    parser = config_parser(__doc__, weights=True)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", nargs="+", metavar="SPEC",
                        help="image or video files, folders or globs (default test_cfg.input)")
    source.add_argument("--camera", type=nonnegative_int, metavar="N",
                        help="predict camera N (0: the first webcam) until Ctrl-C")
    parser.add_argument("--output", help="folder for drawn images (default test_cfg.output)")
    parser.add_argument("--batch-size", type=positive_int, help="images per forward pass")
    parser.add_argument("--thresh", type=probability,
                        help="draw detections scoring at least this (0..1)")
    parser.add_argument("--workers", type=positive_int, default=2,
                        help="reader and writer threads each")
    parser.add_argument("--save-json", action="store_true",
                        help=f"also write {RESULTS} in the output folder: per image its size "
                             "and detections (class, score, box, RLE mask)")
    parser.add_argument("--save-masks", action="store_true",
                        help="also write one 0/255 PNG per instance beside each drawn image")
    parser.add_argument("--no-draw", action="store_true",
                        help="write no drawn images or videos (with --save-json/--save-masks)")
    add_engine_arguments(parser)
    args = parser.parse_intermixed_args(argv)
    if args.input:
        # --input takes several words, so key=value words typed after it land there; a word
        # naming no file that looks like one is an override.
        words = [w for w in args.input if re.match(r"^[A-Za-z_][\w.]*=", w)
                 and not os.path.exists(w)]
        args.input = [w for w in args.input if w not in words]
        args.overrides += words
        if not args.input:
            parser.error("--input: give at least one image or video")
    return args


@entry_point
def main(argv=None):
    args = parse_args(argv)
    cfg, described = load_described_config(args.config, args.overrides, args.weights,
                                           "test_cfg")
    test = cfg.test_cfg
    output_dir = args.output or test.output
    batch_size = args.batch_size or test.batch_size
    thresh = test.draw_thresh if args.thresh is None else args.thresh
    draw = not args.no_draw
    if not (draw or args.save_json or args.save_masks):
        raise ConfigError("--no-draw leaves nothing to write: add --save-json or --save-masks")
    print(config_table(cfg))
    if described:
        print(summary(described))

    # Every output is named, and its folder proven writable, before anything is predicted.
    if args.camera is None:
        # The config's default input is the repo's images/test wherever demo.py runs from.
        specs = args.input or repo_path(test.input)
        shown = specs if isinstance(specs, str) else " ".join(specs)
        paths = list_inputs(specs)
        images, videos = split_inputs(paths)
        outputs = dict(zip(paths, plan_video_outputs(paths, videos, output_dir)))
        check_output_folders(outputs.values(), output_dir)
    else:
        images, videos, outputs = [], [], {}
        check_writable(output_dir, "output folder")

    model_dir = args.model_dir
    if args.engine != "dygraph" and model_dir is None \
            and os.path.exists(os.path.join(default_model_dir(cfg), "deploy.json")):
        model_dir = default_model_dir(cfg)  # what tools/export_model.py wrote; else the cache
    predictor = Predictor(cfg, described=described, engine=args.engine, device=args.device,
                          model_dir=model_dir, download=not args.no_download,
                          batch_size=batch_size, num_workers=args.workers,
                          tensorrt=args.tensorrt)
    if args.camera is None:
        kinds = f"{len(images)} images" + (f" and {len(videos)} videos" if videos else "")
        print(f"{kinds} from {shown}; preprocessing style {predictor.style!r}")
        if paths and any(os.sep in os.path.relpath(out, output_dir) for out in outputs.values()):
            print(f"drawn images keep their paths below {common_folder(paths)} under "
                  f"{output_dir}")
        base = common_folder(paths) if paths else None
        names = {p: os.path.relpath(os.path.abspath(p), base) for p in paths}

    # Warm-up: the first images through the network are slow (memory allocation, kernel
    # selection); they are run once, untimed and unsaved.
    warm = images[:batch_size] or [np.zeros((v.height, v.width, 3), np.uint8) for v in videos[:1]]
    predictor.predict(warm, on_error=lambda item: None, times=StageTimes())
    # After the warm-up, which is where an engine may have had to give up oneDNN.
    print(f"engine: {predictor.description}")

    records = []
    if args.camera is not None:
        records += run_camera(predictor, args, output_dir, thresh)
    if images:
        records += run_images(predictor, images, outputs, names, thresh, draw, args, batch_size,
                              shown, videos)
    for video in videos:
        records += run_video(predictor, video, outputs[video.path] if draw else None,
                             names[video.path], thresh, args)
    if args.save_json:
        path = write_results(os.path.join(output_dir, RESULTS), records, config=cfg.name,
                             thresh=thresh, class_names=predictor.class_names)
        print(f"{path}: {len(records)} images and frames")
    return 0


def run_images(predictor, images, outputs, names, thresh, draw, args, batch_size, shown,
               videos):
    def save(item, result):
        kept = result.keep(thresh)
        out = outputs[item.path]
        written = save_image(out, kept.draw()) if draw else None
        if args.save_masks:
            kept.save_masks(os.path.splitext(written or out)[0])
        record = dict(kept.to_json(names[item.path]), input=item.path) \
            if args.save_json else None
        return written or item.path, len(kept), record

    times = StageTimes()
    start = time.perf_counter()
    with progress_bar(len(images), "demo") as bar:
        done = predictor.predict(
            images, consumer=save, times=times, progress=bar.update,
            on_error=lambda item: bar.write(f"skipped: {item.error}", file=sys.stderr))
    wall = time.perf_counter() - start
    done = [out for out in done if out is not None]
    for path, count, _ in done:
        print(f"{path}: {count} instances at score >= {thresh}")
    if not done:
        if not videos:
            raise MissingInputError(f"no image could be read from {shown}")
        return []
    print(f"\n{len(done)} images in {wall:.2f} s: {len(done) / wall:.2f} FPS including "
          f"reading, preprocessing, post-processing and drawing (batch size {batch_size})")
    print(times.report(wall, len(done)))
    return [record for _, _, record in done if record is not None]


def run_video(predictor, video, output, name, thresh, args):
    if args.save_masks:
        print(f"note: --save-masks writes images' masks; {video.path}'s are in --save-json's "
              "RLE masks")
    times = StageTimes()
    with progress_bar(video.frames, os.path.basename(video.path), unit="frame") as bar:
        done = predict_video(predictor, video, output, thresh,
                             record_name=name if args.save_json else None,
                             progress=bar.update, times=times)
    report_video(done, thresh, times)
    return [dict(record, input=video.path) for record in done.records]


def run_camera(predictor, args, output_dir, thresh):
    output = os.path.join(output_dir, f"camera{args.camera}.mp4")
    show = gui_available()
    if show:
        print(f"camera {args.camera} in a window; q, Esc or Ctrl-C stops and keeps {output}")
    else:
        print(f"note: this OpenCV has no GUI (opencv-python-headless), so no live window; "
              f"recording to {output}; Ctrl-C stops")
    times = StageTimes()
    with progress_bar(None, f"camera {args.camera}", unit="frame") as bar:
        done = record_camera(predictor, args.camera, None if args.no_draw else output, thresh,
                             show=show, record_name=f"camera{args.camera}"
                             if args.save_json else None, progress=bar.update, times=times,
                             log=lambda text: bar.write(text, file=sys.stderr))
    report_video(done, thresh, times)
    return done.records


def report_video(done, thresh, times):
    where = f" -> {done.output}" if done.output else ""
    print(f"\n{done.source}{where}: {done.frames} frames in {done.seconds:.2f} s: "
          f"{done.fps:.2f} FPS including decoding, drawing and encoding; {done.instances} "
          f"instances at score >= {thresh}")
    if done.written > done.frames:
        print(f"  the recording holds {done.written} frames: each predicted frame is held "
              "until the next, so it plays in real time")
    if done.missing:
        print(f"warning: {done.source}: {done.missing} of the {done.listed} frames the file "
              f"lists could not be decoded (damaged or truncated); the {done.frames} others "
              "were predicted", file=sys.stderr)
    print(times.report(done.seconds, done.frames))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
