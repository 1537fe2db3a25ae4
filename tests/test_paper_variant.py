"""The paper variant (``model.variant: paper``): the official DAVS's networks at the official shapes, its loss
forms, and the three stages training, saving and loading with it (end to end in gen, as the official code)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from davs.checkpoint import load_model
from davs.data.spec import model_config_for
from davs.losses import gan_d_loss, paper_contrastive_loss, smoothness_l1, uniform_mse_loss
from davs.models import (
    DAVSConfig,
    FanVideoWordEncoder,
    PaperGenerator,
    PaperIdentityEncoder,
    PaperTemporalDiscriminator,
    WordFromIdentityMaps,
    build,
    generate_frames,
    load_nets,
)
from davs.training.runners import run_disent, run_gen, run_joint
from davs.training.tasks import GenTask

from . import configs
from .conftest import CPU, SIZES
from .conftest import tiny_data as _data


def test_paper_networks_have_the_official_shapes_at_256():
    """Official ``IdentityEncoder``: maps of 64, 160, 320 and 256 channels at 64, 32, 16 and 8; ``Decoder``: a 256
    face from [id 256, word 256]; ``ID_dis32``: 20 frames of the 64x64 map; ``netD_mul``: a 30x30 patch map;
    ``FanFusion``: 256 per frame."""
    cfg = DAVSConfig.davs_size(num_words=500, num_ids=10, variant="paper")
    nets = build(cfg, ("Ep", "G", "Cw_p", "D_temporal", "Ev_w"))
    assert isinstance(nets["Ep"], PaperIdentityEncoder) and isinstance(nets["G"], PaperGenerator)
    assert isinstance(nets["Cw_p"], WordFromIdentityMaps) and isinstance(nets["Ev_w"], FanVideoWordEncoder)
    assert isinstance(nets["D_temporal"], PaperTemporalDiscriminator)
    for m in nets.values():
        m.eval()
    with torch.no_grad():
        face = torch.rand(1, 3, 256, 256) * 2 - 1
        idf = nets["Ep"](face)
        assert idf.vector.shape == (1, 256) and idf.fmap.shape == (1, 256, 8, 8)
        assert [tuple(s.shape[1:]) for s in idf.skips] == [(64, 64, 64), (160, 32, 32), (320, 16, 16)]
        assert torch.allclose(idf.vector, idf.fmap.mean(dim=(2, 3)))  # official: the vector is the 8x8 average
        out, mask = generate_frames(nets["Ep"], nets["G"], face, torch.randn(1, 2, 256), return_mask=True)
        assert out.shape == (1, 2, 3, 256, 256) and out.abs().max() <= 1 and (mask == 0).all()  # nothing copied
        maps = torch.randn(1, 20, 64, 64, 64)
        assert nets["Cw_p"](maps).shape == (1, 500)
        assert nets["Cw_p"].fc.in_features == 32 * 32  # official: conv to one 32x32 map, 1024 -> 128
        with pytest.raises(ValueError, match="20 frames"):
            nets["Cw_p"](maps[:, :12])
        patches, mouth = nets["D_temporal"](torch.randn(1, 6, 3, 256, 256), torch.randn(1, 6, 20, 12), with_mouth=True)
        assert patches.shape == (1, 1, 30, 30) and mouth.shape == (1,)
        assert nets["Ev_w"](torch.randn(1, 2, 3, 256, 256)).shape == (1, 2, 256)
    assert (cfg.window, cfg.dis_frames, cfg.mfcc_recipe, cfg.width, cfg.gen_width) == (6, 20, "syncnet", 32, 64)


def test_paper_generator_sizes_and_skip_position():
    """Smaller faces keep the official decoder's last blocks; the skip always enters at 1/8 of the face."""
    for size in (32, 64, 128):
        g = PaperGenerator(size, feat_dim=16, gen_width=4, skip_channels=10)
        assert len(g.blocks) == round(math.log2(size / 4))
        ep_maps = [torch.randn(2, 10, size // 8, size // 8)]
        assert g(torch.randn(2, 16, 1, 1), ep_maps, torch.randn(2, 16)).shape == (2, 3, size, size)
    with pytest.raises(ValueError, match="image_size 48"):
        PaperGenerator(48)
    with pytest.raises(ValueError, match="multiple of 32"):
        PaperIdentityEncoder(48)
    with pytest.raises(ValueError, match="variant"):
        configs.model(variant="official", num_words=3, num_ids=3)


def test_paper_contrastive_loss():
    """Official ``L2ContrastiveLoss`` on concatenated, normalised clips: true pairs pulled, every other pair pushed
    to the margin; only the audio side gets gradients."""
    e = torch.eye(4)[:, None, :].expand(4, 3, 4)  # (B=4, T=3, D=4): four orthogonal clips
    assert paper_contrastive_loss(e, e).item() == pytest.approx(0, abs=1e-6)  # negatives at sqrt(2) > margin 1
    same = torch.ones(3, 2, 4)  # every clip identical: each of the 6 off-diagonal pairs costs margin^2 = 1
    assert paper_contrastive_loss(same, same).item() == pytest.approx(6 / (2 * 3))
    v, a = torch.randn(3, 2, 4, requires_grad=True), torch.randn(3, 2, 4, requires_grad=True)
    paper_contrastive_loss(v, a).backward()
    assert v.grad is None and a.grad is not None and a.grad.abs().sum() > 0


def test_paper_uniform_and_soft_label_forms():
    logits = torch.tensor([[4.0, 0.0, 0.0, 0.0]])
    p = logits.softmax(-1)
    assert uniform_mse_loss(logits, "paper").item() == pytest.approx(((p - 0.25) ** 2).mean().item())
    assert uniform_mse_loss(logits, "davs").item() == pytest.approx(((p - 0.25) ** 2).sum().item() * 4)
    assert uniform_mse_loss(torch.zeros(2, 7), "paper").item() == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="uniform form"):
        uniform_mse_loss(logits, "sum")
    big = torch.full((8,), 30.0)
    assert gan_d_loss(big, -big).item() == pytest.approx(0, abs=1e-6)  # hard labels: a perfect D costs nothing
    torch.manual_seed(0)
    soft = [gan_d_loss(big, -big, soft=0.1).item() for _ in range(20)]  # targets 1 - u and u: a perfect D pays 30 u
    assert all(0 <= s <= 0.1 * 30 + 1e-4 for s in soft) and max(soft) > 0.5 and len(set(soft)) > 1


def test_smoothness_term_ignores_the_mouth():
    box = (0.5, 0.25, 1.0, 0.75)
    ref = torch.zeros(1, 3, 8, 8)
    frames = torch.zeros(1, 3, 3, 8, 8)
    frames[:, 1, :, 4:, 2:6] = 1.0  # only the mouth moves
    assert smoothness_l1(frames, ref, box).item() == 0
    frames[:, 2, :, 0, 0] = 1.0  # a pixel of the upper face flickers on the last frame
    assert smoothness_l1(frames, ref, box).item() == pytest.approx(3 / (3 * 64))
    moving = frames.clone().requires_grad_(True)
    smoothness_l1(moving, ref, box).backward()
    assert moving.grad[0, 2, 0, 0, 0] > 0 and moving.grad[0, 1, 0, 0, 0] == 0  # the previous frame is detached


@pytest.fixture(scope="module")
def paper_models(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    data = _data(shards)
    cfg = model_config_for(data, **{**SIZES, "window": 4, "variant": "paper", "dis_frames": 8, "gen_conceal": False,
                                         "gen_context": 0})
    loop = configs.loop(steps=3, log_every=3, val_every=3, ckpt_every=3, optimizer="adam", weight_decay=0.0)
    pj = configs.joint(domain_loss="flip", domain_weight=5.0, contrastive_form="paper")
    pd = configs.disent(uniform_form="paper", uniform_weight=1e3, joint=pj)
    m1 = run_joint(data, cfg, loop, pj, out / "joint.pt", CPU)
    m2 = run_disent(data, cfg, loop, pd, out / "joint.pt", out / "disent.pt", CPU)
    gw = configs.gen(smooth_weight=2.5, soft_labels=0.1, sync_gan_weight=1.0, gan_weight=1.0, train_encoders=True,
                     disent=replace(pd, joint=replace(pj, frame_sync_weight=0.0)))
    logged: dict[str, float] = {}
    m3 = run_gen(data, cfg, loop, gw, out / "disent.pt", out / "gen.pt", CPU, lambda s, m: logged.update(m))
    return out, cfg, (m1, m2, m3, logged)


def test_paper_variant_trains_saves_and_loads(paper_models):
    out, cfg, metrics = paper_models
    assert all(math.isfinite(v) for m in metrics for v in m.values())
    assert {"train/loss/smooth", "train/loss/uniform_word_from_id", "train/loss/domain_disc", "train/loss/word_audio",
            "train/loss/sync_gan", "train/loss/dis_word_from_id"} <= set(metrics[3])
    assert "val/acc/dis_word_from_id" in metrics[1] and "val/l1_audio" in metrics[2]
    gen = load_model(out / "gen.pt")  # weights_only
    assert gen["model_config"]["variant"] == "paper"
    assert {"Ev_w", "Ea_w", "Ep", "Cw", "G", "D_temporal", "D_domain", "Cw_p"} <= set(gen["nets"])
    nets = load_nets(gen, ("Ep", "G", "Ev_w", "Cw_p"))
    assert isinstance(nets["Ep"], PaperIdentityEncoder) and isinstance(nets["G"], PaperGenerator)
    with torch.no_grad():
        ref = torch.rand(2, 3, cfg.image_size, cfg.image_size) * 2 - 1
        assert generate_frames(nets["Ep"], nets["G"], ref, torch.randn(2, 3, cfg.feat_dim)).shape[:2] == (2, 3)


def test_end_to_end_gen_moves_the_encoders_and_frozen_gen_does_not(paper_models, shards, tmp_path):
    """End to end (official): gen's encoders leave disent's weights; frozen (ours): they are disent's exactly."""
    out, cfg, _ = paper_models
    disent, e2e = load_model(out / "disent.pt")["nets"], load_model(out / "gen.pt")["nets"]
    assert any(not torch.equal(disent["Ep"][k], e2e["Ep"][k]) for k in disent["Ep"] if k.endswith("weight"))
    assert any(not torch.equal(disent["Cw"][k], e2e["Cw"][k]) for k in disent["Cw"])
    loop = configs.loop(steps=2, log_every=2, val_every=2, ckpt_every=2, optimizer="adam")
    run_gen(_data(shards), cfg, loop, configs.gen(smooth_weight=1.0), out / "disent.pt", tmp_path / "gen.pt", CPU)
    frozen = load_model(tmp_path / "gen.pt")["nets"]
    assert all(torch.equal(disent[p][k], frozen[p][k]) for p in GenTask.FROZEN for k in disent[p])
    assert "Cw" not in frozen


def test_paper_variant_checks_its_params(tmp_path):
    import yaml

    from pipeline.params import ParamsError, validate

    from .conftest import ROOT

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["model"]["variant"] = "paper"
    raw["model"]["gen_conceal"] = False
    raw["model"]["gen_context"] = 0
    validate(raw)  # the embedded corpus's 64 px faces and 25 frames suit it
    raw["model"]["dis_frames"] = 30
    raw["data"]["image_size"] = 96
    raw["model"]["gen_conceal"] = True  # the paper's G has no concealed reference
    raw["model"]["gen_context"] = 2  # ... and reads each frame's word alone
    with pytest.raises(ParamsError, match=r"model\.dis_frames.*\n.*data\.image_size.*\n.*model\.gen_conceal.*\n.*"
                                          r"model\.gen_context"):
        validate(raw)
    raw["model"]["variant"] = "official"
    with pytest.raises(ParamsError, match=r"model\.variant"):
        validate(raw)


def test_davs_variant_is_unchanged_by_the_paper_options():
    """The default build is ours: no paper class appears, and the paper-only option (``dis_frames``, the frames
    the paper's Cw_p reads) changes no network of ours: the same seed builds the same weights either way."""
    cfg = configs.model(image_size=32, feat_dim=16, width=4, gen_width=4, disc_width=4, num_words=3, num_ids=3)
    torch.manual_seed(0)
    nets = build(cfg)
    assert not any(type(m).__module__.startswith("davs.models.paper_") for m in nets.values())
    torch.manual_seed(0)
    other = build(replace(cfg, dis_frames=7))
    for name, net in nets.items():
        a, b = net.state_dict(), other[name].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    torch.manual_seed(0)
    paper = build(replace(cfg, variant="paper", gen_conceal=False, gen_context=0))  # the switch itself does change them
    assert type(paper["Ev_w"]).__module__ == "davs.models.paper_video_word_encoder"


def test_paper_variant_talks_through_davs_generate_code(paper_models):
    """The inference path (`davs generate`'s Talker) runs a paper-variant model file: audio and video words,
    animation, and the official test-time fine-tune (which restores the weights after)."""
    from davs.inference import Talker
    from davs.inference.talk import TalkOptions

    out, cfg, _ = paper_models
    model = load_model(out / "gen.pt")
    t = Talker.from_model(model, CPU, batch_size=4, use_landmarks=False, options=TalkOptions(finetune_steps=2))
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 255, (cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    words = t.audio_words(rng.normal(0, 0.1, 16000).astype(np.float32), 10)
    assert words.shape == (10, cfg.feat_dim)
    assert t.video_words(np.stack([crop] * 3)).shape == (3, cfg.feat_dim)
    before = {k: v.clone() for k, v in t.nets["G"].state_dict().items()}
    with t.adapted(crop, words[0]):
        frames = t.animate(crop, words)
    assert frames.shape == (10, cfg.image_size, cfg.image_size, 3) and frames.dtype == np.uint8
    assert all(torch.equal(before[k], v) for k, v in t.nets["G"].state_dict().items())
