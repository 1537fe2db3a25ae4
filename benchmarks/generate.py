"""Inference throughput of ``davs generate``: frames/s end to end (decode, detect, MFCC, G, paste, encode)
and model-only (Ep + G), at the checkpoint's resolution, for a still photo driven by speech.

    python benchmarks/generate.py --checkpoint models/gen.pt --seconds 10 --batch-size 64
Writes benchmarks/results/generate_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import wave
from pathlib import Path

import torch
from PIL import Image

from davs.inference import Talker
from davs.synth.espeak import Voice, synthesize
from davs.synth.face import FaceRenderer, Identity, Scene


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="models/gen.pt")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    d = Path(tempfile.mkdtemp())
    Image.fromarray(FaceRenderer(Identity.make(0, 0), Scene()).frame((0, 0.5, 0), 0)).save(d / "face.png")
    text = " ".join(["absolutely", "money", "school", "policy", "general"] * 20)
    speech = synthesize(text, Voice(variant="m3"))
    pcm = speech.samples[: int(args.seconds * speech.sample_rate)]
    with wave.open(str(d / "a.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(speech.sample_rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    talker = Talker(args.checkpoint, args.device, args.batch_size)
    talker.generate(d / "face.png", d / "warm.mp4", audio_path=d / "a.wav")  # warm-up
    talker.timing.__init__()
    t0 = time.perf_counter()
    res = talker.generate(d / "face.png", d / "out.mp4", audio_path=d / "a.wav")
    total = time.perf_counter() - t0
    out = {
        "device": args.device if args.device != "cuda" else torch.cuda.get_device_name(),
        "image_size": talker.cfg.image_size, "frames": res["frames"], "batch_size": args.batch_size,
        "end_to_end_frames_per_s": round(res["frames"] / total, 1),
        "model_frames_per_s": round(res["frames"] / talker.timing.model_s, 1),
        "realtime_factor": round(res["frames"] / total / 25.0, 2), "cpus": os.cpu_count(), "machine": platform.machine(),
    }
    path = Path(args.out or f"benchmarks/results/generate_{args.device}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
