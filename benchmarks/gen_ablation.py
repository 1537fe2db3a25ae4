"""Generator ablation: train the ``gen`` stage once per row of gen-param overrides (everything else as in
params.yaml, the same frozen encoders from models/disent.pt) and score each generator with the
evaluation judges (models/judges.pt) and the image metrics on the test split.

    python benchmarks/gen_ablation.py                      # every row below
    python benchmarks/gen_ablation.py --rows base lip      # some rows
    python benchmarks/gen_ablation.py --rows --row "gan x10:gan_weight=0.1"   # a new row (on BASE)
Writes reports/gen_ablation.json and reports/gen_ablation.md (one row per change: the judges' figures
and the gen-stage time) and a frame grid per row in reports/gen_ablation/. Run after `dvc repro` (it needs the shards, models/disent.pt, models/judges.pt).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import torch
import yaml

from davs.checkpoint import load_model
from davs.data.spec import eval_loaders
from davs.models import load_nets
from davs.training.runners import run_gen
from pipeline import paths
from pipeline.evaluate import _grid as grid
from pipeline.evaluate import evaluate_generator
from pipeline.params import load_params
from pipeline.stages import data_spec, gen_hparams, loop_config, model_config

# name -> gen-param overrides, applied on top of the paper-style baseline: L1 + temporal GAN only, 300 steps
# (the rows of reports/gen_ablation.md, in order)
BASE = {"lip_weight": 0.0, "mask_weight": 0.0, "sync_gan_weight": 0.0, "steps": 300}
LONG = {"steps": 900}
ROWS: dict[str, dict] = {
    "base": {},
    "lip": {"lip_weight": 1.0},
    "lip 0.2": {"lip_weight": 0.2},
    "lip 0.2+mask": {"lip_weight": 0.2, "mask_weight": 0.1},
    "base, 900 steps": LONG,
    "lip 0.2+mask, 900 steps": {**LONG, "lip_weight": 0.2, "mask_weight": 0.1},
    "sync_gan 0.05, 900 steps": {**LONG, "sync_gan_weight": 0.05},
    "sync_gan 0.05, open refs 50%, 900 steps": {**LONG, "sync_gan_weight": 0.05, "rest_ref_prob": 0.5},
    "sync_gan 0.05+lip 0.2, 900 steps": {**LONG, "sync_gan_weight": 0.05, "lip_weight": 0.2},
    "900 steps, mouth head 0.05, mouth L1 x8": {**LONG, "sync_gan_weight": 0.05, "mouth_weight": 8.0},
}
KEYS = ["judge/lse_c_audio", "judge/lse_c_video", "judge/offset_zero_audio", "judge/mouth_open_corr_audio",
        "judge/mouth_open_corr_video", "judge/mouth_open_gain_audio", "judge/mouth_open_gain_video",
        "judge/mouth_state_mae_audio", "judge/ref_mouth_leak", "quality/audio_psnr_mouth", "quality/video_psnr_mouth", "quality/audio_ssim"]
REFS = ["judge/lse_c_real", "judge/lse_c_shuffled_audio", "judge/lse_c_copy_ref", "judge/mouth_open_corr_real",
        "judge/mouth_open_gain_real", "judge/mouth_open_corr_copy_ref", "quality/copy_ref_psnr_mouth"]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def train_and_score(p, work: Path, dev: torch.device) -> tuple[float, dict, object]:  # noqa: ANN001
    """Train ``gen`` with params ``p`` from the committed ``models/disent.pt`` into ``work`` (resuming from
    ``work/last.pt``; skipped when ``work/gen.pt`` exists), then score it as the eval stage does on the test
    split: (training seconds, the eval's generator metrics, the generated test frames)."""
    cfg = model_config(p)
    loop = loop_config(p, "gen")
    loop = type(loop)(**{**loop.__dict__, "checkpoint": str(work / "last.pt"), "val_every": p.gen.steps + 1})
    t0 = time.perf_counter()
    if not (work / "gen.pt").exists():
        run_gen(data_spec(p, "gen"), cfg, loop, gen_hparams(p), paths.model_file("disent"), work / "gen.pt", dev)
    seconds = time.perf_counter() - t0
    # the encoders as committed (a row may change G's config, never theirs); G as this row trained it
    nets = load_nets(load_model(paths.model_file("disent"), device=dev), None, dev) | \
        load_nets(load_model(work / "gen.pt", cfg, dev), ("G",), dev)
    test = eval_loaders(data_spec(p, "joint"), cfg.window, "test", ("lrw",))
    m, gen = evaluate_generator(p, nets, test["lrw"], dev)
    return seconds, m, gen


def run_row(p, name: str, overrides: dict, work: Path, dev: torch.device, figures: Path) -> dict:  # noqa: ANN001
    p = p.model_copy(update={"gen": p.gen.model_copy(update={**BASE, **overrides})})
    seconds, m, gen = train_and_score(p, work, dev)
    grid(gen, p.eval.grid_rows, figures / f"{slug(name)}.png")
    return {"overrides": overrides, "gen_seconds": round(seconds, 1), **{k: round(v, 4) for k, v in m.items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", nargs="*", default=list(ROWS))
    ap.add_argument("--row", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                    help="an extra row, e.g. 'lip 0.3:lip_weight=0.3' (values parsed as YAML)")
    ap.add_argument("--out", default="reports/gen_ablation")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(os.cpu_count() or 1)
    p = load_params()
    dev = torch.device("cpu")
    out = Path(args.out)
    results = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {}
    rows = {name: ROWS[name] for name in args.rows}
    for spec in args.row:
        name, _, kv = spec.partition(":")
        rows[name] = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in kv.split(",") if item)}
    for name, overrides in rows.items():
        with tempfile.TemporaryDirectory() as d:
            results[name] = run_row(p, name, overrides, Path(d), dev, out.parent / out.name)
        print(name, json.dumps({k: results[name].get(k) for k in ["gen_seconds", *KEYS]}), flush=True)
        out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    write_table(results, out.with_suffix(".md"))


def write_table(results: dict, path: Path) -> None:
    short = lambda k: k.split("/", 1)[1]  # noqa: E731
    lines = ["| change | gen s | " + " | ".join(short(k) for k in KEYS) + " |",
             "| --- | --- | " + " | ".join("---" for _ in KEYS) + " |"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['gen_seconds']} | " + " | ".join(f"{r.get(k, float('nan')):.3f}" for k in KEYS) + " |")
    first = next(iter(results.values()))
    refs = ", ".join(f"{short(k)} {first.get(k, float('nan')):.3f}" for k in REFS)
    path.write_text("# Generator ablation (test split, one run each, seed from params.yaml)\n\n"
                    "Rows change gen params from L1 + temporal GAN only; every row trains `gen` from the same "
                    "`models/disent.pt` and is scored by the same judges (`models/judges.pt`).\n\n"
                    + "\n".join(lines) + f"\n\nReferences (real video / shuffled audio / copy-the-reference): {refs}\n")


if __name__ == "__main__":
    main()
