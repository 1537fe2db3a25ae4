"""Shared fixtures: a tiny corpus in the real LRW / MS-Celeb formats, and shards made from it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from davs.data.ingest_lrw import ingest_lrw
from davs.data.ingest_msceleb import ingest_msceleb
from davs.resources import lrw_words
from davs.synth.corpus import generate

from . import configs

ROOT = Path(__file__).resolve().parents[1]
TINY = configs.corpus(seed=3, num_words=3, speakers=3, test_only_speakers=1, train_per_word=6, val_per_word=2,
                      test_per_word=3, msceleb_identities=4, msceleb_images=8, workers=1,
                      words=("ABOUT", "MONEY", "SCHOOL"))

torch.set_num_threads(2)
logging.getLogger("davs").setLevel(logging.INFO)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    generate(out, lrw_words(), TINY)
    return out


# One worker: in this process (a pool of spawned workers costs ~4 s to start per call, 8x the work here).
# The tests that are about worker processes ask for them (test_shard_set_identity_depends_only_on_the_data,
# the ingestion SIGKILL / SIGTERM tests, test_corpus_is_identical_across_runs_with_worker_processes).
LRW_CFG = configs.lrw_ingest(image_size=32, shard_max_samples=8, min_shards=2, workers=1)
CELEB_CFG = configs.celeb_ingest(image_size=32, msceleb_min_per_identity=5, msceleb_val_per_identity=2,
                                 msceleb_test_per_identity=2, msceleb_shard_max_samples=8, min_shards=2, workers=1)


@pytest.fixture(scope="session")
def shards(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    ingest_lrw(corpus / "lipread_mp4", out / "lrw", out / "dq" / "lrw.json", LRW_CFG, lrw_words())
    ingest_msceleb(corpus / "msceleb" / "FaceImageCroppedWithAlignment.tsv", out / "msceleb", out / "dq" / "msceleb.json",
                   CELEB_CFG)
    return out


CPU = torch.device("cpu")
SIZES = configs.sizes(image_size=32, feat_dim=32, width=8, gen_width=8, disc_width=8, window=3, identity_rank=4)


def tiny_data(shards: Path, **kw):
    return configs.data(shards / "lrw", shards / "msceleb", **{"batch_size": 4, "id_batch_size": 8, "num_workers": 0, **kw})


@pytest.fixture(scope="session")
def tiny_models(shards: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    """joint -> disent -> gen, a few steps each, on the tiny shards: (dir, cfg, metrics, logged)."""
    from dataclasses import replace

    from davs.data.spec import model_config_for
    from davs.judges.data import load_clips
    from davs.judges.train import train_judges
    from davs.training.runners import run_disent, run_gen, run_joint

    out = tmp_path_factory.mktemp("models")
    data = tiny_data(shards)
    cfg = model_config_for(data, **SIZES)
    loop = configs.loop(steps=6, log_every=3, val_every=6, ckpt_every=3, weight_decay=0.0, grad_clip=0.0)
    logged: list = []
    m1 = run_joint(data, cfg, loop, configs.joint(), out / "joint.pt", CPU, lambda s, m: logged.append((s, m)))
    m2 = run_disent(data, cfg, replace(loop), configs.disent(head_steps=3), out / "joint.pt", out / "disent.pt", CPU)
    m3 = run_gen(data, cfg, replace(loop, optimizer="adam"),
                 configs.gen(lip_weight=1.0, mask_weight=0.1, sync_gan_weight=0.1), out / "disent.pt", out / "gen.pt", CPU)
    judges = configs.judges(image_size=32, width=8, embed_dim=16, mouth_steps=5, sync_steps=5, sync_batch=8,
                            mouth_batch=16)
    clips = load_clips(shards / "lrw", "train", 32, judges.mouth_box, judges.margin,
                       corpus / "lipread_mp4" / "mouth_states.csv")
    train_judges(clips, judges, out / "judges.pt")
    return out, cfg, (m1, m2, m3), logged


@pytest.fixture
def venv_env() -> dict[str, str]:
    """Environment whose PATH finds this interpreter's console scripts (davs, dvc, prefect)."""
    import sys

    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def ingest_val_batch(corpus: Path, out: Path, **changes):
    """Ingest the tiny corpus with LRW_CFG changed by ``changes`` into ``out``; returns its val split as one
    loaded batch and the val clips' references by key."""
    from dataclasses import replace

    from davs.data.loader import LRWDecode, make_loader
    from davs.data.lrw import list_clips

    ingest_lrw(corpus / "lipread_mp4", out, out.parent / f"{out.name}.dq.json", replace(LRW_CFG, **changes), lrw_words())
    refs = {r.key: r for r in list_clips(corpus / "lipread_mp4") if r.split == "val"}
    loader, _ = make_loader(str(out / "val-*.tar"), LRWDecode(25, 2, 5, 0, None, False), batch_size=len(refs),
                            train=False, num_samples=len(refs))
    (batch,) = list(loader)
    return batch, refs


# params.yaml overrides for a pipeline on the tiny corpus (the e2e tests and the eval stage's tests)
TINY_PARAMS = {
    "synth.num_words": 3, "synth.speakers": 3, "synth.test_only_speakers": 1, "synth.train_per_word": 6,
    "synth.val_per_word": 2, "synth.test_per_word": 3, "synth.msceleb_identities": 4, "synth.msceleb_images": 8,
    "data.image_size": 32, "ingest.min_shards": 2, "ingest.shard_max_samples": 8,
    "ingest.msceleb_min_per_identity": 5, "ingest.msceleb_test_per_identity": 2,
    "model.feat_dim": 32, "model.width": 8, "model.gen_width": 8, "model.disc_width": 8, "model.window": 3,
    "model.identity_rank": 4, "disent.head_steps": 3, "joint.steps": 4, "disent.steps": 3, "gen.steps": 3, "joint.batch_size": 4, "disent.batch_size": 4,
    "gen.batch_size": 4, "joint.id_batch_size": 8, "disent.id_batch_size": 8,
    "joint.num_workers": 0, "disent.num_workers": 0, "gen.num_workers": 0,
    "eval.batch_size": 4, "eval.num_samples": 1,
    "synth.workers": 1, "ingest.workers": 1,  # in process: worker pools are tested in test_faults / test_ingest
    "judges.width": 8, "judges.embed_dim": 16, "judges.mouth_steps": 5, "judges.sync_steps": 5, "judges.sync_batch": 8,
}


def _set(raw: dict, dotted: str, value) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
