"""Why a real photo's lips barely move: how much of the mouth box G copies from the reference.

G blends its rendering with the reference through an attention mask (1 = copy the reference). For every
corpus test clip (reference = its first frame, words = its own audio) and for a real photo (scikit-image's
astronaut, aligned on dlib landmarks, saying the eSpeak NG speech of ``inference_options.py``), this reports inside the mouth box: the mean
mask, the mean |generated - reference| (images in [-1, 1]) and its std over frames (how much the mouth
moves).

    python benchmarks/mouth_mask.py            # after dvc repro
Writes benchmarks/results/mouth_mask.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from davs.data.spec import eval_loaders
from davs.face.align import cut
from davs.inference import Talker
from davs.models import generate_frames
from davs.tensors import box_slices, to_images
from pipeline import paths
from pipeline.params import load_params
from pipeline.stages import data_spec

sys.path.insert(0, str(Path(__file__).parent))
from inference_options import speech_file  # noqa: E402

OUT = Path(__file__).parent / "results" / "mouth_mask.json"


@torch.no_grad()
def mouth_stats(t: Talker, ref: torch.Tensor, words: torch.Tensor) -> dict[str, float]:
    """ref (B, 3, S, S), words (B, T, D) -> the mouth box's mean mask, mean change and its std over frames."""
    out, mask = generate_frames(t.nets["Ep"], t.nets["G"], ref, words, return_mask=True)  # (B, T, C, S, S)
    rows, cols = box_slices(ref.shape[-2], ref.shape[-1], t.cfg.mouth_box)
    change = (out - ref[:, None]).abs()[..., rows, cols].mean((2, 3, 4))  # (B, T)
    return {"mask_mean": float(mask[..., rows, cols].mean()), "change_mean": float(change.mean()),
            "change_std_over_frames": float(change.std(1).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    torch.manual_seed(0)
    p = load_params(args.params)
    t = Talker(paths.model_file("gen"), "cpu")
    data = data_spec(p, "joint")
    data = type(data)(**{**data.__dict__, "batch_size": p.eval.batch_size})
    rows = []
    for b in eval_loaders(data, p.model.window, "test", ("lrw",))["lrw"]():
        frames = to_images(b["frames"])  # (B, T, 3, S, S)
        with torch.no_grad():
            words = t.nets["Ea_w"](b["mfcc"])  # (B, T, D)
        rows.append((len(frames), mouth_stats(t, frames[:, 0], words)))
    n = sum(k for k, _ in rows)
    corpus = {key: sum(k * r[key] for k, r in rows) / n for key in rows[0][1]}

    from skimage import data as skdata

    from davs.media import iter_audio

    photo = skdata.astronaut()
    crop = cut(photo, t._track([photo], "the photo")[0])
    with tempfile.TemporaryDirectory() as tmp:  # the speech of benchmarks/inference_options.py, decoded as davs generate does
        wav, speech_frames = speech_file(Path(tmp))
        audio = np.concatenate(list(iter_audio(wav, 16000)))
    words = t.audio_words(audio, speech_frames)  # the speech only, not the silence after it
    real = mouth_stats(t, t._to_input(crop[None]), words[None])
    res = {"corpus_test_clips": n, "corpus": {k: round(v, 4) for k, v in corpus.items()},
           "astronaut": {k: round(v, 4) for k, v in real.items()}}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
