"""train.py end to end at a tiny size, and its answers to bad input."""

import os

import pytest

import train
from config import load_config
from tools.data.synthetic import make_dataset
from tools.inference.backends import load_dygraph
from tools.inference.predictor import predict_stream
from tools.weights.files import load_pdparams

# Narrow heads and 64-pixel images keep a CPU iteration near a second.
TINY = ["head_seg_feat_channels=64", "mask_feat_channels=64", "train_sizes=(64,)",
        "train_max_size=96", "test_size=(64,96)"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("shapes"))
    make_dataset(folder, train=4, val=2, seed=0, size=(64, 80))
    return folder


def data_words(folder):
    return ["num_classes=3",
            f"train_path={folder}/annotations/instances_train.json",
            f"train_pre_path={folder}/train",
            f"val_path={folder}/annotations/instances_val.json",
            f"val_pre_path={folder}/val", f"classes_path={folder}/classes.txt"]


def test_trains_evaluates_and_writes_loadable_weights(shapes, tmp_path, capsys):
    out = str(tmp_path / "out")
    words = ["--config=1"] + data_words(shapes) + TINY + [
        "train_cfg.max_iters=2", "train_cfg.batch_size=2", "train_cfg.log_iter=1",
        "train_cfg.save_iter=1", "train_cfg.keep_checkpoints=1", "train_cfg.eval_iter=2",
        "train_cfg.num_workers=0", f"train_cfg.output_dir={out}"]
    assert train.main(words) == 0
    text = capsys.readouterr().out
    run_dir = os.path.join(out, "solov2_light_448_r50_fpn_8gpu_3x")
    assert "iter 2/2" in text and "eval at iter 2: mask AP" in text
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ["iter_0000002.pdparams"]
    for name in ("train.log", "classes.txt", "best_model.pdparams", "model_final.pdparams"):
        assert os.path.exists(os.path.join(run_dir, name))
    _, meta = load_pdparams(os.path.join(run_dir, "model_final.pdparams"))
    assert meta["preprocess"] == "mmcv" and meta["config"] == "solov2_light_448_r50_fpn_8gpu_3x"
    # The final weights load the way demo.py / eval.py load weights, and predict.
    cfg = load_config(1, data_words(shapes) + TINY)
    predictor, style = load_dygraph(cfg, os.path.join(run_dir, "model_final.pdparams"))
    results = predict_stream(predictor, [os.path.join(shapes, "val", "val_00000.png")],
                             cfg.test_size, cfg.pixel_mean, cfg.pixel_std, style)
    assert results[0]["masks"].shape[1:] == (64, 80)

    # A second start in the same folder without --resume would mix two runs: refused.
    assert train.main(words) == 1
    assert "pass --resume" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["train_path=/nonexistent/a.json"], "annotation file not found"),
    (["num_classes=5"], "set num_classes=3"),
    (["train_cfg.model_path=/nonexistent/w.pdparams"], "initial weights not found"),
    (["no_such_field=1"], "unknown config field"),
])
def test_bad_input_is_one_clean_message(shapes, tmp_path, capsys, extra, message):
    words = (["--config=1"] + data_words(shapes) + TINY
             + [f"train_cfg.output_dir={tmp_path}"] + extra)
    assert train.main(words) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_amp_without_gpu_is_refused(shapes, tmp_path, capsys):
    if __import__("paddle").device.is_compiled_with_cuda():
        pytest.skip("this Paddle build has CUDA")
    assert train.main(["--config=1", "--amp", f"train_cfg.output_dir={tmp_path}"]) == 1
    assert "--amp needs a CUDA build" in capsys.readouterr().err
