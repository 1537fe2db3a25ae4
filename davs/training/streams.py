"""The loop's batch sources: a restartable :class:`Stream` over a loader, and moving batches to a device.

A resumed run continues on the data order of an uninterrupted one: the stream restarts its epoch and passes
over the batches the checkpoint says were consumed. Those batches are not decoded: the loader's
:class:`~davs.data.order.SharedEpoch` tells its workers how many batches to pass over, and they yield
placeholders for them (:class:`~davs.data.order.SkipAhead`), so a resume costs reading the tar members,
not decoding the frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from davs.data.order import is_skipped


def to_device(x: Any, device: torch.device) -> Any:
    """Tensors (also inside dicts) to ``device``; anything else unchanged."""
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    return x


@dataclass
class Stream:
    """A restartable batch source: a loader, its batches per epoch, and its shared epoch counter."""

    loader: Any
    batches_per_epoch: int
    epoch: Any = None  # davs.data.order.SharedEpoch
    current: int = 0
    consumed: int = 0
    _it: Iterator | None = field(default=None, repr=False)

    def start(self, epoch: int, skip: int) -> None:
        """Begin ``epoch`` after its first ``skip`` batches (resume mid-epoch on the same data order)."""
        self.current, self.consumed = epoch, 0
        if self.epoch is not None:
            self.epoch.set(epoch, skip)  # the workers yield placeholders for the skipped batches
        self._it = iter(self.loader)
        for _ in range(skip):
            batch = self.next()
            if self.epoch is not None and not is_skipped(batch):
                raise RuntimeError("resume: the loader decoded a batch it was told to skip")

    def next(self) -> Any:
        if self._it is None:
            self.start(0, 0)
        try:
            batch = next(self._it)
        except StopIteration:
            self.start(self.current + 1, 0)
            batch = next(self._it)
        self.consumed += 1
        return batch
