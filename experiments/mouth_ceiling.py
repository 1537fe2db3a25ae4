"""The mouth PSNR that a generator taking the head pose from its reference can reach (issue 11's "+2 dB").

DAVS (and this implementation) draws every frame over one reference frame: the head pose of the output is
the reference's. The corpus's heads move (a smooth per-clip path of up to 4 degrees and 4 px on the 256
canvas, :class:`davs.synth.face.Scene`), and nothing in the audio says where the head is at frame t. So the
mouth-box PSNR against the ground truth has a ceiling that no audio-driven generator of this design passes.

This script measures it. Every test clip of the embedded corpus is rendered again by the corpus's own code
(:func:`davs.synth.corpus.render_clip`, same seeds: the ``true pose`` row checks that the re-rendering matches
the mp4 up to the codec), and each frame t is drawn

* ``true pose``: with frame t's mouth at frame t's pose: the codec's noise, the ceiling of any generator;
* ``reference pose``: with frame t's **true** mouth state at the reference frame's pose: a perfect mouth
  drawn where the reference's head is, the best sharp output of a pose-frozen generator;
* ``reference pose, averaged``: the mean of frame t's true mouth drawn at every pose the clip's head takes
  (the MSE-optimal blur for a generator that knew the clip's whole pose path but not where in it frame t is;
  more than G knows, so a generous ceiling);
* ``reference pose, blur s``: the ``reference pose`` frames under a Gaussian blur of s px (on the 64 px
  crop): a perfect mouth hedged against the unknown head motion as a pose-frozen generator could hedge it,
  with one blur for every clip and frame, for s in ``--blur``;
* ``reference, copied``: the reference frame itself (the eval's copy-the-reference baseline, from the shards);
* ``generated``: the committed generator's audio- and video-driven frames (``models/``), as the eval stage makes them.

Each row is scored as ``davs eval`` scores (:func:`davs.evaluation.image_quality`: per-frame PSNR on the face
and on the mouth box of the 64 px crops, against the test shards' frames 1.., the reference being frame 0), and
its mouth PSNR also against the ``reference pose`` frames: the true mouth where the reference's head is, so
head motion is left out and the mouth alone is judged.

    python experiments/mouth_ceiling.py            # after dvc repro (reads data/shards, data/corpus, models/)

The params it pins: the pipeline's own, ``--params`` (params.yaml; measured on it as of commit e31f75b), and
the data and models ``dvc repro`` makes from them. The re-rendered rows are deterministic; the generated rows
depend on the CPU that ran ``dvc repro`` (bf16 on a CPU with AMX, fp32 elsewhere), which the JSON records.

Writes experiments/results/mouth_ceiling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

import davs.synth.corpus as corpus
from davs.checkpoint import load_model
from davs.data.lrw import crop_resize
from davs.data.spec import eval_loaders
from davs.evaluation import generate_test, image_quality
from davs.models import load_nets
from davs.provenance import environment
from davs.resources import lrw_words
from davs.synth.corpus import FPS, NUM_FRAMES, choose_words, clip_jobs, render_clip
from pipeline import paths
from pipeline.params import load_params
from pipeline.stages import corpus_spec, data_spec

OUT = Path(__file__).parent / "results" / "mouth_ceiling.json"


def rerender(job: corpus.ClipJob, spec: corpus.CorpusSpec, ref_frame: int, crop: tuple[int, int, int], size: int,
             n_poses: int) -> dict[str, np.ndarray]:
    """One clip drawn again: {row: (29, size, size, 3) uint8} (see the module docstring)."""
    got: dict = {}

    class Capture(corpus.FaceRenderer):
        def __init__(self, *a, **k) -> None:
            super().__init__(*a, **k)
            got["renderer"] = self

    def capture_mp4(path, frames, **_):
        got["frames"] = frames

    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(corpus, "FaceRenderer", Capture), \
            mock.patch.object(corpus, "write_mp4", capture_mp4):
        job = corpus.ClipJob(job.word, job.split, job.index, job.speaker, str(Path(tmp) / "clip.mp4"))
        track = render_clip(job, spec)["mouth"]  # (29, 3)
    r, times = got["renderer"], (np.arange(NUM_FRAMES) + 0.5) / FPS
    poses = times[np.linspace(0, NUM_FRAMES - 1, n_poses).round().astype(int)]
    out = {"true pose": got["frames"],
           "reference pose": np.stack([r.frame(tuple(m), times[ref_frame]) for m in track])}
    avg = np.stack([np.mean([r.frame(tuple(m), t).astype(np.float32) for t in poses], 0) for m in track])
    out["reference pose, averaged"] = np.clip(avg.round(), 0, 255).astype(np.uint8)
    return {k: crop_resize(v, crop, size) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--poses", type=int, default=8, help="poses averaged in the 'averaged' row")
    ap.add_argument("--blur", type=float, nargs="*", default=[0.5, 0.75, 1.0],
                    help="Gaussian blurs (px of the crop) of the 'reference pose' row to score")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    p = load_params(args.params)
    if p.data.lrw_root:
        raise SystemExit("the ceiling re-renders the embedded corpus: data.lrw_root must be empty")
    torch.manual_seed(p.seed)
    spec = corpus_spec(p)
    jobs = {f"{j.word}_{j.split}_{j.index:05d}": j for j in clip_jobs(Path("."), choose_words(lrw_words(), spec), spec)}
    data = data_spec(p, "joint")
    data = replace(data, batch_size=p.eval.batch_size)
    nets = load_nets(load_model(paths.model_file("disent")), None) | load_nets(load_model(paths.model_file("gen")), ("G",))
    gen = generate_test(nets, eval_loaders(data, p.model.window, "test", ("lrw",))["lrw"](), torch.device("cpu"))
    off, crop, size, t = p.data.frame_offset, tuple(p.data.crop_box), p.data.image_size, gen.gt.shape[1]
    oracle: dict[str, list[np.ndarray]] = {}
    for key in tqdm(gen.keys, desc="re-render test clips", unit="clip"):
        for name, v in rerender(jobs[key], spec, off, crop, size, args.poses).items():
            oracle.setdefault(name, []).append(v[off : off + t])
    rows = {name: np.stack(v) for name, v in oracle.items()}  # (N, T, H, W, 3) each
    for sigma in args.blur:  # over H and W only
        blurred = gaussian_filter(rows["reference pose"].astype(np.float32), sigma=(0, 0, sigma, sigma, 0))
        rows[f"reference pose, blur {sigma:g}"] = np.clip(blurred.round(), 0, 255).astype(np.uint8)
    rows |= {"reference, copied": np.repeat(gen.ref[:, None], t, 1), "generated, audio-driven": gen.audio,
             "generated, video-driven": gen.video}
    flat = lambda x: x[:, 1:].reshape(-1, *x.shape[2:])  # noqa: E731 - as eval: frames 1.. (frame 0 is the reference)
    box = tuple(p.data.mouth_box)
    result = {}
    for name, v in rows.items():
        q = image_quality(flat(v), flat(gen.gt), box)
        # the same prediction against the truth drawn at the reference's pose: the mouth alone, head motion left out
        q_ref = image_quality(flat(v), flat(rows["reference pose"]), box)
        result[name] = {**{k: round(x, 3) for k, x in q.items()},
                        "psnr_mouth_vs_reference_pose_truth": round(q_ref["psnr_mouth"], 3)}
        print(f"{name:28s} " + "  ".join(f"{k} {x:.3f}" for k, x in result[name].items()), flush=True)
    copy = result["reference, copied"]["psnr_mouth"]
    out = {"note": "experiments/mouth_ceiling.py; test split of the embedded corpus, models/ of this machine's "
                   "dvc repro, one run (deterministic); scored as the eval stage scores (frames 1.., mouth box of "
                   "the 64 px crop)", "cpu": environment()["cpu"],
           "clips": int(gen.gt.shape[0]), "frames_per_clip": int(t), "rows": result,
           "target_psnr_mouth": round(copy + 2.0, 3),
           "psnr_mouth_minus_copy_db": {k: round(v["psnr_mouth"] - copy, 3) for k, v in result.items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
