import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


import pytest  # noqa: E402

# As in every script: tools/ sets the AMD MKL fast path before anything imports Paddle, so
# the reference-output tests run with the kernels users get (README, "AMD CPUs").
import tools  # noqa: E402

# The suite is not a script: the note the scripts print about it would land in the first
# captured output of a test (tests/tools/test_runtime.py checks the scripts print it).
tools.runtime.startup_notes.clear()


@pytest.fixture(scope="session")
def exported2(tmp_path_factory):
    """Config 2 exported once for the whole session (see tests/fixtures/exported.py)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("paddle2onnx")
    from tests.fixtures.exported import export_config2

    return export_config2(tmp_path_factory.mktemp("export2"))
