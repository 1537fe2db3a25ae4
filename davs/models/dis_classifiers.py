"""The dis-classifiers of DAVS' adversarial disentanglement.

Cw_p reads the *word* from a sequence of *identity* features; Cp_w reads the *identity* from *word*
features. Each is trained on true labels with the encoders frozen; the encoders are then trained so
that the dis-classifier's softmax becomes uniform (MSE to 1/N), removing that information.
"""

from __future__ import annotations

import torch
from torch import nn

from davs.models.word_classifier import TemporalClassifier


class WordFromIdentity(TemporalClassifier):
    """Cw_p: (B, T, D) identity features of a clip -> (B, num_words) logits."""


class IdentityFromWord(nn.Module):
    """Cp_w: (N, D) word features of a face (or their mean over a clip) -> (N, num_ids) logits.

    The disentanglement stage trains it on MS-Celeb identities (word features of still faces).

    The input is standardised per feature (BatchNorm without affine parameters): otherwise the encoder
    can hide identity in low-variance directions that an MLP trained with Adam on raw features barely
    uses but any standardised linear probe reads.
    """

    def __init__(self, feat_dim: int = 128, num_ids: int = 1000, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.BatchNorm1d(feat_dim, affine=False), nn.Linear(feat_dim, hidden),
                                 nn.ReLU(inplace=True), nn.Linear(hidden, num_ids))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(feats)
