"""The official DAVS's inference options: test-time fine-tuning of Ep + G on the reference, word scaling."""

import numpy as np
import pytest
import torch

from davs.inference.finetune import finetune, loss_weights, restore, snapshot
from davs.models import build, generate_frames

from . import configs


def _nets(seed: int = 0):
    """Ep and G, G perturbed: at initialisation it copies the reference exactly (nothing to fine-tune)."""
    torch.manual_seed(seed)
    cfg = configs.model(num_words=3, num_ids=4, image_size=32, feat_dim=32, width=8, gen_width=8, disc_width=8, window=3)
    nets = build(cfg, ("Ep", "G"))
    with torch.no_grad():
        for p in nets["G"].parameters():
            p.add_(0.1 * torch.randn_like(p))
    return cfg, nets["Ep"].eval(), nets["G"].eval()


def test_loss_weights_down_weight_the_mouth_box_only():
    w = loss_weights(32, (0.5, 0.25, 0.75, 0.75), 1e-3, torch.device("cpu"))[0, 0]
    assert w.shape == (32, 32)
    assert torch.all(w[16:24, 8:24] == 1e-3)
    assert (w == 1e-3).sum() == 8 * 16 and torch.all(w[:16] == 1) and torch.all(w[24:] == 1)


def test_finetune_lowers_the_loss_outside_the_mouth_and_restore_undoes_it():
    cfg, ep, g = _nets()
    ref = torch.rand(1, 3, 32, 32) * 2 - 1
    word = torch.randn(1, cfg.feat_dim)
    saved = snapshot(ep, g)
    before = generate_frames(ep, g, ref, word[:, None]).detach()
    losses = finetune(ep, g, ref, word, cfg.mouth_box, steps=8, lr=1e-3)
    assert len(losses) == 8 and losses[-1] < losses[0], losses
    after = generate_frames(ep, g, ref, word[:, None]).detach()
    assert not torch.equal(before, after)
    assert all(p.grad is None for n in (ep, g) for p in n.parameters())
    restore((ep, g), saved)
    assert torch.equal(generate_frames(ep, g, ref, word[:, None]).detach(), before)


def test_zero_steps_change_nothing_and_negative_steps_are_refused():
    cfg, ep, g = _nets()
    saved = snapshot(ep, g)
    assert finetune(ep, g, torch.zeros(1, 3, 32, 32), torch.zeros(1, cfg.feat_dim), cfg.mouth_box, steps=0) == []
    assert all(torch.equal(v, saved[0][k]) for k, v in ep.state_dict().items())
    with pytest.raises(ValueError, match="steps"):
        finetune(ep, g, torch.zeros(1, 3, 32, 32), torch.zeros(1, cfg.feat_dim), cfg.mouth_box, steps=-1)


def test_talker_options_change_the_frames_and_leave_the_weights(tiny_models, tmp_path):
    """Word scaling multiplies the word features G sees; fine-tuning changes the frames of that request
    only: the trained weights are back afterwards, so the next request is as without it."""
    from PIL import Image

    from davs.inference import Talker, TalkOptions
    from davs.media import write_mp4
    from davs.synth.face import FaceRenderer, Identity, Scene

    ckpt = tiny_models[0] / "gen.pt"
    face = tmp_path / "face.png"
    Image.fromarray(FaceRenderer(Identity.make(0, 0), Scene()).frame((0.0, 0.5, 0.0), 0.0)).save(face)
    t = np.arange(16000) / 16000
    write_mp4(tmp_path / "a.mp4", np.zeros((25, 16, 16, 3), np.uint8),
              audio=(0.3 * np.sin(2 * np.pi * 180 * t) * (t > 0.4)).astype(np.float32))

    def frames(talker, name):
        talker.generate(face, tmp_path / name, audio_path=tmp_path / "a.mp4")
        from davs.media import iter_video

        return np.stack(list(iter_video(tmp_path / name))).astype(float)

    plain = Talker(ckpt, "cpu")
    base = frames(plain, "base.mp4")
    scaled = Talker(ckpt, "cpu", options=TalkOptions(word_scale=3.0))
    words = torch.randn(4, scaled.cfg.feat_dim)
    crop = np.zeros((1, scaled.cfg.image_size, scaled.cfg.image_size, 3), np.uint8)
    assert np.array_equal(scaled.animate(crop[0], words), plain.animate(crop[0], words * 3.0))
    assert np.abs(frames(scaled, "scaled.mp4") - base).max() > 2

    tuned = Talker(ckpt, "cpu", options=TalkOptions(finetune_steps=3, finetune_lr=1e-2))
    sd = {k: v.clone() for k, v in tuned.nets["G"].state_dict().items()}
    assert np.abs(frames(tuned, "tuned.mp4") - base).max() > 2
    assert all(torch.equal(v, sd[k]) for k, v in tuned.nets["G"].state_dict().items())
    tuned.options = TalkOptions()
    assert np.array_equal(frames(tuned, "again.mp4"), base)


@pytest.mark.parametrize("kw", [{"finetune_steps": -1}, {"finetune_steps": 2.5}, {"word_scale": float("inf")},
                                {"finetune_lr": 0.0 - 1}])
def test_bad_options_are_refused_by_name(kw):
    from davs.inference import GenerateError, TalkOptions

    with pytest.raises(GenerateError, match=next(iter(kw)).replace("_", "-")):
        TalkOptions(**kw).check()
