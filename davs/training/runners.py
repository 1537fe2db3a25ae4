"""Stage runners: build loaders, the task and the loop for ``joint``, ``disent`` and ``gen``.

Each runner seeds (once, in ``_run``), builds its task from a :class:`~davs.models.DAVSConfig`, initialises it from the
previous stage's model file, trains (resuming from ``checkpoint`` when it matches), and writes the
stage's model file ``{"model_config", "stage", "nets": {component: state_dict}}`` atomically.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from davs.checkpoint import load_model, save_checkpoint
from davs.data.loader import LRWDecode, count_samples, decode_celeb, make_loader
from davs.data.order import SharedEpoch
from davs.data.spec import DataSpec, eval_loaders
from davs.models import DAVSConfig
from davs.provenance import code_hash, file_hash, shards_hash
from davs.training import distributed as D
from davs.training.identity_fit import fit_identity_nuisance
from davs.training.loop import Callback, LoopConfig, train
from davs.training.streams import Stream
from davs.training.tasks import DisentHParams, DisentTask, GenHParams, GenTask, JointHParams, JointTask
from davs.training.tasks.word_head import WordHeadHParams, WordHeadTask

log = logging.getLogger(__name__)


def train_streams(task_streams: tuple[str, ...], data: DataSpec, window: int) -> dict[str, Stream]:
    """The task's training streams: shuffled, endless, split across DDP ranks."""
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


def save_model(path: str | Path, task: Any, cfg: DAVSConfig, stage: str, metrics: dict[str, float]) -> None:
    save_checkpoint(path, {"model_config": cfg.to_dict(), "stage": stage, "nets": task.export(),
                           "metrics": {k: float(v) for k, v in metrics.items()}})


def _run(make_task: Callable[[], Any], stage: str, data: DataSpec, cfg: DAVSConfig, loop: LoopConfig,
         out: str | Path, device: torch.device, callback: Callback | None, init: str | Path | None,
         init_parts: tuple[str, ...], finish: Callable[[Any], dict] | None = None) -> dict:
    torch.manual_seed(loop.seed)  # the initial weights (the loop seeds again for data order and dropout)
    task = make_task()
    if init:
        task.load_parts(load_model(init, cfg, fields=DAVSConfig.ENCODER_FIELDS)["nets"], init_parts)
    loop.fingerprint = run_fingerprint(stage, data, cfg, loop, task.w, init)
    streams = train_streams(task.streams, data, cfg.window)
    val = eval_loaders(data, cfg.window, "val", task.streams)
    metrics = train(task, streams, loop, device, val_streams=val, callback=callback)
    if finish is not None:
        metrics |= finish(task)
    if D.is_main():
        save_model(out, task, cfg, stage, metrics)
    return metrics


def run_fingerprint(stage: str, data: DataSpec, cfg: DAVSConfig, loop: LoopConfig, hparams: Any,
                    init: str | Path | None) -> dict[str, Any]:
    """What a resumed checkpoint must share with this run: every setting, the content of the input shards
    (their manifests) and of the initialising model file, and the code (the import closure of this module,
    the same rule DVC's deps follow). Paths and logging cadence do not count."""
    spec = {k: v for k, v in asdict(data).items() if k not in ("lrw_dir", "celeb_dir")}
    return {
        "stage": stage, "data": spec, "model": cfg.to_dict(),
        "loop": {k: v for k, v in asdict(loop).items() if k not in ("checkpoint", "fingerprint", "log_every", "val_every")},
        "hparams": asdict(hparams), "init": file_hash(init),
        "shards": {"lrw": shards_hash(data.lrw_dir), "celeb": shards_hash(data.celeb_dir)},
        "code": code_hash([__name__]),
    }


def run_joint(data: DataSpec, cfg: DAVSConfig, loop: LoopConfig, w: JointHParams, out: str | Path,
              device: torch.device, callback: Callback | None = None) -> dict:
    return _run(lambda: JointTask(cfg, w), "joint", data, cfg, loop, out, device, callback, None, ())


def run_disent(data: DataSpec, cfg: DAVSConfig, loop: LoopConfig, w: DisentHParams, init: str | Path, out: str | Path,
               device: torch.device, callback: Callback | None = None) -> dict:
    """The adversarial steps; then, with ``cfg.identity_rank``, the identity subspace removed from the word
    encoders and Cw refitted on what is left (its own resumable loop, ``<checkpoint>.head``)."""
    def finish(task: DisentTask) -> dict:
        return remove_identity(task, data, cfg, loop, w, init, device) if cfg.identity_rank else {}

    return _run(lambda: DisentTask(cfg, w), "disent", data, cfg, loop, out, device, callback, init, DisentTask.ENCODERS,
                finish)


def remove_identity(task: DisentTask, data: DataSpec, cfg: DAVSConfig, loop: LoopConfig, w: DisentHParams,
                    init: str | Path, device: torch.device) -> dict:
    train_lrw = eval_loaders(data, cfg.window, "train", ("lrw",))["lrw"]()
    metrics = fit_identity_nuisance(task.nets, train_lrw, device, cfg.identity_rank, w.identity_ridge, w.identity_clips,
                                   w.identity_form, w.identity_window)
    if w.head_steps == 0:
        return metrics
    head = WordHeadTask(cfg, WordHeadHParams(lr=w.head_lr, joint=w.joint))
    head.load_parts(task.export(), WordHeadTask.PARTS)
    hloop = replace(loop, steps=w.head_steps, checkpoint=f"{loop.checkpoint}.head" if loop.checkpoint else None,
                    val_every=w.head_steps + 1)
    hloop.fingerprint = {**run_fingerprint("disent-head", data, cfg, loop, w, init),
                         "subspace": hashlib.sha256(b"".join(b.cpu().numpy().tobytes() for k in WordHeadTask.FROZEN
                                                             for b in task.nets[k].nuisance.buffers())).hexdigest()}
    head_metrics = train(head, train_streams(head.streams, data, cfg.window), hloop, device,
                         val_streams=eval_loaders(data, cfg.window, "val", head.streams))
    for k in WordHeadTask.PARTS:  # Cw and the encoders' last linear maps, trained; the rest as it was
        task.nets[k].load_state_dict(head.nets[k].state_dict())
    return metrics | {f"head/{k}": v for k, v in head_metrics.items()}


def run_gen(data: DataSpec, cfg: DAVSConfig, loop: LoopConfig, w: GenHParams, init: str | Path, out: str | Path,
            device: torch.device, callback: Callback | None = None) -> dict:
    return _run(lambda: GenTask(cfg, w), "gen", data, cfg, loop, out, device, callback, init, GenTask.init_parts(w))
