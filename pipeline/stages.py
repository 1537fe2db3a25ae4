"""Thin stage entry points: params.yaml -> typed configs -> the library in ``davs/`` -> files.

Each function is one DVC stage (see dvc.yaml). Metrics and plots leave the library through a
callback that writes them with dvclive, which lives here and not in ``davs/``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from pipeline import paths
from pipeline.params import Params

if TYPE_CHECKING:
    from davs.training.tasks import GenHParams

log = logging.getLogger("davs")


def sources(p: Params) -> dict:
    """List the real datasets' files (sizes, mtimes) so that the ingestion stages rerun when they change;
    with a path unset, a fixed line (the embedded corpus is tracked as the synth stage's output)."""
    from davs.data.sources import write_listing
    from davs.files import atomic_write_text

    out = {}
    for name, key, src in (("lrw", "data.lrw_root", p.data.lrw_root), ("msceleb", "data.msceleb_tsv", p.data.msceleb_tsv)):
        dst = paths.SOURCES / f"{name}.tsv"
        if src:
            out[name] = write_listing(src, dst)
        else:
            atomic_write_text(dst, f"# {key} is empty: the embedded corpus (stage synth, {p.data.corpus_dir}) is ingested\n")
    return out


def synth(p: Params) -> dict:
    """Generate the embedded corpus (skipped when both real dataset paths are set)."""
    from davs.resources import lrw_words
    from davs.synth.corpus import generate

    out = Path(p.data.corpus_dir)  # replaced whole when complete, never emptied first (a kill keeps the old one)
    if p.data.lrw_root and p.data.msceleb_tsv:
        from davs.files import staged_dir

        with staged_dir(out) as stage:
            (stage / "SKIPPED").write_text("data.lrw_root and data.msceleb_tsv point at real data\n")
        log.info("synth skipped: real data paths are set")
        return {}
    return generate(out, lrw_words(), corpus_spec(p))


def corpus_spec(p: Params):
    from davs.synth.corpus import CorpusSpec

    s = p.synth
    return CorpusSpec(
        seed=s.seed, num_words=s.num_words, speakers=s.speakers, test_only_speakers=s.test_only_speakers,
        train_per_word=s.train_per_word, val_per_word=s.val_per_word, test_per_word=s.test_per_word,
        msceleb_identities=s.msceleb_identities, msceleb_images=s.msceleb_images, jitter=s.jitter,
        snr_db=tuple(s.snr_db), workers=s.workers,
    )


def lrw_ingest_config(p: Params):
    from davs.data.ingest_lrw import LRWIngestConfig

    i = p.ingest
    return LRWIngestConfig(
        crop_box=tuple(p.data.crop_box), face_align=p.data.face_align, image_size=p.data.image_size,
        mfcc_frames=p.data.mfcc_frames, mfcc_coeffs=p.data.mfcc_coeffs, mfcc_recipe=p.data.mfcc_recipe,
        frame_format=i.frame_format, jpeg_quality=i.jpeg_quality,
        shard_max_samples=i.shard_max_samples, min_shards=i.min_shards, max_clips_per_word=i.max_clips_per_word,
        max_bad_fraction=i.max_bad_fraction, workers=i.workers,
    )


def celeb_ingest_config(p: Params):
    from davs.data.ingest_msceleb import CelebIngestConfig

    i = p.ingest
    return CelebIngestConfig(
        image_size=p.data.image_size, jpeg_quality=i.jpeg_quality, min_per_identity=i.msceleb_min_per_identity,
        max_per_identity=i.msceleb_max_per_identity, val_per_identity=i.msceleb_val_per_identity,
        test_per_identity=i.msceleb_test_per_identity,
        shard_max_samples=i.msceleb_shard_max_samples,
        min_shards=i.min_shards, max_bad_fraction=i.max_bad_fraction, workers=i.workers,
    )


def ingest_lrw(p: Params) -> dict:
    from davs.data.ingest_lrw import ingest_lrw as run
    from davs.resources import lrw_words

    return run(paths.lrw_root(p), paths.lrw_shards(p), paths.REPORTS / "data_quality" / "lrw.json",
               lrw_ingest_config(p), lrw_words())


def ingest_msceleb(p: Params) -> dict:
    from davs.data.ingest_msceleb import ingest_msceleb as run

    return run(paths.msceleb_path(p), paths.celeb_shards(p), paths.REPORTS / "data_quality" / "msceleb.json",
               celeb_ingest_config(p))


def judges_config(p: Params):
    from davs.judges.train import JudgeConfig

    j = p.judges
    return JudgeConfig(
        seed=j.seed, image_size=p.data.image_size, mouth_box=tuple(p.data.mouth_box), margin=j.margin, width=j.width,
        embed_dim=j.embed_dim, stack=j.stack, max_shift=j.max_shift, mouth_steps=j.mouth_steps,
        mouth_batch=j.mouth_batch, sync_steps=j.sync_steps, sync_batch=j.sync_batch, lr=j.lr,
        temperature=j.temperature,
    )


def judges(p: Params) -> dict:
    """Train the evaluation judges (mouth-state regressor, SyncNet) on real train clips."""
    from davs.judges.data import load_clips
    from davs.judges.train import train_judges

    cfg = judges_config(p)
    data = load_clips(paths.lrw_shards(p), "train", cfg.image_size, cfg.mouth_box, cfg.margin,
                      paths.mouth_states(p), p.judges.max_clips)
    return train_judges(data, cfg, paths.model_file("judges"))


def data_spec(p: Params, stage: str):
    from davs.data.spec import DataSpec

    s = getattr(p, stage)
    id_batch = {"joint": p.joint.id_batch_size, "disent": p.disent.id_batch_size}  # the stages that read faces
    return DataSpec(
        lrw_dir=str(paths.lrw_shards(p)), celeb_dir=str(paths.celeb_shards(p)), num_frames=p.data.num_frames,
        frame_offset=p.data.frame_offset, batch_size=s.batch_size,
        id_batch_size=id_batch.get(stage, s.batch_size), num_workers=s.num_workers, seed=p.seed,
        rest_ref_prob=p.gen.rest_ref_prob if stage == "gen" else 0.0,  # only gen draws reference frames
    )


def model_sizes(p: Params) -> dict:
    """The DAVSConfig fields params.yaml sets (the class counts come from the shards)."""
    m = p.model
    return dict(image_size=p.data.image_size, feat_dim=m.feat_dim, width=m.width, gen_width=m.gen_width,
                disc_width=m.disc_width, mfcc_frames=p.data.mfcc_frames, mfcc_coeffs=p.data.mfcc_coeffs,
                mfcc_recipe=p.data.mfcc_recipe, window=m.window, audio_conditioned_disc=m.audio_conditioned_disc, mouth_box=tuple(p.data.mouth_box),
                variant=m.variant, dis_frames=m.dis_frames, gen_conceal=m.gen_conceal,
                identity_rank=m.identity_rank)


def model_config(p: Params):
    from davs.data.spec import model_config_for

    return model_config_for(data_spec(p, "joint"), **model_sizes(p))


def loop_config(p: Params, stage: str):
    """The stage's loop; ``amp`` autocasts to bf16 on CUDA, and on a CPU with bf16 units (AMX) too."""
    from davs.devices import cpu_has_bf16_units
    from davs.training.loop import LoopConfig

    s = getattr(p, stage)
    return LoopConfig(
        steps=s.steps, optimizer=s.optimizer, weight_decay=s.weight_decay, grad_clip=s.grad_clip,
        log_every=s.log_every, val_every=s.val_every, ckpt_every=s.ckpt_every, amp=s.amp,
        amp_on_cpu=s.amp and cpu_has_bf16_units(), compile=s.compile, seed=p.seed,
        checkpoint=str(paths.CHECKPOINTS / stage / "last.pt"),
    )


class LiveCallback:
    """dvclive logging of the loop's metrics (step-indexed), rank 0 only. Timings (``perf/*``) stay in the
    log: ``dvclive/<stage>`` is a DVC output whose hash must depend only on the run's inputs."""

    def __init__(self, stage: str) -> None:
        from dvclive import Live

        self.live = Live(dir=str(paths.DVCLIVE / stage), dvcyaml=None, save_dvc_exp=False, report=None)

    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        self.live.step = step
        for k, v in metrics.items():
            if not k.startswith("perf/"):
                self.live.log_metric(k, float(v), plot=True)

    def close(self) -> None:
        self.live.end()


def joint_hparams(p: Params):
    from davs.training.tasks import JointHParams

    j = p.joint
    return JointHParams(lr=j.lr, contrastive=j.contrastive_weight, frame_sync=j.frame_sync_weight, margin=j.margin,
                        contrastive_form=j.contrastive_form, domain=j.domain_weight, domain_loss=j.domain_loss, identity=j.identity_weight, warmup_steps=j.warmup_steps)


def disent_hparams(p: Params):
    from davs.training.tasks import DisentHParams

    d = p.disent
    return DisentHParams(lr=d.lr, dis_lr=d.dis_lr, uniform=d.uniform_weight, keep=d.keep_weight,
                         margin=p.joint.margin, contrastive_form=p.joint.contrastive_form, uniform_form=d.uniform_form, frame_sync=p.joint.frame_sync_weight, dis_steps=d.dis_steps,
                         dis_memory=d.dis_memory, identity_ridge=d.identity_ridge,
                         identity_clips=d.identity_clips, head_steps=d.head_steps, head_lr=d.head_lr,
                         clip_id=d.clip_id_weight, clip_id_memory=d.clip_id_memory, clip_id_ridge=d.clip_id_ridge,
                         clip_id_clusters=d.clip_id_clusters)


def gen_hparams(p: Params) -> GenHParams:
    """The gen stage's loss weights and learning rates from params."""
    from davs.training.tasks import GenHParams

    g = p.gen
    j, d = p.joint, p.disent
    return GenHParams(lr=g.lr, d_lr=g.d_lr, l1=g.l1_weight, mouth=g.mouth_weight, gan=g.gan_weight,
                      lip=g.lip_weight, mask=g.mask_weight, sync_gan=g.sync_gan_weight, smooth=g.smooth_weight,
                      soft_labels=g.soft_labels, train_encoders=g.train_encoders, embed=g.embed_weight,
                      contrastive=j.contrastive_weight, contrastive_form=j.contrastive_form,
                      frame_sync=j.frame_sync_weight, margin=j.margin, domain=j.domain_weight,
                      domain_loss=j.domain_loss, uniform=d.uniform_weight, uniform_form=d.uniform_form)


def train(p: Params, stage: str, device: str = "auto") -> dict:
    from davs.training import distributed as D
    from davs.training import runners as R

    rank, world, dev = D.init_distributed(device)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    cfg = model_config(p)
    data, loop = data_spec(p, stage), loop_config(p, stage)
    out = paths.model_file(stage)
    cb = LiveCallback(stage) if D.is_main() else None
    try:
        if stage == "joint":
            metrics = R.run_joint(data, cfg, loop, joint_hparams(p), out, dev, cb)
        elif stage == "disent":
            metrics = R.run_disent(data, cfg, loop, disent_hparams(p), paths.model_file("joint"), out, dev, cb)
        elif stage == "gen":
            metrics = R.run_gen(data, cfg, loop, gen_hparams(p), paths.model_file("disent"), out, dev, cb)
        else:
            raise ValueError(f"unknown training stage {stage!r} (joint, disent, gen)")
    finally:
        if cb:
            cb.close()
        D.cleanup()
    return metrics


def lips(p: Params) -> dict:
    """Fit the lip head on the generator's frozen word encoders (train split: audio and video words against
    the corpus's mouth states), score it on the validation split -> models/lips.pt, reports/lips.json."""
    import json

    from davs.checkpoint import load_model
    from davs.data.spec import eval_loaders
    from davs.files import atomic_write_text
    from davs.models import load_nets
    from davs.models.lip_head import save_lip_head
    from davs.synth.corpus import read_mouth_states
    from davs.training.lip_head import LipHeadConfig, fit_lip_head, score_lip_head, word_features

    torch.manual_seed(p.seed)
    states_file = paths.mouth_states(p)
    if not states_file.exists():
        from davs.errors import DavsError

        raise DavsError(f"{states_file} not found: the lip head learns from per-frame mouth states, which the "
                        "embedded corpus writes and real LRW lacks")
    dev = torch.device("cpu")
    nets = load_nets(load_model(paths.model_file("gen"), device=dev), ("Ea_w", "Ev_w"), dev)
    states = read_mouth_states(states_file)
    data = replace(data_spec(p, "joint"), batch_size=p.lips.batch_size)
    window = model_config(p).window
    feats = {split: word_features(nets, eval_loaders(data, window, split, ("lrw",))["lrw"](), states,
                                  p.data.frame_offset, dev) for split in ("train", "val")}
    head = fit_lip_head(feats["train"], LipHeadConfig(context=p.lips.context, ridge=p.lips.ridge))
    report = {k: round(v, 5) for k, v in score_lip_head(head, feats["val"]).items()}
    save_lip_head(head, paths.model_file("lips"), report)
    atomic_write_text(paths.REPORTS / "lips.json", json.dumps(report, indent=2) + "\n")
    return report
