"""Exports made on first use (tools/deploy/cache.py): one export per config and weight file
in $SOLOV2_HOME/exports, reused until the weights or the architecture change. The export
itself is replaced by a recorder here; tests/tools/inference/test_api.py runs a real one."""

import json
import os

import pytest

from config import load_config
from tools.deploy import cache
from tools.deploy import export as export_module
from tools.inference.backends import BackendError
from tools.weights.load import MissingWeightsError


class RecordedExport:
    """Stands in for tools.deploy.export.export: writes deploy.json and the network files
    (network.onnx only when asked for ONNX) and counts its calls."""

    def __init__(self, onnx_works=True):
        self.calls, self.onnx_works = [], onnx_works

    def __call__(self, cfg, model_path, output_dir, onnx=True, log=print, download=True, **_):
        self.calls.append((model_path, output_dir, onnx))
        os.makedirs(output_dir, exist_ok=True)
        names = ["network.json", "network.pdiparams"]
        if onnx and self.onnx_works:
            names.append("network.onnx")
        for name in names:
            with open(os.path.join(output_dir, name), "w") as f:
                f.write(name)
        info = {"parts": ["model", "network"],
                "onnx": {"network": "ok" if self.onnx_works else "paddle2onnx failed: x"}
                if onnx else {}}
        with open(os.path.join(output_dir, "deploy.json"), "w") as f:
            json.dump(info, f)
        return info


@pytest.fixture
def recorded(monkeypatch):
    export = RecordedExport()
    monkeypatch.setattr(export_module, "export", export)
    return export


def quiet(*args):
    pass


def folder_for(tmp_path, weights, engine, cfg=None, **kwargs):
    env = {"SOLOV2_HOME": str(tmp_path / "home")}
    return cache.exported_model_dir(cfg or load_config(2), str(weights), engine, log=quiet,
                                    environ=env, **kwargs)


def test_exported_once_then_reused_until_the_weights_change(recorded, tmp_path):
    weights = tmp_path / "mine.pdparams"
    weights.write_bytes(b"weights")
    folder = folder_for(tmp_path, weights, "paddle-inference")
    cfg = load_config(2)
    assert folder == os.path.join(tmp_path, "home", "exports", f"{cfg.name}-mine")
    assert len(recorded.calls) == 1 and recorded.calls[0][2] is False  # no ONNX asked
    record = json.load(open(os.path.join(folder, cache.RECORD)))
    assert record["weights"] == str(weights) and record["size"] == 7
    # Post-processing settings and the test size are not part of the exported network.
    other = load_config(2, ["test_cfg.score_thr=0.4", "test_size=(128, 192)"])
    assert folder_for(tmp_path, weights, "paddle-inference", other) == folder
    assert len(recorded.calls) == 1
    # The onnx engine needs network.onnx: exported again, with ONNX.
    assert folder_for(tmp_path, weights, "onnx") == folder
    assert [c[2] for c in recorded.calls] == [False, True]
    assert folder_for(tmp_path, weights, "paddle-inference") == folder  # both engines now
    assert len(recorded.calls) == 2
    # Retrained under the same name, or another architecture: exported again.
    weights.write_bytes(b"retrained")
    folder_for(tmp_path, weights, "onnx")
    folder_for(tmp_path, weights, "onnx", load_config(2, ["mask_feat_channels=64"]))
    assert len(recorded.calls) == 4


def test_a_failed_onnx_conversion_is_one_error(monkeypatch, tmp_path):
    monkeypatch.setattr(export_module, "export", RecordedExport(onnx_works=False))
    weights = tmp_path / "mine.pdparams"
    weights.write_bytes(b"weights")
    with pytest.raises(BackendError, match="has no ONNX model: paddle2onnx failed"):
        folder_for(tmp_path, weights, "onnx")


def test_missing_weights_are_the_loaders_message(recorded, tmp_path):
    with pytest.raises(MissingWeightsError, match="weight file not found"):
        folder_for(tmp_path, tmp_path / "none.pdparams", "onnx", download=False)
    assert recorded.calls == []
