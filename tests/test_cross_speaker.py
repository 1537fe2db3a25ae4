"""The cross-speaker mouth probe (davs.cross_speaker): it tells a generator that draws the target's mouth from one
that draws the driver's."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from davs.cross_speaker import cross_speaker, driver_index
from davs.data.spec import eval_loaders

from .conftest import CPU, tiny_data

BOX = (0.62, 0.25, 0.95, 0.75)


class _Ids(NamedTuple):
    fmap: torch.Tensor
    skips: list


class _Ep(nn.Module):
    def forward(self, ref: torch.Tensor) -> _Ids:
        return _Ids(ref, [])


class _Frames(nn.Module):
    """A "word encoder" whose features are the frames themselves (video) or nothing of them (audio)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2) if x.dim() == 5 else torch.zeros(*x.shape[:2], 3 * 32 * 32)  # (B, T, D)


class _G(nn.Module):
    """Draws the driver's frame (``copy="driver"``: decodes the word feature) or the reference (``"target"``)."""

    def __init__(self, copy: str) -> None:
        super().__init__()
        self.copy = copy

    def contextualise(self, words):  # each frame's word alone
        return words

    def forward(self, fmap, skips, words, return_mask=False):
        out = words.view(-1, 3, 32, 32) if self.copy == "driver" else fmap  # (N, 3, H, W)
        return out, torch.zeros(len(out), 1, 32, 32)


def _run(shards, copy: str) -> dict[str, float]:
    data = tiny_data(shards)
    loaders = {s: eval_loaders(data, 3, s, ("lrw",))["lrw"] for s in ("test", "val")}
    nets = {"Ep": _Ep(), "G": _G(copy), "Ev_w": _Frames(), "Ea_w": _Frames()}
    return cross_speaker(nets, loaders["test"], loaders["val"], BOX, CPU, 1.0)


def test_probe_tells_the_target_mouth_from_the_driver_mouth(shards):
    drv, tgt = _run(shards, "driver"), _run(shards, "target")
    assert drv["mouth_probe_real"] > 2 * drv["chance"]  # the probe reads speakers from real mouths
    # a generator drawing the driver's mouth is called the driver, one keeping the reference's the target
    assert drv["mouth_is_driver_video"] > drv["mouth_is_target_video"]
    assert tgt["mouth_is_target_video"] > tgt["mouth_is_driver_video"]
    assert tgt["mouth_is_target_video"] > 2 * drv["mouth_is_target_video"]
    assert set(drv) == {"mouth_is_target_video", "mouth_is_driver_video", "mouth_is_target_audio",
                        "mouth_is_driver_audio", "mouth_probe_real", "chance"}


def test_driver_is_the_next_clip_of_another_known_speaker():
    assert driver_index(torch.tensor([0, 0, 1, -1, 1])).tolist() == [2, 2, 0, -1, 0]
    assert driver_index(torch.tensor([2, 2, -1])).tolist() == [-1, -1, -1]  # nobody else speaks

