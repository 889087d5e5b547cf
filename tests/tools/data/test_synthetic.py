"""The synthetic shapes set (tools/data/synthetic.py): written atomically, so a reader never
sees a half-written file and two runs making it into one folder leave whole files."""

import os
import threading

import cv2

from tools.data.synthetic import make_dataset

SMALL = dict(train=3, val=2, size=(48, 64))


def files_of(folder):
    found = {}
    for top, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(top, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def test_two_runs_into_one_folder_leave_whole_files(tmp_path):
    references = []
    for seed in (0, 1):
        make_dataset(str(tmp_path / f"seed{seed}"), seed=seed, **SMALL)
        references.append(files_of(tmp_path / f"seed{seed}"))
    assert references[0].keys() == references[1].keys()
    shared = str(tmp_path / "shared")
    errors, seen, done = [], [], threading.Event()

    def maker(seed):
        try:
            for _ in range(8):
                make_dataset(shared, seed=seed, **SMALL)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    def reader():  # what a training run started meanwhile would read
        while not done.is_set():
            for name in references[0]:
                path = os.path.join(shared, name)
                if os.path.exists(path):
                    with open(path, "rb") as f:
                        seen.append((name, f.read()))

    makers = [threading.Thread(target=maker, args=(seed,)) for seed in (0, 1)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in makers:
        t.start()
    for t in makers:
        t.join()
    done.set()
    watcher.join()
    assert not errors
    assert seen and all(data in (references[0][name], references[1][name])
                        for name, data in seen)
    found = files_of(shared)
    assert found.keys() == references[0].keys()  # nothing else, no temporaries
    for name, data in found.items():
        assert data in (references[0][name], references[1][name]), name
        if name.endswith(".png"):
            assert cv2.imread(os.path.join(shared, name)) is not None
