"""Training throughput of one stage at a model preset on a device: the same tool for CPU and GPU figures.

    python benchmarks/train.py --stage joint --preset small --device cpu --steps 20
    python benchmarks/train.py --stage gen --preset davs --device cuda --batch-size 16 --workers 12 --compile

Runs the pipeline's own code (:func:`davs.training.runners.train_streams`, :func:`davs.training.loop.train`) for
``--warmup`` + ``--steps`` steps from a fresh initialisation (throughput does not depend on the weights) on
real shards: the pipeline's ``data/shards`` at the small preset's 64 px, or, at another image size, shards
ingested from the embedded corpus (``data/corpus``, from ``dvc repro synth``) into ``benchmarks/.cache``.
The loop logs every step; the warm-up steps (worker start-up, ``torch.compile``, cuDNN autotuning) are
left out of the figures. Writes one JSON row (appended to ``--out``, keyed by its settings):

* ``steps_per_s``, ``samples_per_s`` (LRW clips per second, all ranks), ``step_s`` (mean) and ``data_s``
  (mean time waiting for the loader), ``data_fraction`` = data_s / step_s;
* ``peak_mem_gb``: the GPU's peak allocated memory, or the process's peak RSS on CPU;
* with ``--profile``: the top operators of one profiled step and the fraction of self time in matmul /
  convolution kernels (``matmul_conv_fraction``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import resource
import time
from pathlib import Path

import torch
from common import PARAMS, ROOT, device_name, shards_for

from davs.config import DAVSConfig, LoopConfig
from davs.data.spec import model_config_for
from davs.devices import cpu_has_bf16_units
from davs.training import distributed as D
from davs.training.loop import train, weighted_total
from davs.training.runners import train_streams
from davs.training.tasks import DisentTask, GenTask, JointTask
from pipeline import stages as st
from pipeline.params import config

SMALL = DAVSConfig(**st.model_sizes(PARAMS), num_words=500, num_ids=1000)  # the pipeline's model (counts: the data's)
PRESETS = {"small": SMALL, "davs": DAVSConfig.davs_size(),  # ours; and the paper variant (model.variant: paper)
           "paper-small": dataclasses.replace(SMALL, variant="paper", window=6, gen_conceal=False, gen_context=0),
           "paper": DAVSConfig.davs_size(variant="paper")}
TASKS = {"joint": (JointTask, st.joint_hparams), "disent": (DisentTask, st.disent_hparams),
         "gen": (GenTask, st.gen_hparams)}
MATMUL_CONV = ("conv", "mm", "matmul", "linear", "gemm", "cudnn", "sm80", "sm90", "cutlass", "xmma")


def profile_step(task: torch.nn.Module, streams: dict, dev: torch.device, amp: bool) -> dict:
    """Self time per operator over one step of every phase (after the timed steps: warm)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    batch = {k: s.next() for k, s in streams.items()}
    ctx = torch.autocast(dev.type, dtype=torch.bfloat16) if amp else torch.autocast(dev.type, enabled=False)
    with profile(activities=acts) as prof:
        task.begin_step(batch, dev)
        weights = task.loss_weights()
        for phase in task.phases:
            with ctx:
                out = task.losses(phase)
            weighted_total(task, phase, out, weights).backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()
    key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    rows = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(e, key) for e in rows) or 1.0
    mc = sum(getattr(e, key) for e in rows if any(w in e.key.lower() for w in MATMUL_CONV))
    top = [{"op": e.key, "self_ms": round(getattr(e, key) / 1e3, 2), "share": round(getattr(e, key) / total, 3)}
           for e in rows[:15]]
    return {"matmul_conv_fraction": round(mc / total, 3), "top_ops": top, "clock": key}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stage", choices=list(TASKS), required=True)
    ap.add_argument("--preset", choices=list(PRESETS), default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="steps run first and not timed")
    ap.add_argument("--batch-size", type=int, default=8, help="LRW clips per step and rank")
    ap.add_argument("--id-batch-size", type=int, default=0, help="MS-Celeb faces per step (default: 2x batch)")
    ap.add_argument("--workers", type=int, default=1, help="loader worker processes per rank")
    ap.add_argument("--no-amp", action="store_true",
                    help="no bf16 autocast (used on CUDA and on a CPU with AMX, as the pipeline does)")
    ap.add_argument("--compile", action="store_true", help="torch.compile every network")
    ap.add_argument("--profile", action="store_true", help="also profile one step (torch.profiler)")
    ap.add_argument("--image-size", type=int, default=0, help="override the preset's face size")
    ap.add_argument("--shards", nargs=2, metavar=("LRW", "MSCELEB"), help="shard dirs to read (default: see above)")
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--cache", default="benchmarks/.cache")
    ap.add_argument("--out", default="benchmarks/results/train.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    rank, world, dev = D.init_distributed(args.device)
    preset = PRESETS[args.preset]
    if args.image_size:
        preset = dataclasses.replace(preset, image_size=args.image_size)
    lrw, celeb = (map(Path, args.shards) if args.shards
                  else shards_for(preset.image_size, ROOT / args.corpus, ROOT / args.cache))
    data = dataclasses.replace(st.data_spec(PARAMS, "joint"), lrw_dir=str(lrw), celeb_dir=str(celeb),
                               batch_size=args.batch_size, id_batch_size=args.id_batch_size or 2 * args.batch_size,
                               num_workers=args.workers)
    sizes = {k: v for k, v in preset.to_dict().items() if k not in ("num_words", "num_ids", "num_speakers")}
    cfg = model_config_for(data, **{**sizes, "mouth_box": tuple(sizes["mouth_box"])})
    torch.manual_seed(0)
    make_task, hparams = TASKS[args.stage]
    task = make_task(cfg, hparams(PARAMS))
    per_step: list[dict] = []
    loop = config(LoopConfig, PARAMS.joint, steps=args.warmup + args.steps, amp=not args.no_amp,
                  amp_on_cpu=cpu_has_bf16_units(), compile=args.compile, log_every=1, val_every=10**9, checkpoint=None)
    bf16 = loop.amp and (dev.type == "cuda" or loop.amp_on_cpu)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    streams = train_streams(task.streams, data, cfg.window)
    t0 = time.perf_counter()
    train(task, streams, loop, dev, callback=lambda step, m: per_step.append({"step": step, **m}))
    wall = time.perf_counter() - t0
    timed = [m for m in per_step if m["step"] > args.warmup]
    step_s = sum(m["perf/step_s"] for m in timed) / len(timed)
    data_s = sum(m["perf/data_s"] for m in timed) / len(timed)
    peak = (torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    row = {
        "stage": args.stage, "preset": args.preset, "image_size": cfg.image_size, "feat_dim": cfg.feat_dim,
        "width": cfg.width, "device": device_name(dev), "world_size": world, "batch_size": args.batch_size,
        "id_batch_size": data.id_batch_size, "workers": args.workers,
        "amp_bf16": bf16, "compile": args.compile,
        "steps_timed": len(timed), "step_s": round(step_s, 4), "data_s": round(data_s, 4),
        "data_fraction": round(data_s / step_s, 3), "steps_per_s": round(1 / step_s, 3),
        "samples_per_s": round(args.batch_size * world / step_s, 1),
        "peak_mem_gb": round(peak, 2), "peak_mem_kind": "cuda max_memory_allocated" if dev.type == "cuda" else "RSS",
        "parameters_m": round(sum(p.numel() for p in task.parameters()) / 1e6, 2), "wall_s": round(wall, 1),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    if args.profile:
        row["profile"] = profile_step(task, streams, dev, bf16)
    D.cleanup()
    if rank != 0:
        return
    out = Path(args.out) if Path(args.out).is_absolute() else ROOT / args.out
    rows = json.loads(out.read_text())["rows"] if out.exists() else []
    same = ("stage", "preset", "device", "world_size", "batch_size", "workers", "amp_bf16", "compile")
    rows = [r for r in rows if any(r.get(k) != row[k] for k in same)] + [row]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"note": "benchmarks/train.py; one run per row, figures over the timed steps",
                               "rows": rows}, indent=1) + "\n")
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
