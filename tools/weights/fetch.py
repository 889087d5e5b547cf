"""Fetching a config's published weights on first use: download, convert, cache.

``python demo.py --config=N`` with the config's default weight file absent looks in the
cache, and failing that downloads the first file of the config's catalogue
(``config.<file>.published``), converts it with the same strict converter the
``1_*2paddle.py`` scripts run, and keeps both:

    $SOLOV2_HOME/downloads/<published file>   the file as published
    $SOLOV2_HOME/<converted file>             what the model loads

``SOLOV2_HOME`` defaults to ``~/.cache/solov2-paddle``. ``SOLOV2_WEIGHTS_MIRROR=URL``
replaces every catalogue URL by ``URL/<published file>``; ``SOLOV2_OFFLINE=1`` (or a
script's ``--no-download``) turns fetching off. Only the config's default is fetched: a
``model_path`` the user names that does not exist stays an error.

A download goes to ``<file>.part`` and is renamed only when complete. A connection that
drops mid-file is resumed with an HTTP Range request (in the same run, a few times, and in
the next run from the ``.part`` a killed run left). A response that cannot be the file (an
error status, an HTML page, a body shorter or longer than its Content-Length, a
Content-MD5 that disagrees) is one ``DownloadError`` line naming the URL and how to get the
file by hand, and nothing of it stays in the cache. The converter's check of every tensor
name and shape is the integrity check of the content; a file it refuses is removed too.
"""

import base64
import contextlib
import hashlib
import http.client
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request

from ..errors import UserError
from ..files import describe_os_error

DEFAULT_HOME = os.path.join("~", ".cache", "solov2-paddle")
CHUNK = 1 << 20
RETRIES = 3        # resumptions of a dropped connection within one run
TIMEOUT = 30.0     # seconds without a byte before a connection counts as dropped
_TRUE = ("1", "true", "yes", "on")


class DownloadError(UserError):
    """A published file could not be fetched; the message says how to get it by hand."""


def cache_home(environ=None):
    environ = os.environ if environ is None else environ
    return os.path.abspath(os.path.expanduser(environ.get("SOLOV2_HOME") or DEFAULT_HOME))


def offline(environ=None):
    environ = os.environ if environ is None else environ
    return environ.get("SOLOV2_OFFLINE", "").strip().lower() in _TRUE


def source_url(entry, environ=None):
    """Where ``entry`` (a config.Published) is downloaded from: its catalogue URL, or
    ``$SOLOV2_WEIGHTS_MIRROR/<file>``."""
    environ = os.environ if environ is None else environ
    mirror = environ.get("SOLOV2_WEIGHTS_MIRROR", "").strip()
    return f"{mirror.rstrip('/')}/{entry.file}" if mirror else entry.url


def cached_model_path(entry, environ=None):
    return os.path.join(cache_home(environ), os.path.basename(entry.output))


def by_hand(entry, url):
    """The manual route, for messages."""
    text = (f"download it by hand (wget -O {entry.file} '{url}'), then run "
            f"python {entry.converter} {entry.file}, or set SOLOV2_WEIGHTS_MIRROR to a "
            "server that has it")
    if "cloudstor.aarnet.edu.au" in url:
        # SOLO's README links its checkpoints there; the service was reported closed in 2023.
        text += (" (AARNet CloudStor, where SOLO published this file, was reported closed in "
                 "2023: look for a copy, e.g. a mirror of the SOLO checkpoints)")
    return text


# ----------------------------------------------------------------------------- download
def _human(size):
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024.0


def _looks_like_html(head, content_type):
    if content_type and content_type.split(";")[0].strip().lower() in ("text/html",
                                                                        "application/xhtml+xml"):
        return True
    start = head.lstrip()[:15].lower()
    return start.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head"))


def _content_md5(headers):
    """The hex MD5 a server states for the whole file (RFC 1864 Content-MD5, base64; Baidu
    BOS, which hosts the PaddleDetection files, sends it), or None."""
    value = headers.get("Content-MD5") or headers.get("content-md5")
    if not value:
        return None
    try:
        digest = base64.b64decode(value.strip().strip('"'), validate=True)
    except ValueError:
        return None
    return digest.hex() if len(digest) == 16 else None


def _file_md5(path):
    md5 = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            md5.update(block)
    return md5.hexdigest()


class _Dropped(Exception):
    """The connection ended before the file did; resumable."""


def _transfer(url, part, state, timeout, bar):
    """One HTTP request appending to ``part``; updates ``state`` (total, md5). Raises
    DownloadError for a response that cannot be the file, _Dropped for a short body."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"User-Agent": "solov2-paddle"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have and have == state.get("total"):
            return  # the .part was already complete
        raise DownloadError(f"HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        reason = err.reason
        if isinstance(reason, ConnectionRefusedError):
            raise DownloadError("connection refused") from None
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise DownloadError(f"no answer within {timeout:.0f} s") from None
        raise DownloadError(f"cannot connect ({reason})") from None
    except (socket.timeout, TimeoutError):
        raise DownloadError(f"no answer within {timeout:.0f} s") from None
    except OSError as err:
        raise DownloadError(f"cannot connect ({err})") from None
    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if response.status == 206 and have:
            start = response.headers.get("Content-Range", "").replace("bytes ", "")
            if not start.startswith(f"{have}-"):
                raise DownloadError(f"the server resumed at the wrong place ({start!r})")
            total = start.rpartition("/")[2]
            state["total"] = int(total) if total.isdigit() else None
        else:
            have = 0  # the server ignored the Range: start again
            state["total"] = length
            state["md5"] = _content_md5(response.headers)
        mode = "ab" if have else "wb"
        if bar is not None:
            bar.reset(total=state["total"])
            bar.update(have)
        first = True
        try:
            with open(part, mode) as f:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except (http.client.IncompleteRead, OSError) as err:
                        # OSError covers socket timeouts and resets. Bytes that did
                        # arrive are kept: the next request asks for the rest.
                        partial = getattr(err, "partial", b"")
                        if partial:
                            f.write(partial)
                        raise _Dropped(type(err).__name__) from None
                    if first and not have:
                        if _looks_like_html(block, response.headers.get("Content-Type")):
                            raise DownloadError("the server sent a web page (HTML), not "
                                                "the weight file")
                    first = False
                    if not block:
                        break
                    f.write(block)
                    if bar is not None:
                        bar.update(len(block))
        except OSError as err:
            raise DownloadError(describe_os_error(err, part)) from None
    size = os.path.getsize(part)
    if state["total"] is not None and size < state["total"]:
        raise _Dropped(f"{size} of {state['total']} bytes")
    if state["total"] is not None and size > state["total"]:
        raise DownloadError(f"received {size} bytes but the server announced "
                            f"{state['total']}")


def download(url, dest, timeout=TIMEOUT, retries=RETRIES, log=print, progress=True):
    """Download ``url`` to ``dest`` (complete or not at all); returns ``dest``.

    A ``dest + '.part'`` left by an earlier run is resumed. Raises DownloadError with the
    reason; the message of the caller adds what to do by hand."""
    folder = os.path.dirname(os.path.abspath(dest))
    os.makedirs(folder, exist_ok=True)
    part, info = dest + ".part", dest + ".part.json"
    state = {}
    if os.path.exists(part) and os.path.exists(info):
        with contextlib.suppress(ValueError, OSError):
            with open(info) as f:
                saved = json.load(f)
            if saved.get("url") == url:
                state = {"total": saved.get("total"), "md5": saved.get("md5")}
    if not state and os.path.exists(part):
        os.remove(part)  # a .part from another URL or without its record: start clean
    if state:
        log(f"resuming {os.path.basename(dest)} at {_human(os.path.getsize(part))}")
    bar = _progress_bar(os.path.basename(dest)) if progress else None
    try:
        for attempt in range(retries + 1):
            try:
                _transfer(url, part, state, timeout, bar)
                break
            except _Dropped as err:
                _save_state(info, url, state)
                if attempt == retries:
                    raise DownloadError(f"the connection kept dropping ({err})") from None
                time.sleep(min(2 ** attempt, 8) * 0.25)
            finally:
                if state:
                    _save_state(info, url, state)
        if state.get("md5") and _file_md5(part) != state["md5"]:
            raise DownloadError("the file's MD5 differs from the one the server states")
        os.replace(part, dest)
    except DownloadError:
        _remove(part, info)
        raise
    finally:
        if bar is not None:
            bar.close()
    _remove(info)
    return dest


def _save_state(info, url, state):
    with contextlib.suppress(OSError), open(info, "w") as f:
        json.dump({"url": url, "total": state.get("total"), "md5": state.get("md5")}, f)


def _remove(*paths):
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _progress_bar(name):
    from tqdm import tqdm

    return tqdm(desc=f"download {name}", unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr, mininterval=0.5, dynamic_ncols=True)


# ------------------------------------------------------------------------- fetch a model
@contextlib.contextmanager
def _cache_lock(home, name):
    """One process at a time fetches a given file; the others wait and then find it."""
    import fcntl

    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, f".lock-{name}"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch_published(cfg, entry, environ=None, log=print, progress=True):
    """The converted file of ``entry`` (a config.Published of ``cfg``), from the cache or
    downloaded and converted into it now; returns its path."""
    from .convert import convert_file

    environ = os.environ if environ is None else environ
    home = cache_home(environ)
    target = cached_model_path(entry, environ)
    url = source_url(entry, environ)
    with _cache_lock(home, os.path.basename(entry.output)):
        if os.path.exists(target):
            return target
        source = os.path.join(home, "downloads", entry.file)
        if not os.path.exists(source):
            log(f"fetching {entry.file} for {cfg.name} from {url}")
            try:
                download(url, source, log=log, progress=progress)
            except DownloadError as err:
                raise DownloadError(f"cannot download {url}: {err}. Nothing was kept in "
                                    f"{home}; {by_hand(entry, url)}") from None
        try:
            kind, count = convert_file(cfg, source, target)
        except UserError as err:
            _remove(source)
            raise DownloadError(f"{url} downloaded but is not the published file ({err}); "
                                f"it was removed from {home}. {by_hand(entry, url)}") from None
        log(f"converted {entry.file} ({kind}) -> {target}: {count} tensors")
    return target


def resolve_model_path(cfg, path, allow_download=True, environ=None, log=print,
                       progress=True):
    """The weight file to load for ``path``: ``path`` itself when it exists; for the
    config's default (its first published model) the cached or freshly fetched file;
    otherwise ``path`` unchanged (the loader then says it is missing)."""
    environ = os.environ if environ is None else environ
    if path is None or os.path.exists(path):
        return path
    models = cfg.published_models()
    if not models or os.path.normpath(path) != os.path.normpath(models[0].output):
        return path  # the user named this file: its absence is their error to see
    entry = models[0]
    cached = cached_model_path(entry, environ)
    if os.path.exists(cached):
        return cached
    if not allow_download or offline(environ):
        return path
    return fetch_published(cfg, entry, environ, log=log, progress=progress)
