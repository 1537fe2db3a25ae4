"""Thin stage entry points: params.yaml -> typed configs -> the library in ``davs/`` -> files.

Each function is one DVC stage (see dvc.yaml). Metrics and plots leave the library through a
callback that writes them with dvclive, which lives here and not in ``davs/``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import fields, replace
from pathlib import Path

import torch

from davs.config import (
    CelebIngestConfig,
    CorpusSpec,
    DataSpec,
    DAVSConfig,
    DisentHParams,
    GenHParams,
    JointHParams,
    JudgeConfig,
    LipHeadConfig,
    LoopConfig,
    LRWIngestConfig,
)
from pipeline import paths
from pipeline.params import DATA_KEYS, FROM_SHARDS, Params, config

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


def corpus_spec(p: Params) -> CorpusSpec:
    return config(CorpusSpec, p.synth)


def lrw_ingest_config(p: Params) -> LRWIngestConfig:
    return config(LRWIngestConfig, p.data, p.ingest)


def celeb_ingest_config(p: Params) -> CelebIngestConfig:
    return config(CelebIngestConfig, p.data, p.ingest)


def ingest_lrw(p: Params) -> dict:
    from davs.data.ingest_lrw import ingest_lrw as run
    from davs.resources import lrw_words

    return run(paths.lrw_root(p), paths.lrw_shards(p), paths.REPORTS / "data_quality" / "lrw.json",
               lrw_ingest_config(p), lrw_words())


def ingest_msceleb(p: Params) -> dict:
    from davs.data.ingest_msceleb import ingest_msceleb as run

    return run(paths.msceleb_path(p), paths.celeb_shards(p), paths.REPORTS / "data_quality" / "msceleb.json",
               celeb_ingest_config(p))


def judges_config(p: Params) -> JudgeConfig:
    return config(JudgeConfig, p.data, p.judges)


def judges(p: Params) -> dict:
    """Train the evaluation judges (mouth-state regressor, SyncNet) on real train clips."""
    from davs.judges.data import load_clips
    from davs.judges.train import train_judges

    cfg = judges_config(p)
    data = load_clips(paths.lrw_shards(p), "train", cfg.image_size, cfg.mouth_box, cfg.margin,
                      paths.mouth_states(p), p.judges.max_clips)
    return train_judges(data, cfg, paths.model_file("judges"))


def data_spec(p: Params, stage: str) -> DataSpec:
    """What a stage reads; gen reads no faces and is the one stage drawing reference frames at rest."""
    s = getattr(p, stage)
    extra = {"id_batch_size": s.batch_size} if stage == "gen" else {"rest_ref_prob": 0.0}
    return config(DataSpec, p.data, s, lrw_dir=str(paths.lrw_shards(p)), celeb_dir=str(paths.celeb_shards(p)),
                  seed=p.seed, **extra)


def model_sizes(p: Params) -> dict:
    """The DAVSConfig fields params.yaml sets, in the class's order (the class counts come from the shards)."""
    return {f.name: getattr(p.data if f.name in DATA_KEYS else p.model, f.name)
            for f in fields(DAVSConfig) if f.name not in FROM_SHARDS}


def model_config(p: Params) -> DAVSConfig:
    from davs.data.spec import model_config_for

    return model_config_for(data_spec(p, "joint"), **model_sizes(p))


def loop_config(p: Params, stage: str) -> LoopConfig:
    """The stage's loop; ``amp`` autocasts to bf16 on CUDA, and on a CPU with bf16 units (AMX) too."""
    from davs.devices import cpu_has_bf16_units

    s = getattr(p, stage)
    return config(LoopConfig, s, amp_on_cpu=s.amp and cpu_has_bf16_units(), seed=p.seed,
                  checkpoint=str(paths.CHECKPOINTS / stage / "last.pt"))


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


def joint_hparams(p: Params) -> JointHParams:
    return config(JointHParams, p.joint)


def disent_hparams(p: Params) -> DisentHParams:
    return config(DisentHParams, p.disent, joint=joint_hparams(p))


def gen_hparams(p: Params) -> GenHParams:
    """The gen stage's loss weights and learning rates; end to end, the earlier stages' losses too."""
    return config(GenHParams, p.gen, disent=disent_hparams(p))


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
    from davs.training.lip_head import fit_lip_head, score_lip_head, word_features

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
    head = fit_lip_head(feats["train"], config(LipHeadConfig, p.lips))
    report = {k: round(v, 5) for k, v in score_lip_head(head, feats["val"]).items()}
    save_lip_head(head, paths.model_file("lips"), report)
    atomic_write_text(paths.REPORTS / "lips.json", json.dumps(report, indent=2) + "\n")
    return report
