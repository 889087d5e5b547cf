"""Each training process reads a disjoint shard of every epoch: checked on two sampler
instances, and in a real two-process CPU run under paddle.distributed.launch (gloo)."""

import json
import os
import subprocess
import sys

import pytest

from tools.training.sampler import ShardedBatchSampler

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def shards(size, batch, world, epoch, seed=0):
    samplers = [ShardedBatchSampler(size, batch, rank, world, seed=seed) for rank in range(world)]
    out = []
    for sampler in samplers:
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) and all(len(b) == batch for b in batches)
        out.append([i for b in batches for i in b])
    return out


@pytest.mark.parametrize("size, batch, world", [(12, 2, 2), (11, 2, 2), (23, 3, 4), (5, 1, 1)])
def test_shards_are_disjoint_equal_and_cover_all_but_an_incomplete_batch(size, batch, world):
    for epoch in range(3):
        parts = shards(size, batch, world, epoch)
        seen = [i for part in parts for i in part]
        assert len(seen) == len(set(seen))                     # no image twice
        assert len({len(part) for part in parts}) == 1         # the same number of batches
        assert size - len(seen) == size % (batch * world)      # only the remainder is cut
        assert set(seen) <= set(range(size))


def test_each_epoch_has_its_own_order_and_cuts_other_images():
    cut = []
    for epoch in range(6):
        seen = [i for part in shards(11, 2, 2, epoch) for i in part]
        cut.append(set(range(11)) - set(seen))
        assert seen == [i for part in shards(11, 2, 2, epoch) for i in part]  # reproducible
    assert len({frozenset(c) for c in cut}) > 1
    assert shards(12, 2, 2, 0) != shards(12, 2, 2, 1)
    assert shards(12, 2, 2, 0, seed=0) != shards(12, 2, 2, 0, seed=1)


def test_a_rank_outside_the_world_is_refused():
    with pytest.raises(ValueError, match="rank 2 outside a world of 2"):
        ShardedBatchSampler(10, 2, rank=2, world_size=2)


PROBE = """
import json, os, sys
sys.path.insert(0, {root!r})
import tools  # noqa: F401  (process settings, as in every script)
import paddle
from config import load_config
from tools.errors import UserError
from tools.training.build import build_train_loader, distributed_info, same_start_everywhere


class Sized(paddle.io.Dataset):
    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        return i


rank, world = distributed_info()  # initialises the gloo group, as train.py does
cfg = load_config(4, ["train_cfg.batch_size=2", "train_cfg.num_workers=0"])
shards, batches = {{}}, {{}}
for size in (12, 11):
    # rank and world size as the launcher set them
    loader, sampler = build_train_loader(cfg, Sized(size), seed=3)
    batches[size] = len(loader)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        shards[f"{{size}}/{{epoch}}"] = [i for batch in sampler for i in batch]
same_start_everywhere(7, world)
try:
    same_start_everywhere(5 * rank, world)
    refused = ""
except UserError as err:
    refused = str(err)
with open(os.path.join({out!r}, "rank%d.json" % rank), "w") as f:
    json.dump({{"world": world, "batches": batches, "shards": shards,
               "refused": refused}}, f)
"""


def test_two_launched_processes_read_disjoint_shards_covering_the_set(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE.format(root=ROOT, out=str(tmp_path)))
    proc = subprocess.run([sys.executable, "-m", "paddle.distributed.launch",
                           "--nproc_per_node", "2", "--log_dir", str(tmp_path / "log"),
                           str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    logs = "".join(open(tmp_path / "log" / n).read()[-1500:]
                   for n in sorted(os.listdir(tmp_path / "log"))) if proc.returncode else ""
    assert proc.returncode == 0, proc.stdout[-1500:] + logs
    ranks = [json.load(open(tmp_path / f"rank{r}.json")) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    # 2 images per batch on each of 2 processes: 3 batches each of 12 images, 2 of 11.
    assert [r["batches"] for r in ranks] == [{"12": 3, "11": 2}] * 2
    for epoch in range(3):
        first, second = (r["shards"][f"12/{epoch}"] for r in ranks)
        assert len(first) == len(second) == 6 and not set(first) & set(second)
        assert set(first) | set(second) == set(range(12))  # the whole set, once
        first, second = (r["shards"][f"11/{epoch}"] for r in ranks)
        assert len(first) == len(second) == 4 and not set(first) & set(second)
        assert len(set(first) | set(second)) == 8  # all but 11 % 4 = 3, cut this epoch
    assert ranks[0]["shards"]["12/0"] != ranks[0]["shards"]["12/1"]
    # Starting at different iterations (a resume that found the checkpoint on one machine
    # only) is refused on every process, naming the iterations.
    for r in ranks:
        assert "start at different iterations [0, 5]" in r["refused"]
