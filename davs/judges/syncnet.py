"""The lip-sync judge, SyncNet in spirit (Chung & Zisserman, ACCV 2016 workshops): two towers map a stack
of 5 consecutive mouth crops and the 0.2 s MFCC window centred on the stack's middle frame into one
embedding space, where in-sync pairs are close. Its own weights and seed, not DAVS's Ev_w / Ea_w."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from davs.models.blocks import ConvBlock


class SyncNet(nn.Module):
    def __init__(self, stack: int = 5, width: int = 16, embed_dim: int = 64) -> None:
        super().__init__()
        w = width
        self.stack = stack
        self.video = nn.Sequential(  # grayscale mouth stack as channels, as in SyncNet
            ConvBlock(stack, 2 * w), ConvBlock(2 * w, 4 * w, 2), ConvBlock(4 * w, 4 * w, 2),
            ConvBlock(4 * w, 8 * w), nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(), nn.Linear(8 * w * 4, embed_dim))
        self.audio_norm = nn.BatchNorm2d(1)
        self.audio = nn.Sequential(
            ConvBlock(1, 2 * w), ConvBlock(2 * w, 4 * w, 2), ConvBlock(4 * w, 8 * w, 2),
            nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(), nn.Linear(8 * w * 4, embed_dim))

    def embed_video(self, stacks: torch.Tensor) -> torch.Tensor:
        """stacks (N, stack, h, w) grayscale mouth crops in [-1, 1] -> (N, E) unit vectors."""
        return F.normalize(self.video(stacks), dim=-1)

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """mfcc (N, F, C) windows -> (N, E) unit vectors."""
        return F.normalize(self.audio(self.audio_norm(mfcc.unsqueeze(1))), dim=-1)  # (N, 1, F, C) in
