"""The contrastive loss DAVS puts on paired audio / video word embeddings (Hadsell et al., 2006)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from davs.tensors import masked_mean


def contrastive_loss(video: torch.Tensor, audio: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Pull paired (video_i, audio_i) together; push mismatched pairs at least ``margin`` apart.

    video, audio: (B, D) embeddings (L2-normalised here). Negatives pair video_i with audio_{i+k} for
    every shift k whose word differs, so the loss cannot be won by collapsing the embedding.
    """
    v = F.normalize(video.float(), dim=-1)
    a = F.normalize(audio.float(), dim=-1)
    pos = (v - a).pow(2).sum(-1)  # (B,) squared distances of the true pairs
    b = v.shape[0]
    if b < 2:
        return pos.mean()
    d = torch.cdist(v, a)  # (B, B) distances of every video to every audio
    neg_mask = labels[:, None] != labels[None, :]
    neg = F.relu(margin - d).pow(2)
    neg_term = (neg * neg_mask).sum() / neg_mask.sum().clamp_min(1)
    return pos.mean() + neg_term


def paper_contrastive_loss(video: torch.Tensor, audio: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """The official DAVS's contrastive loss (``L2ContrastiveLoss``): each clip's per-frame features (B, T, D) are
    concatenated and L2-normalised; the true pairs' squared distances plus the squared hinge ``margin - d`` of
    every other pair in the batch (whatever its word), summed and divided by 2B. The video side is detached,
    as in the official code: only the audio encoder moves towards the lips."""
    v = F.normalize(video.detach().flatten(1).float(), dim=-1)  # (B, T*D)
    a = F.normalize(audio.flatten(1).float(), dim=-1)  # (B, T*D)
    d = torch.cdist(v, a)  # (B, B)
    off = ~torch.eye(len(v), dtype=torch.bool, device=v.device)
    return ((F.relu(margin - d).pow(2) * off).sum() + d.diagonal().pow(2).sum()) / (2 * len(v))


def embedding_contrastive_loss(form: str, video: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor,
                               labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """``"davs"``: :func:`contrastive_loss` on masked-mean pooled features, negatives across words; ``"paper"``:
    :func:`paper_contrastive_loss`. video, audio (B, T, D); mask (B, T) the word's frames; labels (B,)."""
    if form == "paper":
        return paper_contrastive_loss(video, audio, margin)
    if form != "davs":
        raise ValueError(f"contrastive form must be 'davs' or 'paper' (got {form!r})")
    return contrastive_loss(masked_mean(video, mask), masked_mean(audio, mask), labels, margin)


def frame_sync_loss(
    video: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1,
    min_gap: int = 3, across_clips: bool = True,
) -> torch.Tensor:
    """Frame-level audio-visual synchronisation: each video frame must pick its own audio frame (InfoNCE
    over cosine similarities) among the audio of the same clip ``min_gap`` or more frames away and, with
    ``across_clips``, of every frame of clips of other words; the symmetric term picks the video for each
    audio frame. Without ``across_clips`` every candidate is the clip's own, one speaker's: what tells speakers
    apart (the voice, the lips' colour) does not help pick the frame, so the loss gives no reason to keep it.

    The generator consumes one word feature per frame, so the audio feature of frame t must say what
    the mouth does at t, not only which word the clip holds; the clip-level contrastive loss leaves
    per-frame audio features synchronised with nothing finer than the word. Unlike a margin loss, a
    softmax over candidates has no collapsed minimum (all features equal scores log N, the maximum).
    video, audio: (B, T, D); mask: (B, T) bool (the word's frames); labels: (B,).
    """
    b, t = mask.shape
    clip = torch.arange(b, device=mask.device)[:, None].expand(b, t)[mask]  # (N,) clip of each kept frame
    time = torch.arange(t, device=mask.device)[None, :].expand(b, t)[mask]  # (N,)
    v = F.normalize(video[mask].float(), dim=-1)  # (N, D)
    a = F.normalize(audio[mask].float(), dim=-1)  # (N, D)
    same = clip[:, None] == clip[None, :]  # (N, N)
    candidate = same & ((time[:, None] - time[None, :]).abs() >= min_gap)  # (N, N)
    if across_clips:
        candidate |= labels[clip][:, None] != labels[clip][None, :]
    candidate |= torch.eye(len(clip), dtype=torch.bool, device=mask.device)  # the true pair
    logits = (v @ a.T / temperature).masked_fill(~candidate, float("-inf"))  # (N, N)
    target = torch.arange(len(clip), device=mask.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
