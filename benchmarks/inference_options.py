"""The official DAVS's inference options, measured: test-time fine-tuning of Ep + G on the reference face
(``davs generate --finetune-steps``) and scaled word features (``--word-scale``).

Two measurements per row of options, both with judges no training step ever sees:

* **Corpus test split** (``models/gen.pt``, ``models/judges.pt``): every test clip regenerated from its
  first frame, audio- and video-driven, each clip fine-tuned on its own reference (the weights restored
  between clips); the evaluation judges' LSE-C and mouth openness (correlation, gain) and the mouth PSNR.
* **A real photo** (scikit-image's astronaut portrait, 512x512) saying eSpeak NG speech followed by 2 s of
  silence, through ``Talker.generate`` as ``davs generate`` runs it. The output mp4 is decoded and dlib's 68
  landmarks (the same model the aligner uses) give the inner-lip aperture over the eye distance per frame:
  its std on speech and on silence, and its correlation with the speech envelope (frame RMS, dB).

    python benchmarks/inference_options.py            # after dvc repro
Writes benchmarks/results/inference_options.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from davs import evaluation as E
from davs.checkpoint import load_model
from davs.data.spec import eval_loaders
from davs.inference.finetune import finetune, restore, snapshot
from davs.inference.talk import Talker, TalkOptions
from davs.judges.data import load_clips
from davs.judges.scores import judge_videos
from davs.judges.train import load_judges
from davs.models import generate_frames, load_nets
from davs.tensors import to_images, to_uint8
from pipeline import paths
from pipeline.params import load_params
from pipeline.stages import data_spec

OUT = Path(__file__).parent / "results" / "inference_options.json"
ROWS: dict[str, TalkOptions] = {
    "none (default)": TalkOptions(),
    "word x1.5": TalkOptions(word_scale=1.5),
    "word x0.8": TalkOptions(word_scale=0.8),
    "fine-tune 5": TalkOptions(finetune_steps=5),
    "fine-tune 5 + word x1.5 (official, audio)": TalkOptions(finetune_steps=5, word_scale=1.5),
}


def corpus_scores(p, model: dict, judges, opt: TalkOptions, dev: torch.device) -> dict[str, float]:  # noqa: ANN001
    """Judges' figures for the test split regenerated with ``opt``."""
    nets = load_nets(model, ("Ev_w", "Ea_w", "Ep", "G"), dev)
    box = tuple(p.data.mouth_box)
    gts, auds, vids, keys = [], [], [], []
    data = data_spec(p, "joint")
    data = type(data)(**{**data.__dict__, "batch_size": p.eval.batch_size})
    for b in eval_loaders(data, p.model.window, "test", ("lrw",))["lrw"]():
        frames = to_images(b["frames"].to(dev))  # (B, T, 3, H, W)
        with torch.no_grad():
            a, v = nets["Ea_w"](b["mfcc"].to(dev)), nets["Ev_w"](frames)  # (B, T, D)
        for i in range(len(frames)):
            ref = frames[i : i + 1, 0]  # (1, 3, H, W)
            saved = snapshot(nets["Ep"], nets["G"])
            finetune(nets["Ep"], nets["G"], ref, a[i : i + 1, 0], box, opt.finetune_steps, opt.finetune_lr,
                     opt.finetune_mouth_weight)
            with torch.no_grad():
                auds.append(to_uint8(generate_frames(nets["Ep"], nets["G"], ref, a[i : i + 1] * opt.word_scale)).numpy())
                vids.append(to_uint8(generate_frames(nets["Ep"], nets["G"], ref, v[i : i + 1] * opt.word_scale)).numpy())
            restore((nets["Ep"], nets["G"]), saved)
        gts.append(to_uint8(frames).numpy())
        keys += b["key"]
    gt, audio, video = np.concatenate(gts), np.concatenate(auds), np.concatenate(vids)
    clips = load_clips(paths.lrw_shards(p), "test", p.data.image_size, box, 0, paths.mouth_states(p))
    assert clips.keys == keys
    j = judge_videos(judges, {"audio": audio, "video": video}, clips.mfcc, p.data.frame_offset, clips.states,
                     shuffled=None)
    flat = lambda x: x[:, 1:].reshape(-1, *x.shape[2:])  # noqa: E731 - (N, T, ...) -> (N*(T-1), ...)
    q = {f"{k}_psnr_mouth": E.image_quality(flat(x), flat(gt), box)["psnr_mouth"] for k, x in (("audio", audio), ("video", video))}
    keep = ["lse_c_audio", "lse_c_video", "mouth_open_corr_audio", "mouth_open_corr_video", "mouth_open_gain_audio",
            "mouth_open_gain_video"]
    return {k: round(j[k], 4) for k in keep if k in j} | {k: round(v, 3) for k, v in q.items()}


def speech_file(work: Path) -> tuple[Path, int]:
    """eSpeak NG speech then 2 s of silence, as a wav; returns it and the speech's frame count."""
    import av

    from davs.synth.espeak import synthesize

    s = synthesize("Please call Stella. Ask her to bring these things with her from the store: six spoons of "
                   "fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother Bob.")
    sr = s.sample_rate
    speech_frames = int(len(s.samples) / sr * 25)
    x = np.concatenate([s.samples, np.zeros(2 * sr, np.int16)])
    path = work / "speech.wav"
    with av.open(str(path), "w") as c:
        st = c.add_stream("pcm_s16le", rate=sr, layout="mono")
        frame = av.AudioFrame.from_ndarray(x[None], format="s16", layout="mono")
        frame.sample_rate = sr
        for pkt in st.encode(frame):
            c.mux(pkt)
        for pkt in st.encode(None):
            c.mux(pkt)
    return path, speech_frames


def lip_apertures(mp4: Path) -> np.ndarray:
    """Per frame: dlib inner-lip aperture (mean of the three inner-lip gaps) over the eye distance."""
    import dlib
    import face_recognition_models

    from davs.media import iter_video

    det = dlib.get_frontal_face_detector()
    pred = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    out = []
    for f in iter_video(mp4):
        rects = det(np.ascontiguousarray(f), 1)
        if not rects:
            out.append(np.nan)
            continue
        pts = np.array([(q.x, q.y) for q in pred(np.ascontiguousarray(f), max(rects, key=lambda r: r.area())).parts()], float)
        gap = np.linalg.norm(pts[[61, 62, 63]] - pts[[67, 66, 65]], axis=1).mean()
        eyes = np.linalg.norm(pts[36:42].mean(0) - pts[42:48].mean(0))
        out.append(gap / eyes)
    return np.array(out)


def envelope(wav: Path, n: int) -> np.ndarray:
    """Frame RMS in dB of the 16 kHz wav at 25 fps, n frames."""
    from davs.media import iter_audio

    x = np.concatenate(list(iter_audio(wav, 16000)))
    x = np.pad(x, (0, max(0, n * 640 - len(x))))[: n * 640].reshape(n, 640)
    return 20 * np.log10(np.sqrt((x**2).mean(1)) + 1e-4)


def photo_scores(checkpoint: Path, opt: TalkOptions, work: Path, wav: Path, speech_frames: int) -> dict[str, float]:
    from PIL import Image
    from skimage import data

    photo = work / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    out = work / "talk.mp4"
    Talker(checkpoint, "cpu", 64, options=opt).generate(photo, out, audio_path=wav)
    ap = lip_apertures(out)
    env = envelope(wav, len(ap))
    speech, silence = slice(0, speech_frames), slice(speech_frames + 5, len(ap))
    ok = ~np.isnan(ap[speech])
    return {"photo_lip_std_speech": round(float(np.nanstd(ap[speech])), 4),
            "photo_lip_std_silence": round(float(np.nanstd(ap[silence])), 4),
            "photo_lip_env_corr": round(float(np.corrcoef(ap[speech][ok], env[speech][ok])[0, 1]), 3),
            "photo_faces_found": round(float(np.mean(~np.isnan(ap))), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    p = load_params(args.params)
    dev = torch.device("cpu")
    ckpt = paths.model_file("gen")
    model = load_model(ckpt, device=dev)
    judges = load_judges(paths.model_file("judges"), dev)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        wav, speech_frames = speech_file(work)
        for name in args.rows:
            opt = ROWS[name]
            t0 = time.perf_counter()
            r = {"row": name, **asdict(opt), **corpus_scores(p, model, judges, opt, dev),
                 **photo_scores(ckpt, opt, work, wav, speech_frames)}
            r["seconds"] = round(time.perf_counter() - t0, 1)
            rows.append(r)
            print(json.dumps(r), flush=True)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"torch_threads": torch.get_num_threads(), "rows": rows}, indent=2) + "\n")
    cols = ["lse_c_audio", "lse_c_video", "mouth_open_corr_audio", "mouth_open_gain_audio", "audio_psnr_mouth",
            "photo_lip_std_speech", "photo_lip_std_silence", "photo_lip_env_corr"]
    print("| options | " + " | ".join(cols) + " |\n| --- |" + " --- |" * len(cols))
    for r in rows:
        print(f"| {r['row']} | " + " | ".join(str(r.get(c)) for c in cols) + " |")


if __name__ == "__main__":
    main()
