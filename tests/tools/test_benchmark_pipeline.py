from tools.benchmark_pipeline import main
from tools.data.synthetic import make_dataset


def test_pipeline_benchmark_reports_images_per_second(tmp_path, capsys):
    make_dataset(str(tmp_path), train=6, val=1, seed=0, size=(96, 128))
    words = ["--config=2", "--batches", "2", "--workers", "0", "num_classes=3",
             f"train_path={tmp_path}/annotations/instances_train.json",
             f"train_pre_path={tmp_path}/train", "train_sizes=(64,)"]
    assert main(words) == 0
    out = capsys.readouterr().out
    assert "4 images in" in out and "images/s" in out and "random crop True" in out


def test_pipeline_benchmark_bad_path(capsys):
    assert main(["--config=2", "train_path=/nonexistent.json"]) == 1
    assert "annotation file not found" in capsys.readouterr().err
