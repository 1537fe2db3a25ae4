"""How well per-frame word features say what the mouth does: a ridge probe of mouth opening.

Mouth opening per frame is measured from the pixels: the fraction of the mouth box that is the dark
mouth interior of the embedded corpus's faces. A ridge regression from per-frame audio (Ea_w) and
video (Ev_w) word features to it is fitted on the val split and scored (R², correlation) on test.
This is the diagnostic behind ``joint.frame_sync_weight`` (see the README's training choices).

    python benchmarks/mouth_probe.py --model models/joint.pt [--model models/disent.pt ...]
Writes benchmarks/results/mouth_probe.json. Embedded corpus only (the darkness threshold is its palette).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import Ridge

from davs.checkpoint import load_model
from davs.data.spec import eval_loaders
from davs.models import load_nets
from davs.models.video_word_encoder import roi_slices
from davs.tensors import to_images
from pipeline.params import load_params
from pipeline.stages import data_spec, model_config


def collect(nets: dict, loader, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a_all, v_all, y_all = [], [], []
    with torch.no_grad():
        for b in loader:
            roi = b["frames"][:, :, rows, cols].int()  # (B, T, h, w, 3) uint8 -> int
            dark = ((roi[..., 0] < 130) & (roi[..., 1] < 60) & (roi[..., 2] < 70)).float().mean((2, 3))  # (B, T)
            frames = to_images(b["frames"])
            a_all.append(nets["Ea_w"](b["mfcc"]).flatten(0, 1))  # (B*T, D)
            v_all.append(nets["Ev_w"](frames).flatten(0, 1))
            y_all.append(dark.flatten())
    return tuple(torch.cat(x).numpy() for x in (a_all, v_all, y_all))  # type: ignore[return-value]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", default=None, help="stage model file(s); default models/joint.pt")
    ap.add_argument("--out", default="benchmarks/results/mouth_probe.json")
    args = ap.parse_args()
    p = load_params()
    cfg = model_config(p)
    rows, cols = roi_slices(p.data.image_size, tuple(p.data.mouth_box))
    data = data_spec(p, "gen")
    results = {}
    for path in args.model or ["models/joint.pt"]:
        nets = load_nets(load_model(path), None, torch.device("cpu"))
        fit = collect(nets, eval_loaders(data, cfg.window, "val", ("lrw",))["lrw"](), rows, cols)
        ev = collect(nets, eval_loaders(data, cfg.window, "test", ("lrw",))["lrw"](), rows, cols)
        res = {}
        for name, i in (("audio", 0), ("video", 1)):
            pred = Ridge(alpha=1.0).fit(fit[i], fit[2]).predict(ev[i])
            r2 = 1 - ((pred - ev[2]) ** 2).sum() / ((ev[2] - ev[2].mean()) ** 2).sum()
            res[name] = {"r2": round(float(r2), 3), "corr": round(float(np.corrcoef(pred, ev[2])[0, 1]), 3)}
        results[path] = res
        print(path, json.dumps(res))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"frames": "val fit, test scored", "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
