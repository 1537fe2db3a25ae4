"""Stage runners: build loaders, the task and the loop for ``joint``, ``disent`` and ``gen``.

Each runner seeds, builds its task from a :class:`~davs.models.DAVSConfig`, initialises it from the
previous stage's model file, trains (resuming from ``checkpoint`` when it matches), and writes the
stage's model file ``{"model_config", "stage", "nets": {component: state_dict}}`` atomically.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from davs.checkpoint import check_config, load_checkpoint, save_checkpoint
from davs.data.loader import LRWDecode, SharedEpoch, count_samples, decode_celeb, make_loader
from davs.models import DAVSConfig
from davs.provenance import code_hash, file_hash, shards_hash
from davs.training import distributed as D
from davs.training.loop import Callback, LoopConfig, Stream, train
from davs.training.tasks import DisentTask, DisentWeights, GenTask, GenWeights, JointTask, JointWeights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSpec:
    lrw_dir: str  # LRW shards (train-*.tar, val-*.tar, summary.json, vocab.json)
    celeb_dir: str  # MS-Celeb shards
    num_frames: int = 25
    frame_offset: int = 2
    batch_size: int = 16
    id_batch_size: int = 32
    num_workers: int = 1
    seed: int = 0
    rest_ref_prob: float = 0.0  # chance a training reference frame comes from outside the word (gen)


def model_config_for(data: DataSpec, **sizes: Any) -> DAVSConfig:
    """A DAVSConfig whose class counts come from the shards (vocab.json, identities.json)."""
    vocab = json.loads((Path(data.lrw_dir) / "vocab.json").read_text())
    ids = json.loads((Path(data.celeb_dir) / "identities.json").read_text())["mids"]
    return DAVSConfig(num_words=len(vocab["words"]), num_ids=len(ids), num_speakers=len(vocab.get("speakers", [])),
                      **sizes)


def _streams(task_streams: tuple[str, ...], data: DataSpec, window: int, train_split: bool = True) -> dict[str, Stream]:
    world = D.world_size()
    out = {}
    if "lrw" in task_streams:
        ep = SharedEpoch()
        n = count_samples(data.lrw_dir, "train")
        dec = LRWDecode(data.num_frames, data.frame_offset, window, data.seed, ep, random_sampling=True,
                        rest_ref_prob=data.rest_ref_prob)
        loader, nb = make_loader(f"{data.lrw_dir}/train-*.tar", dec, batch_size=data.batch_size, train=True,
                                 num_samples=n, seed=data.seed, epoch=ep, num_workers=data.num_workers, world_size=world)
        out["lrw"] = Stream(loader, nb, ep)
    if "celeb" in task_streams:
        ep = SharedEpoch()
        n = count_samples(data.celeb_dir, "train")
        loader, nb = make_loader(f"{data.celeb_dir}/train-*.tar", decode_celeb, batch_size=data.id_batch_size,
                                 train=True, num_samples=n, seed=data.seed + 1, epoch=ep,
                                 num_workers=min(data.num_workers, 1), world_size=world)
        out["celeb"] = Stream(loader, nb, ep)
    return out


def eval_loaders(data: DataSpec, window: int, split: str, streams: tuple[str, ...]) -> dict[str, Any]:
    """Factories of one-pass, fixed-order loaders over a held-out split."""
    out = {}
    if "lrw" in streams:
        dec = LRWDecode(data.num_frames, data.frame_offset, window, data.seed, None, random_sampling=False)
        n = count_samples(data.lrw_dir, split)
        out["lrw"] = lambda: make_loader(f"{data.lrw_dir}/{split}-*.tar", dec, batch_size=data.batch_size,
                                         train=False, num_samples=n)[0]
    if "celeb" in streams:
        n = count_samples(data.celeb_dir, split)
        out["celeb"] = lambda: make_loader(f"{data.celeb_dir}/{split}-*.tar", decode_celeb,
                                           batch_size=data.id_batch_size, train=False, num_samples=n)[0]
    return out


def save_model(path: str | Path, task: Any, cfg: DAVSConfig, stage: str, metrics: dict[str, float]) -> None:
    save_checkpoint(path, {"model_config": cfg.to_dict(), "stage": stage, "nets": task.export(),
                           "metrics": {k: float(v) for k, v in metrics.items()}})


def load_model(path: str | Path, cfg: DAVSConfig | None = None, device: str | torch.device = "cpu",
               fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Load a stage's model file; with ``cfg``, fail clearly if it was trained with another model config
    (comparing only ``fields`` when given)."""
    ck = load_checkpoint(path, map_location=device)
    if cfg is not None:
        check_config(ck, cfg.to_dict(), path, fields)
    return ck


def _run(task: Any, stage: str, data: DataSpec, cfg: DAVSConfig, loop: LoopConfig, out: str | Path,
         device: torch.device, callback: Callback | None, init: str | Path | None, init_parts: tuple[str, ...]) -> dict:
    if init:
        task.load_parts(load_model(init, cfg, fields=DAVSConfig.ENCODER_FIELDS)["nets"], init_parts)
    loop.fingerprint = run_fingerprint(stage, data, cfg, loop, task.w, init)
    streams = _streams(task.streams, data, cfg.window)
    val = eval_loaders(data, cfg.window, "val", task.streams)
    metrics = train(task, streams, loop, device, val_streams=val, callback=callback)
    if D.is_main():
        save_model(out, task, cfg, stage, metrics)
    return metrics


def run_fingerprint(stage: str, data: DataSpec, cfg: DAVSConfig, loop: LoopConfig, weights: Any,
                    init: str | Path | None) -> dict[str, Any]:
    """What a resumed checkpoint must share with this run: every setting, the content of the input shards
    (their manifests) and of the initialising model file, and the code (the import closure of this module,
    the same rule DVC's deps follow). Paths and logging cadence do not count."""
    spec = {k: v for k, v in asdict(data).items() if k not in ("lrw_dir", "celeb_dir")}
    return {
        "stage": stage, "data": spec, "model": cfg.to_dict(),
        "loop": {k: v for k, v in asdict(loop).items() if k not in ("checkpoint", "fingerprint", "log_every", "val_every")},
        "weights": asdict(weights), "init": file_hash(init),
        "shards": {"lrw": shards_hash(data.lrw_dir), "celeb": shards_hash(data.celeb_dir)},
        "code": code_hash([__name__]),
    }


def run_joint(data: DataSpec, cfg: DAVSConfig, loop: LoopConfig, w: JointWeights, out: str | Path,
              device: torch.device, callback: Callback | None = None) -> dict:
    torch.manual_seed(loop.seed)
    return _run(JointTask(cfg, w), "joint", data, cfg, loop, out, device, callback, None, ())


def run_disent(data: DataSpec, cfg: DAVSConfig, loop: LoopConfig, w: DisentWeights, init: str | Path, out: str | Path,
               device: torch.device, callback: Callback | None = None) -> dict:
    torch.manual_seed(loop.seed)
    return _run(DisentTask(cfg, w), "disent", data, cfg, loop, out, device, callback, init, DisentTask.ENCODERS)


def run_gen(data: DataSpec, cfg: DAVSConfig, loop: LoopConfig, w: GenWeights, init: str | Path, out: str | Path,
            device: torch.device, callback: Callback | None = None) -> dict:
    torch.manual_seed(loop.seed)
    return _run(GenTask(cfg, w), "gen", data, cfg, loop, out, device, callback, init, GenTask.FROZEN)
