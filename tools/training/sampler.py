"""Which images each training process reads: disjoint shards of every epoch.

paddle.io.DistributedBatchSampler pads an epoch with repeated images until it divides by
the number of processes, so with 2 processes and 9 images one image is read twice in an
epoch, once on each process. Here nothing is repeated: every process draws the same
permutation of the whole set for epoch ``e`` (seeded by the run's seed and ``e``), the
permutation is cut to a whole number of batches on every process, and process ``r`` takes
the r-th contiguous part. The images cut off (fewer than processes x batch size) differ
from epoch to epoch; dropping an incomplete batch is what PaddleDetection does too
(``drop_last: true``). Every process gets the same number of batches, which
paddle.DataParallel needs: a process with one more batch would wait for the others'
gradients for ever.
"""

import numpy as np


class ShardedBatchSampler:
    """Batches of indices into a dataset of ``size`` images for process ``rank`` of
    ``world_size``; ``set_epoch(e)`` picks epoch e's order (as DistributedBatchSampler)."""

    def __init__(self, size, batch_size, rank=0, world_size=1, seed=0, shuffle=True):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size} processes")
        self.size, self.batch_size = size, batch_size
        self.rank, self.world_size = rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.drop_last = True  # read by paddle.io.DataLoader
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.size // (self.batch_size * self.world_size)

    def shard(self, epoch=None):
        """The indices this process reads in ``epoch`` (default: the current one), in order."""
        epoch = self.epoch if epoch is None else epoch
        order = np.arange(self.size)
        if self.shuffle:
            # Seeded by (seed, epoch) alone, so every process draws the same permutation.
            order = np.random.default_rng([self.seed, epoch]).permutation(self.size)
        per_process = len(self) * self.batch_size
        return order[self.rank * per_process:(self.rank + 1) * per_process].tolist()

    def __iter__(self):
        indices = self.shard()
        for start in range(0, len(indices), self.batch_size):
            yield indices[start:start + self.batch_size]
