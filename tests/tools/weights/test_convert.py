import numpy as np
import pytest

from tools.weights import standin as fx
from tools.weights.convert import (
    ConversionError,
    convert_state,
    converter_entry,
    converter_main,
    resolve_aliases,
)
from tools.weights.files import load_pdparams


def test_convert_state_reports_every_problem_at_once():
    arrays = {"a": np.zeros((2, 2)), "b": np.zeros(3), "junk": np.zeros(1)}
    shapes = {"x": (2, 2), "y": (4,), "z": (1,)}
    with pytest.raises(ConversionError) as info:
        convert_state(arrays, [("x", "a"), ("y", "b"), ("z", "c")], shapes)
    err = info.value
    assert err.missing == ["c (for z)"]
    assert err.unexpected == ["junk"]
    assert err.misshaped == ["b [3] -> y [4]"]


def test_aliases_fold_into_their_twin():
    same = np.arange(3.0)
    arrays, problems = resolve_aliases({"p.alias.w": same, "p.real.w": same.copy()},
                                       {"p.alias.": "p.real."})
    assert list(arrays) == ["p.real.w"] and problems == []
    arrays, problems = resolve_aliases({"p.alias.w": same}, {"p.alias.": "p.real."})
    assert list(arrays) == ["p.real.w"]
    _, problems = resolve_aliases({"p.alias.w": same, "p.real.w": same + 1},
                                  {"p.alias.": "p.real."})
    assert problems == ["p.alias.w differs from its alias p.real.w"]


def test_converter_defaults_come_from_the_catalogue():
    number, entry = converter_entry("1_paddle_r50vd_ssld_2paddle.py")
    assert number == 2 and entry.role == "backbone" and entry.unpacked
    number, entry = converter_entry("1_paddle_solov2_r50_fpn_8gpu_3x2paddle.py")
    assert (number, entry.file) == (0, "solov2_r50_fpn_3x.pdparams")
    with pytest.raises(LookupError):
        converter_entry("1_unknown2paddle.py")


def test_a_source_named_as_published_gets_its_catalogue_output(tmp_path, monkeypatch):
    """The PaddleDetection 2.x R50 file shares config 0's converter with the 0.5 file;
    named as published, it is written under its own catalogue name."""
    source = tmp_path / "solov2_r50_fpn_3x_coco.pdparams"
    fx.save_paddle2_pdparams(str(source), fx.make_state(fx.read_keys(
        "ppdet2_solov2_r50_fpn_3x_coco.keys")))
    monkeypatch.chdir(tmp_path)
    assert converter_main("1_paddle_solov2_r50_fpn_8gpu_3x2paddle.py", [str(source)]) == 0
    _, meta = load_pdparams(str(tmp_path / "dygraph_solov2_r50_fpn_3x_coco.pdparams"))
    assert meta["format"] == "ppdet2" and meta["source"] == source.name
