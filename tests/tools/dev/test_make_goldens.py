"""tools/dev/make_goldens.py: reproduces a committed golden, and --check notices a change.

Rerunning a reference needs PaddleDetection 2.6 (requirements-dev.txt), which CI does not
install; that test is skipped without it. The comparison itself is checked on any machine.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from tools.dev import make_goldens

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def committed(name):
    with np.load(os.path.join(make_goldens.DEFAULT_OUTPUT, f"{name}.npz")) as f:
        return {k: f[k] for k in f.files}


def test_ppdet2_r50_golden_is_rewritten_exactly(tmp_path):
    try:
        import ppdet  # noqa: F401
    except ImportError as err:  # not installed, or its own imports (pkg_resources) missing
        pytest.skip(f"PaddleDetection 2.6 not importable: {err}")
    # In a fresh process: this one has Paddle loaded with the AMD MKL fast path, which the
    # script turns off (the goldens are the references' outputs with MKL's own kernels).
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_DEBUG_CPU_TYPE", "MKL_CBWR")}
    done = subprocess.run([sys.executable, "tools/dev/make_goldens.py", "--only", "ppdet2_r50",
                           "--output", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    new, old = np.load(tmp_path / "ppdet2_r50.npz"), committed("ppdet2_r50")
    assert new.files == list(old)
    for key, value in old.items():
        np.testing.assert_array_equal(new[key], value, err_msg=key)


def test_check_passes_equal_arrays_and_flags_a_changed_one():
    path = os.path.join(make_goldens.DEFAULT_OUTPUT, "solo_r50.npz")
    same = committed("solo_r50")
    lines, ok = make_goldens.compare(same, path)
    assert ok and any("kernel_0" in line and "0.00e+00" in line for line in lines)

    changed = dict(same)
    changed["kernel_0"] = same["kernel_0"] * (1 + 1e-3)
    lines, ok = make_goldens.compare(changed, path)
    assert not ok and any("kernel_0" in line and "1.00e-03" in line for line in lines)

    changed = dict(same, seg_labels=same["seg_labels"][::-1].copy())
    assert not make_goldens.compare(changed, path)[1]


def test_kept_elements_follow_the_committed_rule():
    out = {}
    make_goldens.thin(out, "x", np.arange(128000.0).reshape(1, 40, 40, 80))
    old = committed("ppdet2_r50")
    assert int(out["x__step"]) == int(old["cate_eval_0__step"]) == 31
    assert out["x"].shape == old["cate_eval_0"].shape
    assert list(out["x__shape"]) == [1, 40, 40, 80]
