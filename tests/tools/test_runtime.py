"""The AMD MKL fast path (tools/runtime.py): when it sets MKL_DEBUG_CPU_TYPE, and that every
entry point has it set before Paddle is imported."""

import os
import subprocess
import sys

import pytest

from tools.runtime import amd_mkl_fast_path

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AMD = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma\n\n"
AMD_NO_AVX2 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx\n\n"
INTEL = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx avx2 fma\n\n"


@pytest.mark.parametrize("cpu, environ, expected", [
    (AMD, {}, "5"),
    (AMD, {"MKL_DEBUG_CPU_TYPE": "2"}, "2"),        # an explicit value wins
    (AMD, {"MKL_DEBUG_CPU_TYPE": ""}, ""),          # even an empty one
    (AMD, {"SOLOV2_AMD_FAST_PATH": "0"}, None),     # turned off
    (AMD, {"SOLOV2_AMD_FAST_PATH": "off"}, None),
    (AMD_NO_AVX2, {}, None),
    (INTEL, {}, None),
])
def test_fast_path_is_set_only_on_amd_with_avx2(tmp_path, cpu, environ, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(cpu)
    note = amd_mkl_fast_path(environ, str(cpuinfo))
    assert environ.get("MKL_DEBUG_CPU_TYPE") == expected
    assert (note is not None) == (expected == "5" and "MKL_DEBUG_CPU_TYPE=5" in note)


def test_reproducible_sums_are_asked_for_with_the_fast_path(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(AMD)
    environ = {}
    amd_mkl_fast_path(environ, str(cpuinfo))
    assert environ["MKL_CBWR"] == "AVX2,STRICT"
    environ = {"MKL_CBWR": "COMPATIBLE"}  # the user's choice stays
    amd_mkl_fast_path(environ, str(cpuinfo))
    assert environ == {"MKL_CBWR": "COMPATIBLE", "MKL_DEBUG_CPU_TYPE": "5"}
    environ = {"MKL_DEBUG_CPU_TYPE": "5"}  # set by hand: nothing else is added
    amd_mkl_fast_path(environ, str(cpuinfo))
    assert environ == {"MKL_DEBUG_CPU_TYPE": "5"}


def test_unreadable_cpuinfo_leaves_the_environment_alone(tmp_path):
    environ = {}
    assert amd_mkl_fast_path(environ, str(tmp_path / "missing")) is None
    assert environ == {}


# Run a script with a finder that records MKL_DEBUG_CPU_TYPE at the moment paddle is first
# imported; --help makes every script stop after its imports.
PROBE = r"""
import os, runpy, sys
seen = []
class Probe:
    def find_spec(self, name, path=None, target=None):
        if name == "paddle" and not seen:
            seen.append((os.environ.get("MKL_DEBUG_CPU_TYPE"), os.environ.get("MKL_CBWR")))
        return None
sys.meta_path.insert(0, Probe())
sys.argv = [sys.argv[1], "--help"]
sys.path.insert(0, os.getcwd())
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
import paddle  # scripts that defer paddle to main() still must have set it by now
print("MKL_AT_PADDLE_IMPORT=%r" % (seen[0],))
"""

SCRIPTS = sorted(["demo.py", "train.py", "eval.py", "test_dev.py", "tools/export_model.py",
                  "tools/benchmark.py", "tools/benchmark_pipeline.py",
                  "tools/benchmark_train.py", "tools/make_synthetic_coco.py"]
                 + [name for name in os.listdir(ROOT) if name.startswith("1_")])


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_entry_point_sets_it_before_paddle_loads(script):
    if "AuthenticAMD" not in open("/proc/cpuinfo").read():
        pytest.skip("the fast path only applies to AMD CPUs")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MKL_DEBUG_CPU_TYPE", "MKL_CBWR", "SOLOV2_AMD_FAST_PATH")}
    done = subprocess.run([sys.executable, "-c", PROBE, script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "MKL_AT_PADDLE_IMPORT=('5', 'AVX2,STRICT')" in done.stdout, done.stdout[-2000:]
    assert "note: AMD CPU with AVX2: set MKL_DEBUG_CPU_TYPE=5" in done.stdout  # it says so
