"""Speaker-free word features without speaker labels (issue 27): one row per change, on the embedded corpus.

Every row trains ``joint`` -> ``disent`` -> ``gen`` from scratch at the params' own budget and is scored as the
eval stage scores (``pipeline.evaluate.measure``): the speaker read from word features by the evaluation's linear
probes (fitted on val, scored on test, chance 1/10 of the probed speakers), word accuracy, the judges' LSE-C and
openness r, the cross-speaker mouth probe (``davs.cross_speaker``) and each stage's time. No row's training reads a
speaker label. Rows that share a stage's inputs share its run. Beside the rows, ``inputs``: the same probes on
the raw inputs (pooled MFCC with and without per-clip cepstral mean normalisation; the mouth box in colour and
grey, each frame standardised) and on the mouth's motion alone (the renderer's mouth states, pooled, and the pooled
features of a word reader that sees only them): what of the speaker the movement itself carries, with nothing of
the face's colours or the voice.

    python experiments/speaker_free.py                  # every row
    python experiments/speaker_free.py --rows default   # rows by the start of their name
    python experiments/speaker_free.py --work data/sf   # keep (and resume from) the stage runs

The params every row starts from: params.yaml as of commit ``PARAMS_REV`` (read from git), then the row's
overrides. Two rows are pipelines as committed, their metrics read from that commit's ``reports/metrics.json``:
``before`` (``BEFORE_REV``, an adversary trained on the corpus's speaker labels; the cross-speaker measure is
computed on its generator, read from this workspace's DVC cache, i.e. a workspace that ran that commit) and the
identity subspace removed at rank 24 (``RANK24_REV``: these params with ``model.identity_rank: 24``, which that
commit's pipeline measured cross-speaker itself; its seeds are that commit's ``reports/seeds.json``).

Rows come from different machines (a CPU with AMX trains in bf16, another in fp32): each row names its own
(``machine``). Writes experiments/results/speaker_free.json (rows already there are kept, a rerun one replaced).
Run from the repository root after ``dvc repro`` (it reads the shards and models/judges.pt).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from ablation import apply, base_params, train_row  # noqa: E402

from davs.checkpoint import load_checkpoint  # noqa: E402
from davs.cross_speaker import cross_speaker  # noqa: E402
from davs.data.spec import eval_loaders  # noqa: E402
from davs.models import load_nets  # noqa: E402
from davs.provenance import environment  # noqa: E402
from pipeline import paths  # noqa: E402
from pipeline.docs import machine  # noqa: E402
from pipeline.evaluate import measure  # noqa: E402
from pipeline.params import validate  # noqa: E402
from pipeline.stages import data_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "speaker_free.json"
PARAMS_REV = "5ce99a6"  # params.yaml of the commit these rows were measured on (before the adversary was the default)
RANK24_REV = "d1872b4"  # the pipeline with model.identity_rank: 24 (metrics of c299132, seeds added)
BEFORE_REV = "28f3e88b9ce6a807a6cf94135221487545803b23"  # the pipeline with the speaker-label adversary Cs_w
ADVERSARY = {"disent.clip_id_weight": 10.0, "disent.clip_id_ridge": 0.01, "disent.clip_id_clusters": 16}
AUGMENT = {"joint.aug_scale": 0.2, "joint.aug_shift": 0.06, "joint.aug_colour": 0.2, "joint.aug_warp": 0.1}
ROWS: dict[str, dict] = {
    "no speaker labels, nothing in their place": {},
    "label-free ridge adversary on 16 k-means pseudo-speakers (the default's adversary)": ADVERSARY,
    "the same adversary at weight 3": {**ADVERSARY, "disent.clip_id_weight": 3.0},
    "the adversary, then the identity subspace removed at rank 16": {**ADVERSARY, "model.identity_rank": 16},
    "the adversary, then the identity subspace removed at rank 12": {**ADVERSARY, "model.identity_rank": 12},
    "the adversary, the identity subspace removed at rank 12, then the encoders trained with G":
        {**ADVERSARY, "model.identity_rank": 12, "gen.train_encoders": True},
    "the adversary, the word encoders' inputs varied clip by clip": {**ADVERSARY, **AUGMENT},
    "the adversary, inputs varied clip by clip, then the identity subspace removed at rank 8":
        {**ADVERSARY, **AUGMENT, "model.identity_rank": 8},
    "the adversary, then the identity subspace removed at rank 12, keeping the motion":
        {**ADVERSARY, "model.identity_rank": 12, "disent.identity_form": "motion"},
    "the adversary, then the identity subspace removed at rank 8, keeping the motion":
        {**ADVERSARY, "model.identity_rank": 8, "disent.identity_form": "motion"},
    "the adversary, the identity subspace removed at rank 8 keeping the motion, then the encoders trained with G "
    "against the adversary": {**ADVERSARY, "model.identity_rank": 8, "disent.identity_form": "motion",
                              "gen.train_encoders": True, "gen.clip_id_weight": 10.0},
    "the same at weight 100": {**ADVERSARY, "model.identity_rank": 8, "disent.identity_form": "motion",
                               "gen.train_encoders": True, "gen.clip_id_weight": 100.0},
    "the adversary, then the identity subspace's slow part removed at rank 8, each frame keeping its movement":
        {**ADVERSARY, "model.identity_rank": 8, "disent.identity_form": "slow", "disent.identity_window": 12},
    "the adversary, frame sync's negatives from the clip's own frames only (one speaker's)":
        {**ADVERSARY, "joint.sync_negatives": "clip"},
    "the same, without the clip-level contrastive loss (its negatives are other speakers' clips)":
        {**ADVERSARY, "joint.sync_negatives": "clip", "joint.contrastive_weight": 0.0},
    "the adversary for three times the steps (disent.steps 600)": {**ADVERSARY, "disent.steps": 600},
    "the adversary's probe fitted on the last 16 steps' clips, not 64 (fresher features; ridge 1)":
        {**ADVERSARY, "disent.clip_id_memory": 16, "disent.clip_id_ridge": 1.0},
    "the adversary's probe fitted on the last 200 steps' clips (every step's)": {**ADVERSARY, "disent.clip_id_memory": 200},
}
RANK24 = "identity subspace removed, rank 24"
KEYS = ("leakage/identity_from_word_video", "leakage/identity_from_word_audio", "leakage/identity_from_word_msceleb",
        "leakage/word_from_identity", "word_acc/audio_top1", "word_acc/video_top1", "judge/lse_c_audio",
        "judge/lse_c_video", "judge/mouth_open_corr_audio", "judge/mouth_open_corr_video",
        "cross/mouth_is_target_video", "cross/mouth_is_driver_video", "cross/mouth_is_target_audio",
        "cross/mouth_is_driver_audio", "cross/mouth_probe_real", "cross/chance", "retrieval/r_at_10",
        "judge/mouth_open_gain_audio", "judge/mouth_open_gain_video", "quality/audio_sharpness_mouth",
        "time/joint_s", "time/disent_s", "time/gen_s")


def _show(rev: str, rel: str) -> str:
    return subprocess.run(["git", "show", f"{rev}:{rel}"], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def before_row(dev: torch.device) -> dict:
    """The ``BEFORE_REV`` pipeline: its committed metrics, and the cross-speaker measure on its generator."""
    show = lambda rel: _show(BEFORE_REV, rel)  # noqa: E731
    metrics = json.loads(show("reports/metrics.json"))
    lock = yaml.safe_load(show("dvc.lock"))
    md5 = next(o["md5"] for o in lock["stages"]["gen"]["outs"] if o["path"] == "models/gen.pt")
    cached = ROOT / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    if not cached.exists():
        raise SystemExit(f"the before row needs {BEFORE_REV[:7]}'s models/gen.pt in the DVC cache ({cached})")
    nets = load_nets(load_checkpoint(cached), ("Ev_w", "Ea_w", "Ep", "G"), dev)
    p = validate(base_params("params.yaml"), "params.yaml")
    data = replace(data_spec(p, "joint"), batch_size=p.eval.batch_size, id_batch_size=p.eval.batch_size)
    loaders = {s: eval_loaders(data, p.model.window, s, ("lrw",))["lrw"] for s in ("test", "val")}
    cross = cross_speaker(nets, loaders["test"], loaders["val"], tuple(p.data.mouth_box), dev, p.eval.probe_c)
    return {**{k: metrics[k] for k in KEYS if k in metrics}, **{f"cross/{k}": v for k, v in cross.items()}}


@torch.no_grad()
def input_probes(p) -> list[dict]:
    """The speaker and the word read by the eval's linear probes (fitted on val, scored on test) from the raw
    inputs, pooled over the word's frames: do normalised inputs still carry the speaker?"""
    from davs.evaluation import probe
    from davs.models.video_word_encoder import roi_slices
    from davs.tensors import masked_mean, to_images

    data = replace(data_spec(p, "joint"), batch_size=p.eval.batch_size)
    rows, cols = roi_slices(p.data.image_size, tuple(p.data.mouth_box))
    feats: dict[str, dict[str, list]] = {}
    for split in ("val", "test"):
        out: dict[str, list] = {k: [] for k in ("mfcc", "mfcc_cmn", "mouth_rgb", "mouth_grey_norm", "spk", "word")}
        for b in eval_loaders(data, p.model.window, split, ("lrw",))["lrw"]():
            m, mask = b["mfcc"].float().mean(2), b["mask"]  # (B, T, C): each frame's MFCC window, averaged
            out["mfcc"].append(masked_mean(m, mask))
            out["mfcc_cmn"].append(masked_mean(m - m.mean(1, keepdim=True), mask))  # per-clip cepstral mean removed
            roi = to_images(b["frames"])[..., rows, cols]  # (B, T, 3, h, w)
            rgb = torch.nn.functional.avg_pool2d(roi.flatten(0, 1), 2)  # (B*T, 3, h/2, w/2)
            out["mouth_rgb"].append(masked_mean(rgb.flatten(1).view(*roi.shape[:2], -1), mask))
            g = rgb.mean(1)  # (B*T, h/2, w/2) grey, each frame standardised
            g = (g - g.mean((1, 2), keepdim=True)) / g.std((1, 2), keepdim=True).clamp_min(1e-3)
            out["mouth_grey_norm"].append(masked_mean(g.flatten(1).view(*roi.shape[:2], -1), mask))
            out["spk"].append(b["speaker"])
            out["word"].append(b["label"])
        feats[split] = {k: torch.cat(v).numpy() for k, v in out.items()}
    v, t = feats["val"], feats["test"]
    return [{"input": k, "speaker": round(probe(v[k], v["spk"], t[k], t["spk"], p.eval.probe_c), 4),
             "word": round(probe(v[k], v["word"], t[k], t["word"], p.eval.probe_c), 4)}
            for k in ("mfcc", "mfcc_cmn", "mouth_rgb", "mouth_grey_norm")]


def motion_probes(p, seeds: int = 3, steps: int = 600) -> list[dict]:
    """What the mouth's motion alone says of the speaker: the same probes on the renderer's mouth states (open,
    width, round; nothing of the face's colours or the voice) pooled over the clip's frames, and on the pooled
    features of a word reader that sees only those states (a temporal CNN trained for the word on the training
    clips; mean over ``seeds``): what a word encoder that carried the movement and nothing else would give away."""
    from davs.data.lrw import list_clips
    from davs.evaluation import probe
    from davs.synth.corpus import read_mouth_states

    table = read_mouth_states(paths.mouth_states(p))
    spk = {f"{r.word}/{r.split}/{Path(r.path).name}": r.speaker for r in list_clips(paths.lrw_root(p))}  # clip -> speaker
    words = sorted({c.split("/")[0] for c in table})
    t0, t = p.data.frame_offset, p.data.num_frames
    split = {s: sorted(c for c in table if c.split("/")[1] == s) for s in ("train", "val", "test")}
    x = {s: torch.from_numpy(np.stack([table[c][t0:t0 + t] for c in cs])) for s, cs in split.items()}  # (N, T, 3)
    y = {s: torch.tensor([words.index(c.split("/")[0]) for c in cs]) for s, cs in split.items()}
    who = {s: np.array([spk[c] for c in cs]) for s, cs in split.items()}
    mu, sd = x["train"].mean((0, 1)), x["train"].std((0, 1))
    out = [{"input": "mouth_states", "speaker": probe(x["val"].mean(1).numpy(), who["val"], x["test"].mean(1).numpy(),
                                                        who["test"], p.eval.probe_c),
            "word": probe(x["val"].mean(1).numpy(), y["val"].numpy(), x["test"].mean(1).numpy(), y["test"].numpy(),
                          p.eval.probe_c)}]
    reads = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Conv1d(3, 64, 5, padding=2), torch.nn.ReLU(),
                                  torch.nn.Conv1d(64, 128, 5, padding=2), torch.nn.ReLU(),
                                  torch.nn.Conv1d(128, 128, 5, padding=2))
        head = torch.nn.Linear(128, len(words))
        opt = torch.optim.Adam([*net.parameters(), *head.parameters()], 1e-3)
        pooled = partial(_pool, net, mu, sd)
        g = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            i = torch.randint(len(x["train"]), (32,), generator=g)
            loss = torch.nn.functional.cross_entropy(head(pooled(x["train"][i])), y["train"][i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            fv, ft = pooled(x["val"]).numpy(), pooled(x["test"]).numpy()
        reads.append((probe(fv, who["val"], ft, who["test"], p.eval.probe_c),
                      probe(fv, y["val"].numpy(), ft, y["test"].numpy(), p.eval.probe_c)))
    out.append({"input": f"mouth_states_reader ({seeds} seeds)", "speaker": float(np.mean([r[0] for r in reads])),
                "word": float(np.mean([r[1] for r in reads]))})
    return [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in out]


def _pool(net: torch.nn.Module, mu: torch.Tensor, sd: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """(N, T, 3) mouth states -> (N, C): the reader's features, standardised input, pooled over time."""
    return net(((states - mu) / sd).transpose(1, 2)).mean(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", nargs="*", default=["before", *ROWS, RANK24], help="rows by the start of their name")
    ap.add_argument("--work", default=None, help="keep the stage runs here (default: a temporary directory)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(os.cpu_count() or 1)
    dev = torch.device("cpu")
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    here = machine(environment())
    rows = {}  # by (row, machine): a row measured on two machines is two rows; a file without per-row machines
    # was measured on one, its "environment"
    for r in results.get("rows", []):
        r = r if "machine" in r else {"row": r["row"], "machine": machine(results["environment"]), **r}
        rows[r["row"], r["machine"]] = r
    base = base_params(f"{PARAMS_REV}:params.yaml")
    commit = subprocess.run(["git", "rev-parse", PARAMS_REV], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    base_p = validate(base, f"{PARAMS_REV}:params.yaml")
    inputs = input_probes(base_p) + motion_probes(base_p)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for start in args.rows:
            if start == "before":
                name, run = f"before: adversary on the corpus's speaker labels ({BEFORE_REV[:7]})", before_row(dev)
            elif RANK24.startswith(start):
                metrics = json.loads(_show(RANK24_REV, "reports/metrics.json"))
                name, run = f"{RANK24} ({RANK24_REV})", {k: metrics[k] for k in KEYS if k in metrics}
            else:
                hits = [n for n in ROWS if n.startswith(start)]
                if len(hits) != 1:
                    raise SystemExit(f"--rows {start!r}: matches {hits or 'no row'} (rows: before, {list(ROWS)})")
                name = hits[0]
                p, files, seconds = train_row(apply(base, ROWS[name]), work, dev)
                m, _, _, _ = measure(p, dev, files)
                run = {**{k: m[k] for k in KEYS if k in m}, **seconds}
            rev = RANK24_REV if RANK24 in name else BEFORE_REV if start == "before" else None  # a committed pipeline's
            where = machine(json.loads(_show(rev, "reports/environment.json"))) if rev else here
            record(rows, name, run, where, json.dumps(ROWS.get(name, {"model.identity_rank": 24} if RANK24 in name else {})))
            write(out, inputs, commit, rows)


def record(rows: dict[tuple[str, str], dict], name: str, run: dict, where: str, overrides: str) -> None:
    rows[name, where] = {"row": name, "machine": where,
                         **{k.split("/", 1)[1]: round(float(v), 4) for k, v in run.items()}, "overrides": overrides}
    print(json.dumps(rows[name, where]), flush=True)


def write(out: Path, inputs: list[dict], commit: str, rows: dict[tuple[str, str], dict]) -> None:
    results = {"inputs": inputs, "note": "One run per row (seed 0), on the row's machine. Leakage: the speaker read from "
                                         "pooled word features by the eval's linear probes (chance 0.1 over the probed "
                                         "speakers); cross: the share of generated mouth frames a probe fitted on real "
                                         "val mouths calls the target (A) or the driver (B). Inputs: this machine.",
               "commit": commit, "rows": list(rows.values())}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
