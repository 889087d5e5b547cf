"""tools/dev/make_target_goldens.py: reproduces the committed PaddleDetection golden, --check
notices a change, and the packed target masks read back as stored.

Rerunning SOLO needs a checkout of WXinlong/SOLO (not tested here); PaddleDetection 2.6 is
optional (requirements-dev.txt) and its test is skipped without it.
"""

import os

import numpy as np
import pytest

from tools.dev import make_target_goldens as goldens


def committed(name):
    with np.load(os.path.join(goldens.DEFAULT_OUTPUT, f"targets_{name}.npz")) as f:
        return {k: f[k] for k in f.files}


def test_ppdet2_golden_is_rewritten_exactly(tmp_path):
    pytest.importorskip("ppdet")
    assert goldens.main(["--only", "ppdet2", "--output", str(tmp_path)]) == 0
    new = np.load(tmp_path / "targets_ppdet2.npz")
    # Every array bit for bit; the losses (Paddle reductions) to 1e-6.
    lines, ok = goldens.compare({k: new[k] for k in new.files},
                                os.path.join(goldens.DEFAULT_OUTPUT, "targets_ppdet2.npz"))
    assert ok, lines


def test_check_passes_equal_arrays_and_flags_changes():
    path = os.path.join(goldens.DEFAULT_OUTPUT, "targets_solo.npz")
    same = committed("solo")
    lines, ok = goldens.compare(same, path)
    assert ok and any(line.startswith("  loss_ins") for line in lines)

    key = next(k for k in same if k.endswith(".masks") and same[k].size)
    flipped = same[key].copy()
    flipped.flat[0] ^= 1
    lines, ok = goldens.compare(dict(same, **{key: flipped}), path)
    assert not ok and any(key in line for line in lines)

    lines, ok = goldens.compare(dict(same, loss_ins=same["loss_ins"] * (1 + 1e-5)), path)
    assert not ok
    assert not goldens.compare({k: v for k, v in same.items() if k != "loss_cate"}, path)[1]


def test_packed_masks_round_trip():
    rng = np.random.RandomState(0)
    distinct = (rng.rand(3, 5, 7) > 0.5).astype(np.uint8)
    masks = distinct[[2, 0, 0, 1, 2]]
    out = {}
    goldens.pack_targets(out, "x.", [4, 5, 6, 7, 8], [np.zeros((2, 2))], masks)
    assert out["x.masks"].shape[0] == 3  # each distinct mask stored once
    np.testing.assert_array_equal(goldens.unpack_masks(out, "x."), masks)
    goldens.pack_targets(out, "y.", [], [np.zeros((2, 2))], np.zeros((0, 5, 7), np.uint8))
    assert goldens.unpack_masks(out, "y.").shape == (0, 5, 7)


def test_solo_needs_a_checkout(tmp_path, capsys):
    with pytest.raises(SystemExit):
        goldens.main(["--only", "solo"])
    assert goldens.main(["--only", "solo", "--solo-root", str(tmp_path)]) == 1
    assert "is not a checkout of WXinlong/SOLO" in capsys.readouterr().err


def test_reference_photos_are_real_instances():
    photos = goldens.reference_photos()
    assert [p[0].shape for p in photos] == [(375, 500, 3), (480, 640, 3), (480, 360, 3)]
    for rgb, masks, boxes, labels in photos:
        assert masks.dtype == np.uint8 and set(np.unique(masks)) == {0, 1}
        assert len(masks) == len(boxes) == len(labels) and (labels < 80).all()
        assert masks.reshape(len(masks), -1).any(axis=1).all()
