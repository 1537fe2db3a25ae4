"""A generator row judged on the corpus and on a real photo: does a change that makes real lips move cost the
corpus? (issue 11: the concealed reference, ``model.gen_conceal``).

Each row trains the ``gen`` stage from ``models/disent.pt`` with params.yaml plus the row's overrides (``gen.*``
and ``model.*`` keys), then measures:

* the evaluation judges on the corpus test split, exactly as the eval stage does (LSE-C, offsets, mouth
  openness from the mouth-state regressor, mouth-box PSNR; ``models/judges.pt``, never a loss);
* a real photo (scikit-image's astronaut portrait, 512x512) saying eSpeak NG speech then 2 s of silence,
  through ``davs generate``'s Talker: dlib's inner-lip aperture per frame (its std on speech and on silence,
  its correlation with the speech envelope; ``benchmarks/inference_options.py``), and inside the aligned crop's
  mouth box G's attention mask and mean change (``benchmarks/mouth_mask.py``).

    python benchmarks/gen_photo.py --row "concealed, gen lr 1e-3:gen.lr=0.001,gen.d_lr=0.001"
    python benchmarks/gen_photo.py --row "default:"
Writes benchmarks/results/gen_photo.json (one entry per row) and each row's grid and photo video under
``--work``. Torch runs on ``--threads`` threads (1 for the committed rows). The committed rows trained in fp32,
before bf16 autocast on a CPU with AMX became the default: add ``gen.amp=false`` to a row to rerun it as measured.
Rows since record the CPU and whether it trained in bf16 (``cpu``, ``bf16_training``): rows compare within a machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

from davs.devices import cpu_has_bf16_units
from davs.face.align import cut
from davs.inference.talk import Talker, TalkOptions
from davs.media import iter_audio
from davs.provenance import environment
from pipeline.evaluate import _grid as grid
from pipeline.params import load_params

sys.path.insert(0, str(Path(__file__).parent))
from gen_ablation import train_and_score  # noqa: E402
from inference_options import photo_scores, speech_file  # noqa: E402
from mouth_mask import mouth_stats  # noqa: E402

OUT = Path(__file__).parent / "results" / "gen_photo.json"
KEYS = ["judge/lse_c_audio", "judge/lse_c_video", "judge/offset_zero_audio", "judge/mouth_open_corr_audio",
        "judge/mouth_open_corr_video", "judge/mouth_open_gain_audio", "judge/mouth_state_mae_audio",
        "quality/audio_psnr_mouth", "quality/video_psnr_mouth", "quality/copy_ref_psnr_mouth", "judge/lse_c_real"]


def run_row(overrides: dict, work: Path, dev: torch.device) -> dict:
    p = load_params()
    sections = {s: {k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith(s + ".")} for s in ("gen", "model")}
    unknown = [k for k in overrides if k.split(".", 1)[0] not in sections]
    if unknown:
        raise SystemExit(f"row keys must be gen.* or model.* (got {unknown})")
    p = p.model_copy(update={s: getattr(p, s).model_copy(update=u) for s, u in sections.items()})
    seconds, m, gen = train_and_score(p, work, dev)
    grid(gen, p.eval.grid_rows, work / "grid.png")
    from skimage import data as skdata

    t = Talker(work / "gen.pt", "cpu")
    photo = skdata.astronaut()
    crop = cut(photo, t._track([photo], "the photo")[0])
    with tempfile.TemporaryDirectory() as tmp:
        wav, speech_frames = speech_file(Path(tmp))
        words = t.audio_words(np.concatenate(list(iter_audio(wav, 16000))), speech_frames)
        box = mouth_stats(t, t._to_input(crop[None]), words[None])
        lips = photo_scores(work / "gen.pt", TalkOptions(), Path(tmp), wav, speech_frames)
        (Path(tmp) / "talk.mp4").replace(work / "astronaut.mp4")
    return {"overrides": overrides, "gen_s": round(seconds, 1), **{k: round(float(m[k]), 4) for k in KEYS},
            "photo_mouth_box": {k: round(v, 4) for k, v in box.items()}, **lips}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--row", action="append", required=True, metavar="NAME:KEY=VALUE,...",
                    help="a row: its name, then params overrides (values parsed as YAML)")
    ap.add_argument("--work", default=None, help="keep each row's model, grid and photo video here")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.row:
            name, _, kv = spec.partition(":")
            overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in kv.split(",") if item)}
            work = Path(args.work or tmp) / "".join(c if c.isalnum() else "_" for c in name)
            work.mkdir(parents=True, exist_ok=True)
            results[name] = {**run_row(overrides, work, torch.device("cpu")), "torch_threads": args.threads,
                             "cpu": environment()["cpu"], "bf16_training": cpu_has_bf16_units()}
            print(name, json.dumps(results[name]), flush=True)
            OUT.parent.mkdir(exist_ok=True)
            OUT.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
