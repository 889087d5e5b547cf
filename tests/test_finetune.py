"""The fine-tuning walk-through of README ("Fine-tuning from COCO weights") end to end:
COCO weights -> train on a 3-class COCO-style set -> model_final.pdparams -> eval.py and
demo.py given only --weights.

The fast test starts from an 80-class model of config 4's tiny architecture in this
repo's layout; the slow one from config 2's published file as downloaded (a stand-in in
the published container, tools/weights/standin.py), converted in memory."""

import json
import os
import re

import paddle
import pytest

import demo
import eval as eval_script
import train
from config import load_config
from model import build_model
from tests.test_train import data_words
from tools.data.synthetic import make_dataset
from tools.weights.describe import model_info
from tools.weights.files import save_pdparams
from tools.weights.standin import CONTAINERS

SMALL = ["train_sizes=(64,)", "train_max_size=96", "test_size=(64,96)"]
RUN = ["train_cfg.max_iters=2", "train_cfg.batch_size=2", "train_cfg.log_iter=1",
       "train_cfg.save_iter=2", "train_cfg.eval_iter=2", "train_cfg.num_workers=0"]


@pytest.fixture
def shapes(tmp_path):
    folder = str(tmp_path / "shapes")
    make_dataset(folder, train=4, val=2, seed=0, size=(64, 80))
    return folder


def fine_tune_then_predict(number, coco_weights, shapes, tmp_path, capsys, extra=()):
    """Train config ``number`` on ``shapes`` from ``coco_weights``; then eval.py and
    demo.py with --weights only. Returns (model_final path, train/eval/demo stdout)."""
    out = str(tmp_path / "out")
    words = ([f"--config={number}"] + data_words(shapes) + SMALL + RUN + list(extra)
             + [f"train_cfg.model_path={coco_weights}", f"train_cfg.output_dir={out}"])
    assert train.main(words) == 0, capsys.readouterr().err
    trained = capsys.readouterr().out
    final = os.path.join(out, load_config(number).name, "model_final.pdparams")
    # The class names file the run was given is gone: the weights carry the names.
    os.remove(os.path.join(shapes, "classes.txt"))

    results = str(tmp_path / "results.json")
    assert eval_script.main(["--weights", final, "--output", results]) == 0, \
        capsys.readouterr().err
    evaluated = capsys.readouterr().out
    drawn = str(tmp_path / "drawn")
    assert demo.main(["--weights", final, "--input", os.path.join(shapes, "val"),
                      "--output", drawn]) == 0, capsys.readouterr().err
    shown = capsys.readouterr().out
    assert sorted(os.listdir(drawn)) == sorted(os.listdir(os.path.join(shapes, "val")))
    with open(results) as f:
        assert isinstance(json.load(f), list)
    return final, trained, evaluated, shown


def check_outputs(number, final, trained, evaluated, shown, shapes):
    start = [line for line in trained.splitlines() if line.startswith("initial weights ")]
    assert len(start) == 1
    total = len(build_model(load_config(number, ["num_classes=3"])).state_dict())
    # Every tensor but the category output's weight and bias came from the COCO file.
    assert f"{total - 2}/{total} tensors loaded" in start[0]
    assert "the file predicts 80 classes, the config 3: head.solo_cate re-initialised" \
        in start[0]
    info = model_info(final)
    assert info["config_number"] == number and info["num_classes"] == 3
    assert info["class_names"] == ["circle", "square", "triangle"]
    for out in (evaluated, shown):
        assert f"describe themselves: --config={number}" in out
        assert "3 classes (circle, square, triangle)" in out
    # eval.py found the validation set in the recorded words, not on its command line.
    val = f"{shapes}/annotations/instances_val.json"
    assert f"2 images in {val}" in evaluated
    assert re.search(rf"mask AP \d\.\d{{3}}, box AP \d\.\d{{3}} on 2 images of {val}", evaluated)


def test_fine_tune_a_tiny_model_then_eval_and_demo_with_only_weights(shapes, tmp_path,
                                                                     capsys):
    paddle.seed(5)
    coco = str(tmp_path / "coco80.pdparams")
    model = build_model(load_config(4, ["num_classes=80"]))
    save_pdparams({k: v.numpy() for k, v in model.state_dict().items()}, coco,
                  {"format": "trained"})
    final, trained, evaluated, shown = fine_tune_then_predict(4, coco, shapes, tmp_path, capsys)
    check_outputs(4, final, trained, evaluated, shown, shapes)

    # Words that contradict the file are refused in one line; agreeing ones are fine.
    assert demo.main(["--weights", final, "--config=2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--config=2 contradicts" in err[0]
    assert eval_script.main(["--weights", final, "num_classes=5"]) == 1
    assert "num_classes=5 contradicts" in capsys.readouterr().err


@pytest.mark.slow
def test_fine_tune_config_2_from_its_published_coco_file(shapes, tmp_path, capsys):
    suffix, write = CONTAINERS[2]
    published = str(tmp_path / f"solov2_light_r50_vd_fpn_dcn_512_3x{suffix}")
    write(published, 80)  # PaddleDetection 0.5's fluid pickle, 80 COCO classes
    final, trained, evaluated, shown = fine_tune_then_predict(
        2, published, shapes, tmp_path, capsys, extra=["train_cfg.batch_size=1"])
    check_outputs(2, final, trained, evaluated, shown, shapes)
    assert model_info(final)["preprocess"] == "ppdet_static"

