"""Fetching published weights (tools/weights/fetch.py) from a server this test starts on
127.0.0.1: complete downloads, resumption, every failure, the cache, and the conversion."""

import base64
import hashlib
import os

import pytest

from config import load_config
from tests.fixtures.weights_server import Served, WeightsServer, refused_port
from tools.weights import fetch
from tools.weights.fetch import DownloadError, download, fetch_published, resolve_model_path
from tools.weights.files import load_pdparams
from tools.weights.standin import CONTAINERS

DATA = bytes(range(256)) * 4099 + b"tail"  # a little over 1 MB: more than one read chunk


def quiet(message):
    pass


def get(server, name, folder, **kwargs):
    return download(f"{server.url}/{name}", str(folder / name), log=quiet, progress=False,
                    **kwargs)


def test_complete_download(tmp_path):
    with WeightsServer() as server:
        server.files["w.bin"] = Served(DATA)
        path = get(server, "w.bin", tmp_path)
    assert open(path, "rb").read() == DATA
    assert os.listdir(tmp_path) == ["w.bin"]


def test_dropped_connection_is_resumed_with_a_range_request(tmp_path):
    with WeightsServer() as server:
        server.files["w.bin"] = Served(DATA, mode="drop", cut=300_000, drops=2)
        path = get(server, "w.bin", tmp_path)
    assert open(path, "rb").read() == DATA
    assert server.requests == [("/w.bin", None), ("/w.bin", "bytes=300000-"),
                               ("/w.bin", "bytes=600000-")]
    assert os.listdir(tmp_path) == ["w.bin"]


def test_part_left_by_a_killed_run_is_resumed(tmp_path):
    with WeightsServer() as server:
        server.files["w.bin"] = Served(DATA, mode="drop", cut=500_000, drops=1)
        with pytest.raises(DownloadError):  # one request only: the run "dies" after it
            get(server, "w.bin", tmp_path, retries=0)
        # A run that failed removes its .part; a killed one cannot. Make what a kill leaves.
        (tmp_path / "w.bin.part").write_bytes(DATA[:500_000])
        fetch._save_state(str(tmp_path / "w.bin.part.json"), f"{server.url}/w.bin",
                          {"total": len(DATA), "md5": None})
        path = get(server, "w.bin", tmp_path)
    assert open(path, "rb").read() == DATA
    assert server.requests[-1] == ("/w.bin", "bytes=500000-")


def test_server_that_ignores_range_restarts_cleanly(tmp_path):
    (tmp_path / "w.bin.part").write_bytes(b"x" * 1000)
    with WeightsServer() as server:
        server.files["w.bin"] = Served(DATA, mode="no_range")
        fetch._save_state(str(tmp_path / "w.bin.part.json"), f"{server.url}/w.bin",
                          {"total": len(DATA), "md5": None})
        path = get(server, "w.bin", tmp_path)
    assert open(path, "rb").read() == DATA


@pytest.mark.parametrize("mode, message", [
    ("missing", "HTTP 404"),
    ("html", "web page"),
    ("short", "kept dropping"),
])
def test_bad_responses_are_one_line_and_leave_nothing(tmp_path, mode, message):
    with WeightsServer() as server:
        server.files["w.bin"] = Served(DATA, mode=mode)
        with pytest.raises(DownloadError, match=message) as err:
            get(server, "w.bin", tmp_path, retries=1)
    assert "\n" not in str(err.value)
    assert os.listdir(tmp_path) == []


def test_refused_connection(tmp_path):
    with refused_port() as url, pytest.raises(DownloadError, match="connection refused"):
        download(f"{url}/w.bin", str(tmp_path / "w.bin"), log=quiet, progress=False)
    assert os.listdir(tmp_path) == []


def test_timeout(tmp_path):
    with WeightsServer() as server:
        server.files["w.bin"] = Served(DATA, mode="stall")
        with pytest.raises(DownloadError, match="no answer within"):
            get(server, "w.bin", tmp_path, timeout=0.5)
    assert os.listdir(tmp_path) == []


def test_content_md5_is_checked_when_the_server_states_it(tmp_path):
    good = base64.b64encode(hashlib.md5(DATA).digest()).decode()
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with WeightsServer() as server:
        server.files["good.bin"] = Served(DATA, md5=good)
        server.files["bad.bin"] = Served(DATA, md5=bad)
        assert open(get(server, "good.bin", tmp_path), "rb").read() == DATA
        with pytest.raises(DownloadError, match="MD5"):
            get(server, "bad.bin", tmp_path)
    assert os.listdir(tmp_path) == ["good.bin"]


# ------------------------------------------------------------------ fetch and convert
@pytest.fixture(scope="module")
def published2(tmp_path_factory):
    """Config 2's first catalogue file as a stand-in in its published container."""
    cfg = load_config(2)
    entry = cfg.published_models()[0]
    path = tmp_path_factory.mktemp("published") / entry.file
    CONTAINERS[2][1](str(path), cfg.num_classes)
    return cfg, entry, path.read_bytes()


def test_fetch_converts_into_the_cache_and_a_second_run_downloads_nothing(tmp_path, published2):
    cfg, entry, data = published2
    with WeightsServer() as server:
        server.files[entry.file] = Served(data)
        env = {"SOLOV2_HOME": str(tmp_path / "home"), "SOLOV2_WEIGHTS_MIRROR": server.url}
        path = resolve_model_path(cfg, cfg.test_cfg.model_path, environ=env, log=quiet,
                                  progress=False)
        assert path == os.path.join(tmp_path, "home", os.path.basename(entry.output))
        arrays, meta = load_pdparams(path)
        assert meta["source"] == entry.file and "head.solo_cate.weight" in arrays
        assert os.path.exists(tmp_path / "home" / "downloads" / entry.file)
        count = len(server.requests)
        again = resolve_model_path(cfg, cfg.test_cfg.model_path, environ=env, log=quiet,
                                   progress=False)
        assert again == path and len(server.requests) == count == 1


def test_truncated_published_file_is_removed_and_explained(tmp_path, published2):
    cfg, entry, data = published2
    home = tmp_path / "home"
    with WeightsServer() as server:
        server.files[entry.file] = Served(data[: len(data) // 3])
        env = {"SOLOV2_HOME": str(home), "SOLOV2_WEIGHTS_MIRROR": server.url}
        with pytest.raises(DownloadError, match="not the published file") as err:
            fetch_published(cfg, entry, environ=env, log=quiet, progress=False)
    assert entry.converter in str(err.value)  # says how to do it by hand
    assert not os.path.exists(home / "downloads" / entry.file)
    assert not os.path.exists(home / os.path.basename(entry.output))


def test_unreachable_mirror_names_the_url_and_the_manual_route(tmp_path, published2):
    cfg, entry, _ = published2
    with refused_port() as url:
        env = {"SOLOV2_HOME": str(tmp_path), "SOLOV2_WEIGHTS_MIRROR": url}
        with pytest.raises(DownloadError) as err:
            fetch_published(cfg, entry, environ=env, log=quiet, progress=False)
    message = str(err.value)
    assert f"{url}/{entry.file}" in message and "wget" in message and "\n" not in message


def test_only_the_configs_default_is_fetched(tmp_path, published2):
    cfg, _, _ = published2
    env = {"SOLOV2_HOME": str(tmp_path), "SOLOV2_WEIGHTS_MIRROR": "http://127.0.0.1:9"}
    named = str(tmp_path / "mine.pdparams")
    assert resolve_model_path(cfg, named, environ=env, log=quiet) == named
    default = cfg.test_cfg.model_path
    offline = dict(env, SOLOV2_OFFLINE="1")
    assert resolve_model_path(cfg, default, environ=offline, log=quiet) == default
    assert resolve_model_path(cfg, default, allow_download=False, environ=env,
                              log=quiet) == default
    assert os.listdir(tmp_path) == []


def test_mirror_and_home_come_from_the_environment(published2):
    _, entry, _ = published2
    assert fetch.source_url(entry, {}) == entry.url
    assert fetch.source_url(entry, {"SOLOV2_WEIGHTS_MIRROR": "http://127.0.0.1:8/w/"}) \
        == f"http://127.0.0.1:8/w/{entry.file}"
    assert fetch.cache_home({"SOLOV2_HOME": "/x/y"}) == "/x/y"
    assert fetch.cache_home({}).endswith(os.path.join(".cache", "solov2-paddle"))


def test_cloudstor_files_say_the_host_closed():
    entry = load_config(0).published_models()[0]
    assert "cloudstor" in entry.url
    assert "reported closed in 2023" in fetch.by_hand(entry, entry.url)
