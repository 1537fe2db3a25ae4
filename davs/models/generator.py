"""G, the DAVS generator: identity feature map (+ skips from Ep) and a word feature -> one face frame."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from davs.models.blocks import ConvBlock, UpBlock
from davs.models.temporal import pad_edges, stream_context


class Generator(nn.Module):
    """The word feature is projected to a spatial map over Ep's 8x8 grid (a linear layer with one set of
    weights per grid cell, like a DCGAN generator's first layer) and concatenated: on aligned faces the
    mouth sits at known cells, so the word can say what to draw *where* without the identity map having
    to localise the mouth first. Up-blocks decode to the image,
    concatenating Ep's skip maps at matching resolutions (the skip connection of DAVS), the last one
    being the reference image itself. The word feature also modulates every decoder stage (FiLM: a
    per-channel scale and shift after normalisation), so the normalisation cannot wash out the spatially
    constant word signal.

    The output is the reference plus a predicted change, gated per pixel by an attention mask as in
    GANimation (Pumarola et al., ECCV 2018): ``out = ref + (1 - A) * delta``. Where the target cannot be
    predicted from the inputs (head motion, lighting), copying is the L1-optimal answer and a saturated
    mask (A = 1) copies exactly, which an ungated change, a linear map of normalised features, cannot;
    the change is spent where speech moves the face, the mouth. ``delta`` starts at zero (and so do the
    FiLM layers), so G starts exactly as the copy-the-reference baseline, with A = 1/2.

    With ``context`` > 0, G reads each frame's word feature together with those of ``context`` frames either
    side (:meth:`contextualise`: a temporal convolution over the sequence, edge frames repeated, that starts as
    the identity): a frame's mouth is read better from its word feature and its neighbours' than from its own
    alone, above all from the audio (``openness_r2_context`` against ``openness_r2`` in
    experiments/identity_motion.py).

    With ``conceal_box`` (a relative (y0, x0, y1, x1) box) the reference's mouth is hidden before Ep reads it
    and before it is copied (:func:`conceal_mouth`): G cannot keep the reference's mouth and must draw one from
    the word feature, whatever the reference's mouth looked like (the inpainting of Wav2Lip, which masks the
    lower half of its input face).
    """

    def __init__(self, id_channels: int, skip_channels: list[int], feat_dim: int = 128, gen_width: int = 32,
                 fmap_size: int = 8, conceal_box: tuple[float, float, float, float] | None = None,
                 context: int = 0) -> None:
        super().__init__()
        g = gen_width
        self.fmap_size, self.conceal_box, self.context = fmap_size, conceal_box, context
        self.word_context = nn.Conv1d(feat_dim, feat_dim, 2 * context + 1) if context else None
        if self.word_context is not None:  # the identity at the start: each frame's own word, as with no context
            nn.init.zeros_(self.word_context.weight)
            nn.init.zeros_(self.word_context.bias)
            with torch.no_grad():
                self.word_context.weight[:, :, context].copy_(torch.eye(feat_dim))
        self.word_proj = nn.Linear(feat_dim, 2 * g * fmap_size * fmap_size)
        self.fuse = nn.Sequential(ConvBlock(id_channels + 2 * g, 4 * g), ConvBlock(4 * g, 4 * g))
        ups, ch = [], 4 * g
        for k, skip in enumerate(reversed(skip_channels)):  # coarse to fine; the last skip is the image
            out = g if k == len(skip_channels) - 1 else 2 * g
            ups.append(nn.ModuleList([UpBlock(ch, out), ConvBlock(out + skip, out)]))
            ch = out
        self.ups = nn.ModuleList(ups)
        self.film = nn.ModuleList([nn.Linear(feat_dim, 2 * c) for c in [4 * g] + [u[1][0].out_channels for u in ups]])
        for f in self.film:  # identity modulation at the start: G begins exactly as the copy baseline
            nn.init.zeros_(f.weight)
            nn.init.zeros_(f.bias)
        self.to_rgb = nn.Conv2d(ch, 4, 3, 1, 1)  # change (3) and the attention logit (1)
        nn.init.zeros_(self.to_rgb.weight)
        nn.init.zeros_(self.to_rgb.bias)

    def contextualise(self, words: torch.Tensor) -> torch.Tensor:
        """words (B, T, D), a whole sequence -> (B, T, D): what G reads for each frame, from the frame's word
        feature and those ``context`` either side (the first and last frames repeated past the ends)."""
        if self.word_context is None:
            return words
        return self.read_context(pad_edges(words, self.context))  # (B, T + 2c, D) -> (B, T, D)

    def read_context(self, words: torch.Tensor) -> torch.Tensor:
        """words (B, T + 2 context, D) -> (B, T, D): each of the middle T frames read with its neighbours."""
        return self.word_context(words.transpose(1, 2)).transpose(1, 2)  # (B, D, T) -> (B, T, D)

    def _film(self, k: int, x: torch.Tensor, word: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film[k](word)[:, :, None, None].chunk(2, 1)  # (N, C, 1, 1) each
        return x * (1 + gamma) + beta

    def forward(self, fmap: torch.Tensor, skips: list[torch.Tensor], word: torch.Tensor,
                return_mask: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """fmap (N, C, 8, 8), skips finest first (skips[0] = the reference image), word (N, D)
        -> image (N, 3, H, W) in [-1, 1] (and the attention mask (N, 1, H, W), 1 = copied)."""
        w = self.word_proj(word).view(len(word), -1, self.fmap_size, self.fmap_size)  # (N, 2g, 8, 8)
        x = self._film(0, self.fuse(torch.cat([fmap, w], 1)), word)  # (N, 4g, 8, 8)
        for k, ((up, conv), skip) in enumerate(zip(self.ups, reversed(skips))):
            x = self._film(k + 1, conv(torch.cat([up(x), skip], 1)), word)  # (N, 2g or g, 2s, 2s)
        out = self.to_rgb(x)  # (N, 4, H, W)
        delta, mask = out[:, :3], torch.sigmoid(out[:, 3:])  # (N, 3, H, W), (N, 1, H, W)
        image = (skips[0] + (1 - mask) * delta).clamp(-1, 1)  # (N, 3, H, W): the reference where the mask is 1
        return (image, mask) if return_mask else image


def contextualise_stream(g: nn.Module, chunks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    """A word sequence given in chunks (n_i, D) -> the same rows of ``g.contextualise`` of the whole sequence,
    chunk by chunk, holding at most a chunk and ``2 * g.context`` frames (a stream of any length)."""
    if not g.context:
        return (chunk for chunk in chunks if len(chunk))
    return stream_context(chunks, g.context, lambda rows: g.read_context(rows[None])[0])  # (n + 2c, D) -> (n, D)


def conceal_mouth(ref: torch.Tensor, box: tuple[float, float, float, float], pool: int | None = None) -> torch.Tensor:
    """ref (N, 3, H, W) -> the same with the ellipse in the relative box replaced (edge feathered) by the image
    averaged over ``pool`` x ``pool`` cells (default H // 8: 8 px at 64 px, the same share of the face at any
    size): the colours stay (skin, lips), the mouth's shape and state go."""
    h, w = ref.shape[-2:]
    pool = pool or max(1, h // 8)
    y0, x0, y1, x1 = box
    yy = (torch.arange(h, device=ref.device, dtype=ref.dtype)[:, None] + 0.5) / h
    xx = (torch.arange(w, device=ref.device, dtype=ref.dtype)[None, :] + 0.5) / w
    r = (((yy - (y0 + y1) / 2) / ((y1 - y0) / 2)) ** 2 + ((xx - (x0 + x1) / 2) / ((x1 - x0) / 2)) ** 2).sqrt()
    m = ((1.1 - r) / 0.2).clamp(0, 1)  # (H, W): 1 inside 0.9 of the ellipse, 0 past 1.1
    coarse = F.interpolate(F.avg_pool2d(ref, pool, ceil_mode=True), size=(h, w), mode="bilinear", align_corners=False)
    return torch.lerp(ref, coarse, m)  # (N, 3, H, W)


def generate_frames(ep: nn.Module, g: Generator, ref: torch.Tensor, words: torch.Tensor,
                    return_mask: bool = False, contextualised: bool = False
                    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """ref (B, 3, H, W) reference faces, words (B, W, D) word features -> (B, W, 3, H, W) frames
    (and G's attention masks (B, W, 1, H, W), 1 = copied from the reference). Ep encodes each reference once.
    ``words`` are whole sequences, which G contextualises (:meth:`Generator.contextualise`), or, with
    ``contextualised``, rows of a sequence it already has (a window of it, a chunk of a stream)."""
    if not contextualised:
        words = g.contextualise(words)  # (B, W, D)
    b, w = words.shape[:2]
    if getattr(g, "conceal_box", None) is not None:
        ref = conceal_mouth(ref, g.conceal_box)  # (B, 3, H, W): G sees no mouth to copy
    idf = ep(ref)
    rep = lambda x: x.repeat_interleave(w, 0)  # noqa: E731 - (B, ...) -> (B*W, ...)
    out, mask = g(rep(idf.fmap), [rep(s) for s in idf.skips], words.flatten(0, 1), return_mask=True)  # (B*W, 3|1, H, W)
    out = out.view(b, w, *out.shape[1:])  # (B, W, 3, H, W)
    return (out, mask.view(b, w, *mask.shape[1:])) if return_mask else out
