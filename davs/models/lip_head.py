"""Lip head: the mouth's shape per frame, read from DAVS word features.

A linear temporal filter over the shared audio/video word space: frame t's mouth state (open, width,
round, each in [0, 1], as the embedded corpus's renderer defines them) from the word features of frames
t - context .. t + context. Because Ea_w and Ev_w map into one space, one head serves audio- and video-driven
generation. :func:`davs.training.lip_head.fit_lip_head` fits it in closed form (ridge regression);
:mod:`davs.inference.lip_warp` turns its states into a warp of a real photo's own lips.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from davs.checkpoint import CheckpointError
from davs.files import atomic_output
from davs.models.temporal import pad_edges, stream_context

STATE_NAMES = ("open", "width", "round")
REST_STATE = (0.0, 0.45, 0.0)  # the corpus's closed mouth at rest (davs.synth.visemes)


class LipHead(nn.Module):
    def __init__(self, feat_dim: int, context: int = 2, states: int = len(STATE_NAMES)) -> None:
        super().__init__()
        self.feat_dim, self.context = feat_dim, context
        self.filter = nn.Conv1d(feat_dim, states, kernel_size=2 * context + 1)  # applied to edge-padded words

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        """words (B, T, D) -> mouth states (B, T, 3) in [0, 1]; edges replicate the first / last frame."""
        x = pad_edges(words, self.context).transpose(1, 2)  # (B, D, T + 2c)
        y = F.conv1d(x, self.filter.weight, self.filter.bias)  # (B, 3, T)
        return y.transpose(1, 2).clamp(0.0, 1.0)  # (B, T, 3)

    def stream(self, chunks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Mouth states (b, 3) for a stream of word-feature chunks (b, D), equal to :meth:`forward` of the whole
        sequence, holding only 2 * context rows between chunks (each output waits for its right context)."""
        return stream_context(chunks, self.context, self._valid)

    def _valid(self, rows: torch.Tensor) -> torch.Tensor:
        """(n + 2c, D) rows with their context -> (n, 3) states."""
        y = F.conv1d(rows.T[None], self.filter.weight, self.filter.bias)  # (1, 3, n)
        return y[0].T.clamp(0.0, 1.0)

    def config(self) -> dict[str, int]:
        return {"feat_dim": self.feat_dim, "context": self.context, "states": self.filter.out_channels}


def save_lip_head(head: LipHead, path: str | Path, report: dict[str, float]) -> None:
    """The head's weights, its constructor arguments and its held-out scores, written atomically."""
    with atomic_output(path) as tmp:
        torch.save({"lip_head": head.state_dict(), "lip_head_config": head.config(), "report": report}, tmp)


def load_lip_head(path: str | Path, device: torch.device | str = "cpu") -> LipHead:
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
        head = LipHead(**ck["lip_head_config"])
        head.load_state_dict(ck["lip_head"])
    except (OSError, KeyError, TypeError, RuntimeError, pickle.UnpicklingError) as e:
        raise CheckpointError(f"{path} is not a lip head model file ({str(e).splitlines()[0]})") from None
    return head.to(device).eval()
