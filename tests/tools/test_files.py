"""Atomic writes, writability checks and stale temporaries (tools/files.py)."""

import errno
import os

import pytest

from tools import files
from tools.errors import UserError
from tools.files import OutputError, atomic_write, check_writable, write_bytes, write_text


def test_atomic_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    write_text(str(path), "new content")
    assert path.read_text() == "new content"
    assert os.listdir(tmp_path) == ["out.json"]
    assert (os.stat(path).st_mode & 0o777) != 0o600  # not mkstemp's private mode


def test_an_error_inside_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"good")
    with pytest.raises(RuntimeError), atomic_write(str(path)) as f:
        f.write(b"half")
        raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_disk_full_is_one_line_naming_the_path(tmp_path, monkeypatch):
    path = tmp_path / "big.bin"
    path.write_bytes(b"previous")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match="no space left.*big.bin") as err:
        write_bytes(str(path), b"x" * 1000)
    assert isinstance(err.value, UserError)
    assert path.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["big.bin"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused_before_any_work(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable.*permission denied"):
            check_writable(str(folder))
        with pytest.raises(OutputError, match="permission denied"):
            write_text(str(folder / "a.txt"), "x")
    finally:
        folder.chmod(0o700)


def test_check_writable_refuses_a_path_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not writable"):
        check_writable(str(tmp_path / "file" / "sub"))
    created = check_writable(str(tmp_path / "new" / "deeper"))
    assert os.listdir(created) == []


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    (tmp_path / f"{files.TMP_PREFIX}abc.pdparams").write_bytes(b"x" * 10)
    (tmp_path / "iter_0000010.pdparams").write_bytes(b"keep")
    (tmp_path / f"{files.TMP_PREFIX}dir").mkdir()
    logged = []
    assert files.remove_stale_temporaries(str(tmp_path), logged.append) == 10
    assert sorted(os.listdir(tmp_path)) == [f"{files.TMP_PREFIX}dir", "iter_0000010.pdparams"]
    assert len(logged) == 1 and "interrupted write" in logged[0]
    assert files.remove_stale_temporaries(str(tmp_path / "missing")) == 0


def test_repo_path_finds_defaults_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert files.repo_path("images/test") == os.path.join(files.REPO, "images", "test")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "test").mkdir()
    assert files.repo_path("images/test") == "images/test"  # the user's own folder wins
    assert files.repo_path("no/such/thing") == "no/such/thing"
    assert files.repo_path(None) is None
