"""Distributed helpers (torchvision-references style): one init, rank-0-only writes, gradient all-reduce.

Launch with ``torchrun --nproc_per_node N``; the backend is NCCL on GPUs and gloo on CPU. Gradients are
averaged explicitly after each phase's backward (:func:`allreduce_grads`) rather than by wrapping the
task in DDP: DAVS stages alternate several optimizers over different sub-networks within one step,
which DDP's single forward/backward contract does not express.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist

from davs.devices import resolve_device


def init_distributed(device: str = "auto") -> tuple[int, int, torch.device]:
    """(rank, world_size, device). Initialises the process group when launched by torchrun."""
    dev = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    if dev.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, dev


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def allreduce_grads(params: Iterable[torch.nn.Parameter]) -> None:
    """Average gradients over ranks (a no-op in a single process)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    i = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[i : i + n].view_as(g))
        i += n


def broadcast_module(module: torch.nn.Module) -> None:
    """Make every rank start from rank 0's weights and buffers."""
    if not dist.is_initialized():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, 0)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
