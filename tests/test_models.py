"""Every DAVS component: shapes at the CPU default and at the paper's size, and gradient flow."""

from dataclasses import replace

import pytest
import torch

from davs.losses import contrastive_loss, domain_confusion_loss, frame_sync_loss, masked_l1, uniform_mse_loss
from davs.models import DAVSConfig, build

from . import configs

SMALL = configs.model(image_size=32, feat_dim=32, width=8, gen_width=8, disc_width=8, num_words=7, num_ids=5,
                   window=3)


def _inputs(cfg: DAVSConfig, b: int = 2, t: int = 6):
    s = cfg.image_size
    return torch.randn(b, t, 3, s, s), torch.randn(b, t, cfg.mfcc_frames, cfg.mfcc_coeffs)


@pytest.mark.parametrize("cfg", [SMALL, configs.model(num_words=20, num_ids=40)], ids=["tiny", "default"])
def test_component_shapes(cfg):
    m = build(cfg)
    # a component added to build() must be added here (and to the gradient test below)
    assert set(m) == {"Ev_w", "Ea_w", "Ep", "Cw", "Cp", "D_domain", "Cw_p", "Cp_w", "G", "D_temporal"}
    frames, mfcc = _inputs(cfg)
    b, t = frames.shape[:2]
    v, a = m["Ev_w"](frames), m["Ea_w"](mfcc)
    assert v.shape == a.shape == (b, t, cfg.feat_dim)
    assert m["Ev_w"](frames[:, :1]).shape == (b, 1, cfg.feat_dim)  # a still face
    idf = m["Ep"](frames[:, 0])
    assert idf.vector.shape == (b, cfg.feat_dim) and idf.fmap.shape[-1] == 8
    assert m["Ep"].sequence(frames).shape == (b, t, cfg.feat_dim)
    assert m["Cw"](v).shape == m["Cw"](a, torch.ones(b, t, dtype=torch.bool)).shape == (b, cfg.num_words)
    assert m["Cp"](idf.vector).shape == (b, cfg.num_ids)
    assert m["D_domain"](v).shape == (b, t)
    assert m["Cw_p"](m["Ep"].sequence(frames)).shape == (b, cfg.num_words)
    assert m["Cp_w"](v[:, 0]).shape == (b, cfg.num_ids)
    img = m["G"](idf.fmap, idf.skips, a[:, 0])
    assert img.shape == (b, 3, cfg.image_size, cfg.image_size) and img.abs().max() <= 1
    clip = frames[:, : cfg.window]
    assert m["D_temporal"](clip, a[:, : cfg.window]).shape == (b,)
    whole, mouth = m["D_temporal"](clip, a[:, : cfg.window], with_mouth=True)
    assert whole.shape == mouth.shape == (b,)


def test_generator_starts_as_copy_and_its_mask_copies_exactly():
    torch.manual_seed(0)
    m = build(SMALL, ("Ep", "G"))
    ref = torch.rand(3, 3, 32, 32) * 2 - 1
    idf = m["Ep"](ref)
    word = torch.randn(3, SMALL.feat_dim)
    out, mask = m["G"](idf.fmap, idf.skips, word, return_mask=True)
    assert torch.equal(out, ref) and mask.shape == (3, 1, 32, 32)  # zero change at initialisation
    with torch.no_grad():  # a large change, but a saturated mask: still the reference, exactly
        m["G"].to_rgb.bias.copy_(torch.tensor([0.7, -0.7, 0.5, 40.0]))
    out = m["G"](idf.fmap, idf.skips, word)
    torch.testing.assert_close(out, ref)
    with torch.no_grad():  # an open mask lets the change through
        m["G"].to_rgb.bias[3] = -40.0
    assert (m["G"](idf.fmap, idf.skips, word) - ref).abs().mean() > 0.3
    # the word reaches the image through a per-cell spatial projection
    assert m["G"].word_proj.out_features == 2 * SMALL.gen_width * m["Ep"].fmap_size**2


def test_concealed_reference_hides_the_mouth_and_keeps_everything_else():
    """With ``gen_conceal`` G reads the reference's mouth box only through 8x8-cell means: two references
    that differ inside the box's core by pixels with equal cell means give the same frames, while the same
    change outside the box changes them; pixels outside the box pass through conceal_mouth untouched."""
    from davs.models import generate_frames
    from davs.models.generator import conceal_mouth

    cfg = replace(SMALL, image_size=64, gen_conceal=True)
    torch.manual_seed(0)
    m = build(cfg, ("Ep", "G"))
    assert m["G"].conceal_box == cfg.mouth_box
    assert build(replace(cfg, gen_conceal=False), ("G",))["G"].conceal_box is None
    with torch.no_grad():  # a G that changes its input: an open mask and a non-zero change
        m["G"].to_rgb.weight.normal_(0, 0.1)
    ref = torch.rand(1, 3, 64, 64) * 2 - 1
    core = torch.zeros(64, 64, dtype=torch.bool)
    core[48:56, 24:40] = True  # whole 8x8 cells inside the box (rows 0.62-0.95, cols 0.25-0.75 of 64)
    zero_mean = torch.randn(1, 3, 8, 8).repeat(1, 1, 1, 2)
    zero_mean = zero_mean - zero_mean.mean((2, 3), keepdim=True)[..., :1, :1]  # (1, 3, 8, 16), cell means 0
    zero_mean[..., 8:] = -zero_mean[..., :8]  # each 8x8 cell sums to zero
    inside = ref.clone()
    inside[..., 48:56, 24:40] += 0.3 * zero_mean
    words = torch.randn(1, 4, cfg.feat_dim)
    with torch.no_grad():
        base, same = generate_frames(m["Ep"], m["G"], ref, words), generate_frames(m["Ep"], m["G"], inside, words)
        outside = ref.clone()
        outside[..., 8:16, 24:40] += 0.3 * zero_mean  # the same change on the forehead
        moved = generate_frames(m["Ep"], m["G"], outside, words)
    torch.testing.assert_close(same, base, atol=1e-5, rtol=0)
    assert (moved - base).abs().max() > 0.01
    hidden = conceal_mouth(ref, cfg.mouth_box)
    rows = torch.zeros(64, dtype=torch.bool)
    rows[: int(0.62 * 64) - 4] = True  # well above the box
    assert torch.equal(hidden[..., rows, :], ref[..., rows, :])
    assert not torch.equal(hidden[..., core], ref[..., core])


def test_g_with_word_context_starts_as_g_without_and_streams_as_the_whole_sequence():
    """G's temporal read of the words starts as the identity (so G starts as a per-frame G), reads the
    neighbours once trained, and a stream of chunks of any size gives the rows of the whole sequence's read."""
    from davs.models import generate_frames
    from davs.models.generator import contextualise_stream

    torch.manual_seed(0)
    ctx = build(replace(SMALL, gen_context=2), ("Ep", "G"))
    assert ctx["G"].context == 2 and build(replace(SMALL, gen_context=0), ("G",))["G"].word_context is None
    torch.manual_seed(0)
    flat = build(replace(SMALL, gen_context=0), ("Ep", "G"))
    flat["G"].load_state_dict({k: v for k, v in ctx["G"].state_dict().items() if not k.startswith("word_context")})
    with torch.no_grad():
        for m in (ctx, flat):
            m["G"].to_rgb.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    ref, words = torch.rand(2, 3, 32, 32) * 2 - 1, torch.randn(2, 7, SMALL.feat_dim)
    with torch.no_grad():
        torch.testing.assert_close(generate_frames(ctx["Ep"], ctx["G"], ref, words),
                                   generate_frames(flat["Ep"], flat["G"], ref, words), atol=1e-6, rtol=0)
        ctx["G"].word_context.weight.normal_(0, 0.1)  # trained: the neighbours count
        whole = ctx["G"].contextualise(words)  # (2, 7, D)
        moved = words.clone()
        moved[:, 5] += 1.0
        changed = (ctx["G"].contextualise(moved) - whole).abs().amax(-1)[0]  # (7,)
        assert (changed[3:] > 0).all() and (changed[:3] == 0).all()  # frame 5 reaches frames 3 .. 6 only
        for sizes in ([7], [1] * 7, [3, 4], [2, 0, 1, 4], [5, 2]):
            chunks = list(words[0].split(sizes))
            got = torch.cat(list(contextualise_stream(ctx["G"], chunks)))
            torch.testing.assert_close(got, whole[0], atol=1e-5, rtol=0)
        assert len(list(contextualise_stream(ctx["G"], []))) == 0
        one = torch.cat(list(contextualise_stream(ctx["G"], [words[0, :1]])))  # a single frame: its steady state
        torch.testing.assert_close(one, ctx["G"].contextualise(words[:1, :1])[0], atol=1e-5, rtol=0)


def test_conceal_cells_scale_with_the_face():
    """At 128 px the mouth is averaged over 16x16 cells (H // 8), the share of the face 8x8 cells are at 64 px:
    a change with zero mean over one 16x16 cell inside the box is hidden, which 8x8 cells would show."""
    from davs.models.generator import conceal_mouth

    torch.manual_seed(0)
    ref = torch.rand(1, 3, 128, 128) * 2 - 1
    z = torch.randn(1, 3, 16, 16)
    changed = ref.clone()
    changed[..., 96:112, 48:64] += 0.3 * (z - z.mean((2, 3), keepdim=True))  # one whole cell, inside the box's core
    box = (0.62, 0.25, 0.95, 0.75)
    torch.testing.assert_close(conceal_mouth(changed, box), conceal_mouth(ref, box), atol=1e-5, rtol=0)
    assert (conceal_mouth(changed, box, pool=8) - conceal_mouth(ref, box, pool=8)).abs().max() > 0.01


def test_a_model_file_from_before_a_config_field_existed_reads_as_it_was_trained(tmp_path):
    """A file written before ``gen_conceal`` existed was trained without it, whatever the default is now; one
    naming a retired field (``num_speakers``) reads without it."""
    from davs.checkpoint import CheckpointError, load_model, save_checkpoint

    cfg = replace(SMALL, gen_conceal=False, identity_rank=0, gen_context=0)
    old = {k: v for k, v in cfg.to_dict().items() if k not in DAVSConfig.LEGACY}  # written before those fields
    save_checkpoint(tmp_path / "old.pt", {"model_config": old, "stage": "gen", "nets": {}})
    assert load_model(tmp_path / "old.pt", cfg)["stage"] == "gen"
    assert DAVSConfig.from_dict(old) == cfg
    assert DAVSConfig.from_dict({**old, "num_speakers": 12}) == cfg
    with pytest.raises(CheckpointError, match="gen_conceal: checkpoint False vs configured True"):
        load_model(tmp_path / "old.pt", replace(cfg, gen_conceal=True))


def test_davs_size_preset_builds_the_paper_networks():
    cfg = DAVSConfig.davs_size()
    assert (cfg.image_size, cfg.feat_dim, cfg.num_words) == (256, 256, 500)
    m = build(cfg, ("Ep", "G", "Ev_w"))
    with torch.no_grad():
        idf = m["Ep"](torch.randn(1, 3, 256, 256))
        assert m["G"](idf.fmap, idf.skips, torch.randn(1, 256)).shape == (1, 3, 256, 256)
        assert m["Ev_w"](torch.randn(1, 2, 3, 256, 256)).shape == (1, 2, 256)


def test_config_round_trip():
    assert DAVSConfig.from_dict(SMALL.to_dict()) == SMALL


def test_every_parameter_gets_a_gradient():
    m = build(SMALL)
    frames, mfcc = _inputs(SMALL)
    v, a = m["Ev_w"](frames), m["Ea_w"](mfcc)
    idf = m["Ep"](frames[:, 0])
    loss = (m["Cw"](v).sum() + m["Cw"](a).sum() + m["Cp"](idf.vector).sum() + m["D_domain"](v).sum()
            + m["Cw_p"](m["Ep"].sequence(frames)).sum() + m["Cp_w"](v[:, 0]).sum()
            + m["G"](idf.fmap, idf.skips, m["G"].contextualise(a)[:, 0]).sum() + sum(m["D_temporal"](frames[:, :3], a[:, :3], True)).sum())
    loss.backward()
    for name, net in m.items():
        missing = [n for n, p in net.named_parameters() if p.grad is None]
        assert not missing, f"{name}: no gradient for {missing}"


def test_uniform_mse_is_zero_only_at_uniform():
    assert uniform_mse_loss(torch.zeros(4, 10)).item() == pytest.approx(0, abs=1e-7)
    peaked = torch.zeros(4, 10)
    peaked[:, 3] = 10
    assert uniform_mse_loss(peaked).item() > 0.5


def test_contrastive_loss_pulls_pairs_and_pushes_other_words():
    v = torch.eye(4)
    assert contrastive_loss(v, v.clone(), torch.arange(4)).item() == pytest.approx(0, abs=1e-6)  # orthogonal: dist sqrt2 > 1
    same = torch.ones(4, 4)
    assert contrastive_loss(same, same, torch.arange(4)).item() == pytest.approx(1.0)  # all negatives at distance 0
    assert contrastive_loss(same, same, torch.zeros(4, dtype=torch.long)).item() == pytest.approx(0, abs=1e-6)


def test_frame_sync_prefers_the_frame_of_the_same_time():
    torch.manual_seed(0)
    mask = torch.ones(3, 8, dtype=torch.bool)
    mask[:, 6:] = False  # frames outside the word are not used
    labels = torch.tensor([0, 1, 2])
    v = torch.randn(3, 8, 16)
    synced = frame_sync_loss(v, v.clone(), mask, labels).item()
    shifted = frame_sync_loss(v, v.roll(3, dims=1), mask, labels).item()  # audio three frames late
    assert synced < 0.1 < shifted
    # collapsed features score log(#candidates), the maximum, and still get a gradient apart
    flat = torch.ones(3, 8, 16, requires_grad=True)
    a = flat.detach() + 0.01 * torch.randn(3, 8, 16)
    loss = frame_sync_loss(flat, a, mask, labels)
    assert loss.item() > 2.5
    loss.backward()
    assert flat.grad.abs().sum() > 0
    # same word, other clip, same time: not a negative (it may well look the same)
    same_word = torch.zeros(3, dtype=torch.long)
    assert frame_sync_loss(v, v.roll(1, dims=0), mask, same_word).item() > frame_sync_loss(v, v.clone(), mask, same_word).item()


def test_frame_sync_within_the_clip_reads_no_other_clip():
    """sync_negatives: clip: each frame's candidates are its own clip's, so the batch loss is the frames' mean of
    each clip's loss alone, and what sets clips apart (a speaker's offset) cannot lower it; across clips it can."""
    torch.manual_seed(0)
    mask = torch.ones(3, 8, dtype=torch.bool)
    mask[0, 6:] = False
    labels = torch.tensor([0, 1, 2])
    v, a = torch.randn(3, 8, 16), torch.randn(3, 8, 16)
    whole = frame_sync_loss(v, a, mask, labels, across_clips=False)
    alone = [frame_sync_loss(v[i:i + 1], a[i:i + 1], mask[i:i + 1], labels[i:i + 1], across_clips=False) for i in range(3)]
    n = mask.sum(1).float()
    assert whole.item() == pytest.approx(float((torch.stack(alone) * n).sum() / n.sum()), rel=1e-5)
    assert frame_sync_loss(v, a, mask, labels).item() != pytest.approx(whole.item())  # across clips: others count
    v = a = torch.randn(1, 8, 16).expand(3, 8, 16)  # three speakers moving alike: other clips' frames as likely
    offset = torch.randn(3, 1, 16)  # one direction per clip, in both modalities: a speaker's signature
    for across in (True, False):
        plain, marked = (frame_sync_loss(v + o, a + o, mask, labels, across_clips=across).item() for o in (0, offset))
        assert (marked < plain) is across  # only other clips' frames as negatives reward the signature


def test_domain_confusion_minimal_at_half():
    assert domain_confusion_loss(torch.zeros(5), torch.zeros(5)).item() == pytest.approx(0)
    assert domain_confusion_loss(torch.full((5,), 5.0), torch.full((5,), -5.0)).item() > 0.9


def test_domain_flip_loss_is_the_discriminators_bce_with_labels_swapped():
    """joint.domain_loss: flip (the official DAVS): the encoders minimise the discriminator's BCE with audio
    labelled video and video labelled audio, so a discriminator that is right costs them most, one fooled
    completely costs them least, and the gradient moves audio logits down and video logits up."""
    import torch.nn.functional as F

    from davs.losses import domain_flip_loss, domain_loss, gan_d_loss

    la, lv = torch.randn(6), torch.randn(6)
    want = 0.5 * (F.binary_cross_entropy_with_logits(la, torch.zeros(6)) + F.binary_cross_entropy_with_logits(lv, torch.ones(6)))
    assert domain_flip_loss(la, lv).item() == pytest.approx(want.item(), rel=1e-6)
    right, fooled = torch.full((5,), 5.0), torch.full((5,), -5.0)  # the discriminator calls audio "real" (1)
    assert domain_flip_loss(right, fooled).item() > 4 > 0.01 > domain_flip_loss(fooled, right).item()
    assert domain_flip_loss(la, lv).item() == pytest.approx(gan_d_loss(lv, la).item())
    a, v = la.clone().requires_grad_(), lv.clone().requires_grad_()
    domain_loss("flip", a, v).backward()
    assert (a.grad > 0).all() and (v.grad < 0).all()  # descent lowers audio's logits, raises video's
    assert domain_loss("confusion", la, lv).item() == pytest.approx(domain_confusion_loss(la, lv).item())
    with pytest.raises(ValueError, match="domain loss"):
        domain_loss("bce", la, lv)


def test_joint_stage_trains_with_the_official_domain_loss(shards, tmp_path):
    """A joint run with domain_loss: flip logs the flipped term (not the confusion one) and finishes."""
    from davs.data.spec import model_config_for
    from davs.training.runners import run_joint

    from .conftest import CPU, SIZES

    data = configs.data(str(shards / "lrw"), str(shards / "msceleb"), batch_size=4, id_batch_size=8, num_workers=0)
    cfg = model_config_for(data, **SIZES)
    logs = []
    loop = configs.loop(steps=2, log_every=1, val_every=100)
    for form in ("confusion", "flip"):
        run_joint(data, cfg, loop, configs.joint(domain_loss=form, warmup_steps=0), tmp_path / f"{form}.pt", CPU,
                  lambda s, m: logs.append(m["train/loss/domain_confusion"]) if "train/loss/domain_confusion" in m else None)
    conf, flip = logs[:2], logs[2:]
    assert all(0 <= x <= 1 for x in conf) and all(x > 0.3 for x in flip) and conf != flip, (conf, flip)


def test_masked_l1_box():
    a, b = torch.zeros(1, 3, 10, 10), torch.zeros(1, 3, 10, 10)
    b[..., 6:, 2:8] = 1
    assert masked_l1(a, b, (0.6, 0.2, 1.0, 0.8)).item() == pytest.approx(1.0)
    assert masked_l1(a, b).item() == pytest.approx(0.24)


def test_mouth_head_sees_only_the_mouth_cells_and_the_audio_order():
    """The discriminator's mouth head reads the mouth box's cells (pixels far above the mouth do not
    reach it) and the window's audio frame by frame (reordering the frames' audio changes its answer)."""
    torch.manual_seed(0)
    d = build(SMALL, ("D_temporal",))["D_temporal"].eval()
    clip, audio = torch.randn(2, 3, 3, 32, 32), torch.randn(2, 3, SMALL.feat_dim)
    _, m0 = d(clip, audio, True)
    top = clip.clone()
    top[..., :8, :] = torch.randn_like(top[..., :8, :])  # the top quarter: forehead, far from the mouth box
    assert torch.allclose(d(top, audio, True)[1], m0)
    low = clip.clone()
    low[..., 24:, 10:22] = torch.randn_like(low[..., 24:, 10:22])  # inside the mouth box
    assert not torch.allclose(d(low, audio, True)[1], m0)
    assert not torch.allclose(d(clip, audio.flip(1), True)[1], m0)


def _stage_batch(cfg: DAVSConfig, b: int, t: int, ids: int) -> dict:
    """A batch as the loaders yield it (davs/data/loader.py), random content, without the speaker labels the
    corpus adds: real LRW has none, and no training step may read them."""
    g = torch.Generator().manual_seed(0)
    s = cfg.image_size
    lrw = {"frames": torch.randint(0, 256, (b, t, s, s, 3), dtype=torch.uint8, generator=g),
           "mfcc": torch.randn(b, t, cfg.mfcc_frames, cfg.mfcc_coeffs, generator=g),
           "mask": torch.ones(b, t, dtype=torch.bool), "label": torch.arange(b) % cfg.num_words,
           "ref": torch.zeros(b, dtype=torch.long),
           "start": torch.zeros(b, dtype=torch.long)}
    celeb = {"image": torch.randint(0, 256, (ids, s, s, 3), dtype=torch.uint8, generator=g),
             "label": torch.arange(ids) % cfg.num_ids}
    return {"lrw": lrw, "celeb": celeb}


@pytest.mark.parametrize("stage", ["joint", "disent", "gen"])
def test_davs_size_stage_trains_a_step_on_cpu(stage):
    """The paper-size preset (256x256, feat 256, width 64) runs one optimiser step of every phase of every
    stage, through the same loop code the pipeline uses: the preset can never silently break."""
    from davs.training.loop import check_weights_used, make_optimizers, weighted_total
    from davs.training.tasks import DisentTask, GenTask, JointTask

    torch.manual_seed(0)
    cfg = replace(DAVSConfig.davs_size(num_words=4, num_ids=3), identity_rank=8)
    make = {"joint": (JointTask, configs.joint), "disent": (DisentTask, configs.disent), "gen": (GenTask, configs.gen)}
    task = make[stage][0](cfg, make[stage][1]())
    task.train()
    opts = make_optimizers(task, configs.loop(steps=1))
    before = {k: v.detach().clone() for k, v in task.named_parameters()}
    task.step = 10**6  # past any warm-up: every loss weighted
    weights = task.loss_weights()
    b = 1 if stage == "gen" else 2  # joint and disent need two clips (in-batch negatives)
    task.begin_step(_stage_batch(cfg, b=b, t=cfg.window + 1, ids=2), torch.device("cpu"))
    returned: set[str] = set()
    for phase in task.phases:
        opts[phase].zero_grad()
        out = task.losses(phase)
        total = weighted_total(task, phase, out, weights)
        assert torch.isfinite(total), (stage, phase, out)
        total.backward()
        opts[phase].step()
        returned |= set(out)
    check_weights_used(task, weights, returned)
    changed = {k for k, v in task.named_parameters() if not torch.equal(v, before[k])}
    for phase in task.phases:  # every phase's networks moved
        names = {n for n, p in task.named_parameters() if any(p is q for q in task.phase_params(phase))}
        assert names & changed, (stage, phase)
