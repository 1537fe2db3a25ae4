"""experiments/identity_motion.py's removals on synthetic features: each removal makes the group means it targets
equal, and the motion-whitened one keeps more of the within-clip motion than the plain projection."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from davs.tensors import masked_mean

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "identity_motion.py"


def study():
    spec = importlib.util.spec_from_file_location("identity_motion", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def synthetic(speakers: int = 5, clips: int = 40, frames: int = 6, dim: int = 16, seed: int = 0):
    """Pooled word features = speaker offset (in 4 directions) + noise, with frame motion along the first one;
    identity vectors = a speaker code + noise."""
    g = torch.Generator().manual_seed(seed)
    spk = torch.arange(speakers).repeat_interleave(clips // speakers)  # (N,)
    offsets = torch.zeros(speakers, dim)
    offsets[:, :4] = 3 * torch.randn(speakers, 4, generator=g)  # (S, D)
    motion = torch.zeros(len(spk), frames, dim)
    motion[..., 0] = torch.randn(len(spk), frames, generator=g)  # (N, T, D)
    x = offsets[spk][:, None] + motion + 0.1 * torch.randn(len(spk), frames, dim, generator=g)  # (N, T, D)
    ids = torch.eye(speakers)[spk] @ torch.randn(speakers, 8, generator=g) + 0.05 * torch.randn(len(spk), 8, generator=g)
    return x, torch.ones(len(spk), frames), ids, spk


def group_spread(mod, pooled: torch.Tensor, removal: tuple, spk: torch.Tensor) -> float:
    kept = mod.apply(removal, pooled)  # (N, D)
    means = torch.stack([kept[spk == s].mean(0) for s in spk.unique()])  # (S, D)
    return float((means - means.mean(0)).norm(dim=1).max())


def test_removals_equalise_the_speakers_means():
    mod = study()
    x, mask, ids, spk = synthetic()
    pooled = masked_mean(x, mask)
    raw = group_spread(mod, pooled, (pooled.mean(0), torch.zeros(16, 1), torch.zeros(16, 1)), spk)
    fits = mod.removals(x, mask, ids, 4, 0.02, spk)
    assert {"plain", "motion", "speakers", "plain_pcs10"} <= set(fits)
    for name in ("plain", "motion", "speakers"):
        assert group_spread(mod, pooled, fits[name], spk) < 0.05 * raw, name


def test_the_motion_whitened_removal_keeps_more_motion():
    mod = study()
    x, mask, ids, spk = synthetic()
    fits = mod.removals(x, mask, ids, 4, 0.02, spk)

    def motion_left(removal: tuple) -> float:
        kept = mod.apply(removal, x)  # (N, T, D)
        return float((kept - kept.mean(1, keepdim=True)).pow(2).sum())

    assert motion_left(fits["motion"]) > 2 * motion_left(fits["plain"])


def test_openness_read_finds_features_that_run_ahead_of_the_mouth():
    """Features that carry frame i's openness at frame i + 2 read it best two frames ahead, and a reader of the
    neighbours (context 2) reads it as well as that; a reader of the frame alone does worse."""
    mod = study()
    g = torch.Generator().manual_seed(0)
    f, kept = {}, {}
    for split in ("val", "test"):
        n, t, d = 60, 12, 6
        opn = torch.rand(n, t, generator=g)  # (N, T)
        x = 0.05 * torch.randn(n, t, d, generator=g)
        x[:, 2:, 0] += opn[:, :-2]  # frame j's feature says frame j - 2's openness
        mask = torch.zeros(n, t)
        mask[:, 2:8] = 1
        f[split], kept[split] = {"mask": mask, "open": opn}, x
    own = mod.openness_r2(f, kept["val"], kept["test"])
    ahead = mod.openness_r2(f, kept["val"], kept["test"], lead=2)
    around = mod.openness_r2(f, kept["val"], kept["test"], context=2)
    assert ahead > 0.95 and around > 0.9 and own < 0.2
    assert max(range(-1, 4), key=lambda k: mod.openness_r2(f, kept["val"], kept["test"], lead=k)) == 2
