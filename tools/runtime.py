"""Process-wide settings: the AMD fast path of Paddle's MKL, how many CPU threads Paddle's
kernels use, and quiet imports. Nothing here imports Paddle: :func:`amd_mkl_fast_path` has to
run before it loads, which is why ``tools/__init__.py`` calls it."""

import os
import warnings

# Set by amd_mkl_fast_path when it changed the environment; entry points print it (and
# empty it, once per process).
startup_notes = []
# True once amd_mkl_fast_path has set MKL_DEBUG_CPU_TYPE in this process's environment
# (not when the user did): a fresh process without it is then what other code gets here.
fast_path_set = False


def quiet_paddle_import():
    """Importing paddle warns that its C++-extension builder found no ccache; this repo
    builds no extension, so the warning says nothing to its users."""
    warnings.filterwarnings("ignore", message="No ccache found")


def cpu_cores():
    """Cores this process may run on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(int(cores or 1), 1)


def use_all_cpu_cores(processes=1):
    """Let Paddle's CPU kernels use every core this process may run on (split evenly when
    ``processes`` processes share the machine).

    Paddle 3.3's dynamic graph runs its CPU math on one thread by default
    (FLAGS_paddle_num_threads=1; changing the flag after start-up has no effect). On a
    2-core machine two threads make the config 2 forward pass 1.6x faster, and the
    post-processing matmuls 2x. Returns the thread count set.
    """
    from paddle.base import core

    count = max(cpu_cores() // max(processes, 1), 1)
    core.set_num_threads(count)
    return count


def _cpu_facts(cpuinfo):
    """(vendor id, set of feature flags) of the first processor listed in ``cpuinfo``."""
    vendor, flags = "", set()
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
                if vendor and flags:
                    break
    except OSError:
        pass  # not Linux, or /proc hidden: leave the environment alone
    return vendor, flags


def amd_mkl_fast_path(environ=None, cpuinfo="/proc/cpuinfo"):
    """On an AMD CPU with AVX2, set ``MKL_DEBUG_CPU_TYPE=5`` unless it is already set.

    Paddle's CPU wheel bundles an MKL that dispatches on the vendor string and gives AMD
    processors its slow generic kernels. The variable makes that MKL take its AVX2 kernels
    instead: on a 2-core AMD EPYC a 2048x2048 matmul goes from 32 to 107 GFLOP/s and the
    config 2 forward pass from 6.6 s to 3.4 s. MKL reads it once, when Paddle loads it, so
    this must run before ``import paddle``.

    The AVX2 kernels round differently depending on how the data happen to be aligned in
    memory, so without more a batch of two images gave masks a few pixels off those of the
    same images one at a time. ``MKL_CBWR=AVX2,STRICT`` (MKL's "conditional numerical
    reproducibility") pins that down at the same speed; it is set too, unless already set.

    An explicit MKL_DEBUG_CPU_TYPE (any value, even empty) leaves both alone, and
    ``SOLOV2_AMD_FAST_PATH=0`` turns this off. Returns the note it logged, or None.
    """
    environ = os.environ if environ is None else environ
    if "MKL_DEBUG_CPU_TYPE" in environ:
        return None
    if environ.get("SOLOV2_AMD_FAST_PATH", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    vendor, flags = _cpu_facts(cpuinfo)
    if vendor != "AuthenticAMD" or "avx2" not in flags:
        return None
    environ["MKL_DEBUG_CPU_TYPE"] = "5"
    environ.setdefault("MKL_CBWR", "AVX2,STRICT")
    note = ("AMD CPU with AVX2: set MKL_DEBUG_CPU_TYPE=5 so that Paddle's MKL uses its AVX2 "
            f"kernels, MKL_CBWR={environ['MKL_CBWR']} for reproducible sums "
            "(SOLOV2_AMD_FAST_PATH=0 turns this off)")
    if environ is os.environ:
        global fast_path_set
        fast_path_set = True
        startup_notes.append(note)
    return note
