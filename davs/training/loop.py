"""One training loop for every DAVS stage.

A :class:`Task` owns its networks and names its *phases*: each phase has its own optimizer over its
own parameters and returns a dict of named losses (``loss/...``) and metrics. Each step runs the
phases in order: zero grads, forward under autocast, weighted sum, NaN guard, backward, gradient
all-reduce (DDP), clipping, optimizer step. The loop counts iterations (dinov2 style), logs step time
and data time (torchvision references style), validates, and checkpoints atomically so a killed run
resumes where it stopped with the same data order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from davs.config.training import LoopConfig
from davs.training import distributed as D
from davs.training.resume import restore_state, save_state
from davs.training.streams import Stream, to_device

log = logging.getLogger(__name__)

Callback = Callable[[int, dict[str, float]], None]


class Task(nn.Module):
    """Base class of a stage: networks + losses. Subclasses define the phases and their losses."""

    phases: tuple[str, ...] = ()
    streams: tuple[str, ...] = ()  # names of the batch streams a step consumes
    step: int = 0  # set by the loop before each step (for schedules)

    def phase_params(self, phase: str) -> list[nn.Parameter]:
        raise NotImplementedError

    def phase_lr(self, phase: str) -> float:
        raise NotImplementedError

    def phase_betas(self, phase: str) -> tuple[float, float]:
        return (0.9, 0.999)

    def phase_repeats(self, phase: str) -> int:
        """Optimizer updates of ``phase`` per step (an adversary may take several per encoder update)."""
        return 1

    # losses a step may legitimately not return (e.g. a term that needs labels some batches lack)
    conditional_losses: tuple[str, ...] = ()

    def loss_weights(self) -> dict[str, float]:
        """The weight of every loss the task can return (``loss/...``), for the current ``self.step``. The
        loop fails on a returned loss without a weight, and on a non-zero weight whose loss no phase of the
        first step returned (unless listed in ``conditional_losses``): a typo never silently weights 1 or 0."""
        return {}

    def begin_step(self, batch: dict[str, Any], device: torch.device) -> None:
        """Move the step's batches to the device and reset per-step caches."""
        self.batch = {k: to_device(v, device) for k, v in batch.items()}
        self.cache: dict[str, Any] = {}

    def losses(self, phase: str) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def validate(self, batches: dict[str, Any], device: torch.device) -> dict[str, float]:
        return {}


def fingerprint_of(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def make_optimizers(task: Task, cfg: LoopConfig) -> dict[str, torch.optim.Optimizer]:
    """One optimizer per phase. Weight decay applies to weight matrices and kernels (``dim() >= 2``) only,
    never to biases or normalisation scales and shifts (as nanoGPT's ``configure_optimizers``)."""
    opts = {}
    for phase in task.phases:
        params = [p for p in task.phase_params(phase) if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        opts[phase] = cls([g for g in groups if g["params"]], lr=task.phase_lr(phase), betas=task.phase_betas(phase))
    return opts


def weighted_total(task: Task, phase: str, out: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """The weighted sum of a phase's ``loss/...`` terms; a loss without a weight is an error."""
    missing = [k for k in out if k.startswith("loss/") and k not in weights]
    if missing:
        raise KeyError(f"{type(task).__name__}, phase {phase!r}: no weight for {missing} in loss_weights() "
                       f"(weighted: {sorted(weights)})")
    return sum(weights[k] * v for k, v in out.items() if k.startswith("loss/"))


def check_weights_used(task: Task, weights: dict[str, float], returned: set[str]) -> None:
    """After a step: every non-zero weight must belong to a loss some phase returned."""
    unused = [k for k, w in weights.items() if w and k not in returned and k not in task.conditional_losses]
    if unused:
        raise KeyError(f"{type(task).__name__}: loss_weights() weights {unused}, which no phase returned "
                       f"(returned: {sorted(k for k in returned if k.startswith('loss/'))})")


def train(
    task: Task,
    streams: dict[str, Stream],
    cfg: LoopConfig,
    device: torch.device,
    val_streams: dict[str, Callable[[], Any]] | None = None,
    callback: Callback | None = None,
) -> dict[str, float]:
    """Run ``cfg.steps`` steps of ``task``; returns the last validation metrics.

    ``callback(step, metrics)`` receives every logged and validation record. The checkpoint keeps them, and a
    resumed run replays them first, so the callback sees the same records as an uninterrupted run (DVC
    deletes a stage's live-metrics output before it reruns; the replay rebuilds it identically)."""
    task.to(device)
    if cfg.compile:
        for m in task.children():
            m.compile()
    opts = make_optimizers(task, cfg)
    fp = fingerprint_of(cfg.fingerprint)
    start, history = restore_state(cfg.checkpoint, cfg.seed, fp, task, opts, streams, device)
    D.broadcast_module(task)
    use_amp = cfg.amp and (device.type == "cuda" or cfg.amp_on_cpu)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext
    main = D.is_main()
    if main and callback:
        for done, metrics in history:
            callback(done, metrics)

    def record(done: int, metrics: dict[str, float]) -> None:
        history.append((done, {k: v if v is None else float(v) for k, v in metrics.items()}))
        if callback:
            callback(done, metrics)

    bar = tqdm(total=cfg.steps, initial=start, desc=type(task).__name__, unit="step", disable=None if main else True)
    meter = _Meter()
    val_metrics: dict[str, float] = {}
    task.train()
    for step in range(start, cfg.steps):
        t0 = time.perf_counter()
        batch = {name: s.next() for name, s in streams.items()}
        t1 = time.perf_counter()
        task.step = step
        weights = task.loss_weights()
        task.begin_step(batch, device)
        returned: set[str] = set()
        for phase in task.phases:
            out = _train_phase(task, phase, opts[phase], weights, cfg, autocast, step)
            meter.add(out)
            returned |= set(out)
        if step == start:
            check_weights_used(task, weights, returned)
        meter.tick(t1 - t0, time.perf_counter() - t0)
        done = step + 1
        bar.update()
        if done % cfg.log_every == 0 or done == cfg.steps:
            metrics = meter.flush(device)
            if main:
                log.info("step %d/%d %s", done, cfg.steps, " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
                record(done, metrics)
        if val_streams and (done % cfg.val_every == 0 or done == cfg.steps) and main:
            val_metrics = _validate(task, val_streams, device)
            log.info("step %d val %s", done, " ".join(f"{k}={v:.4g}" for k, v in val_metrics.items()))
            record(done, val_metrics)
        if cfg.checkpoint and (done % cfg.ckpt_every == 0 or done == cfg.steps) and main:
            save_state(cfg.checkpoint, done, fp, task, opts, streams, history, device)
    bar.close()
    if val_streams and not val_metrics and main:  # resumed a finished run: still report its metrics
        val_metrics = _validate(task, val_streams, device)
    return val_metrics


def _train_phase(task: Task, phase: str, opt: torch.optim.Optimizer, weights: dict[str, float], cfg: LoopConfig,
                 autocast: Callable[[], Any], step: int) -> dict[str, torch.Tensor]:
    """The phase's optimizer updates for this step (``phase_repeats``); returns the last update's outputs."""
    for _ in range(task.phase_repeats(phase)):
        opt.zero_grad(set_to_none=True)
        with autocast():
            out = task.losses(phase)
        total = weighted_total(task, phase, out, weights)
        _check_finite(total, out, step, phase)
        total.backward()
        params = [p for g in opt.param_groups for p in g["params"]]
        D.allreduce_grads(params)  # DDP: every rank steps on the mean gradient
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
    return out


def _check_finite(total: torch.Tensor, out: dict[str, torch.Tensor], step: int, phase: str) -> None:
    """Stop before a NaN / inf reaches the weights, naming the losses that went bad."""
    if not torch.isfinite(total):
        bad = {k: float(v.detach()) for k, v in out.items() if isinstance(v, torch.Tensor) and not torch.isfinite(v).all()}
        raise FloatingPointError(f"non-finite loss at step {step}, phase {phase}: {bad or float(total)}")


class _Meter:
    """Means of the logged outputs and of the step / data-wait times since the last flush."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.n, self.t_data, self.t_step = 0, 0.0, 0.0

    def add(self, out: dict[str, Any]) -> None:
        for k, v in out.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.detach() if isinstance(v, torch.Tensor) else v)

    def tick(self, data_s: float, step_s: float) -> None:
        self.n += 1
        self.t_data += data_s
        self.t_step += step_s

    def flush(self, device: torch.device) -> dict[str, float]:
        metrics = {f"train/{k}": v / self.n for k, v in self.sums.items()}
        metrics |= {"perf/step_s": self.t_step / self.n, "perf/data_s": self.t_data / self.n}
        if device.type == "cuda":
            metrics["perf/max_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
        self.__init__()
        return metrics


def _validate(task: Task, val_streams: dict[str, Callable[[], Any]], device: torch.device) -> dict[str, float]:
    """Validation in eval mode, on a forked RNG: creating its loaders draws from torch's global generator
    (DataLoader seeds), which training's dropout also uses, so without the fork ``val_every`` would
    change the trained weights."""
    task.eval()
    with torch.random.fork_rng(devices=[]):
        out = {f"val/{k}": v for k, v in task.validate({k: f() for k, f in val_streams.items()}, device).items()}
    task.train()
    return out
