"""Where drawn images go (tools/inference/outputs.py): one output per input, mirrored below
the output folder, never onto an input, folders checked before any work."""

import errno
import os
import tempfile

import pytest

from tools.errors import UserError
from tools.files import OutputError
from tools.inference.outputs import (
    OutputConflictError,
    check_output_folders,
    list_inputs,
    plan_outputs,
)


@pytest.fixture
def photos(tmp_path):
    """photos/a/x.jpg, photos/a/y.png, photos/b/x.jpg (same name as in a/)."""
    for rel in ("a/x.jpg", "a/y.png", "b/x.jpg"):
        path = tmp_path / "photos" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rel.encode())
    return tmp_path / "photos"


def test_same_names_in_two_folders_are_kept_apart(photos, tmp_path):
    out = str(tmp_path / "out")
    paths = list_inputs(str(photos / "*" / "*"))
    assert plan_outputs(paths, out) == [os.path.join(out, "a", "x.jpg"),
                                        os.path.join(out, "a", "y.png"),
                                        os.path.join(out, "b", "x.jpg")]
    # The same with one glob per folder, as --input 'a/*.jpg' 'b/*.jpg' gives them.
    paths = list_inputs([str(photos / "a" / "*.jpg"), str(photos / "b" / "*.jpg")])
    assert plan_outputs(paths, out) == [os.path.join(out, "a", "x.jpg"),
                                        os.path.join(out, "b", "x.jpg")]


def test_one_folder_or_one_file_keeps_plain_names(photos, tmp_path):
    out = str(tmp_path / "out")
    assert plan_outputs(list_inputs(str(photos / "a")), out) == [
        os.path.join(out, "x.jpg"), os.path.join(out, "y.png")]
    assert plan_outputs(list_inputs(str(photos / "b" / "x.jpg")), out) == [
        os.path.join(out, "x.jpg")]


def test_a_file_named_twice_is_drawn_once(photos):
    paths = list_inputs([str(photos / "a"), str(photos / "a" / "x.jpg")])
    assert paths == [str(photos / "a" / "x.jpg"), str(photos / "a" / "y.png")]


@pytest.mark.parametrize("case", ["folder onto itself", "file into its own folder",
                                  "glob over folders onto their parent", "symlinked folder",
                                  "hard link"])
def test_an_output_onto_an_input_is_refused(photos, tmp_path, case):
    a = photos / "a"
    spec, out = {"folder onto itself": (a, a),
                 "file into its own folder": (a / "x.jpg", a),
                 "glob over folders onto their parent": (photos / "*" / "*.jpg", photos),
                 "symlinked folder": (a, tmp_path / "link"),
                 "hard link": (a / "x.jpg", tmp_path / "linked")}[case]
    if case == "symlinked folder":
        os.symlink(a, tmp_path / "link")
    if case == "hard link":
        (tmp_path / "linked").mkdir()
        os.link(a / "x.jpg", tmp_path / "linked" / "x.jpg")
    with pytest.raises(OutputConflictError, match="would overwrite the input") as err:
        plan_outputs(list_inputs(str(spec)), str(out))
    assert isinstance(err.value, UserError)
    assert f"--output {os.path.join(str(out), 'drawn')}" in str(err.value)
    assert (a / "x.jpg").read_bytes() == b"a/x.jpg"


def test_two_inputs_drawn_to_one_file_are_refused(tmp_path):
    # cv2 has no writer for .xyz: it is drawn as x.png, where x.png's drawing goes too.
    (tmp_path / "x.xyz").write_bytes(b"1")
    (tmp_path / "x.png").write_bytes(b"2")
    with pytest.raises(OutputConflictError, match="would both be drawn to"):
        plan_outputs([str(tmp_path / "x.png"), str(tmp_path / "x.xyz")], str(tmp_path / "o"))


def test_output_folder_under_a_file_is_refused(photos, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    out = str(tmp_path / "file" / "out")
    outputs = plan_outputs(list_inputs(str(photos / "*" / "*")), out)
    with pytest.raises(OutputError, match="output folder .*file/out is not writable"):
        check_output_folders(outputs, out)


def test_every_mirrored_folder_is_checked(photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "b").write_text("a file where the folder b/ should go")
    outputs = plan_outputs(list_inputs(str(photos / "*" / "*")), str(out))
    with pytest.raises(OutputError, match="out/b is not writable"):
        check_output_folders(outputs, str(out))


def test_permission_denied_is_one_line(photos, tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    out = str(tmp_path / "out")
    with pytest.raises(OutputError, match="not writable: permission denied") as err:
        check_output_folders(plan_outputs(list_inputs(str(photos / "a")), out), out)
    assert "\n" not in str(err.value)
