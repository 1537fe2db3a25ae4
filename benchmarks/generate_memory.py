"""Peak memory of ``davs generate`` against audio length and photo size: streaming keeps it flat.

    python benchmarks/generate_memory.py --checkpoint models/gen.pt --seconds 10 600 --sizes 512 3840
    python benchmarks/generate_memory.py --seconds 3 --sizes 6000x6000 --renderer warp paste

For each (photo size, seconds) pair, one ``davs generate`` process (a real photo, scikit-image's public-domain
astronaut portrait, scaled so its long side is the size, on a 16:9 canvas, or to fill a WxH canvas; real eSpeak
NG speech repeated to the length; each ``--renderer``) and
its peak RSS from the kernel (``wait4``). Writes benchmarks/results/generate_memory.json: the figures of one
run on this machine, and the ratio of each peak to the smallest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
from PIL import Image

from davs.synth.espeak import Voice, synthesize

ROOT = Path(__file__).resolve().parents[1]


def _speech(path: Path, seconds: float) -> None:
    s = synthesize("absolutely money school policy general about", Voice(variant="m3"))
    reps = int(np.ceil(seconds * s.sample_rate / len(s.samples)))
    pcm = np.tile(s.samples, reps)[: int(seconds * s.sample_rate)]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(s.sample_rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def _photo(path: Path, size: str) -> tuple[int, int]:
    from skimage import data

    im = Image.fromarray(data.astronaut())  # 512 x 512
    if "x" in size:
        w, h = map(int, size.split("x"))
    else:
        w, h = (int(size), int(size) * 9 // 16) if int(size) > 512 else (int(size), int(size))
    canvas = Image.new("RGB", (w, h), (40, 40, 48))
    face = im.resize((min(w, h), min(w, h)), Image.LANCZOS)  # the portrait fills the frame's short side
    canvas.paste(face, ((w - face.width) // 2, (h - face.height) // 2))
    canvas.save(path, quality=92)
    return w, h


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="models/gen.pt")
    ap.add_argument("--seconds", type=float, nargs="+", default=[10, 600])
    ap.add_argument("--sizes", nargs="+", default=["512", "3840"], help="long side (16:9 canvas) or WxH")
    ap.add_argument("--renderer", nargs="+", default=["warp"], choices=["warp", "paste"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", default="benchmarks/results/generate_memory.json")
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp())
    rows = []
    for size, renderer, secs in [(z, r, s) for z in args.sizes for r in args.renderer for s in args.seconds]:
        photo = d / f"photo_{size}.jpg"
        w, h = _photo(photo, size)
        audio = d / f"speech_{secs:g}.wav"
        if not audio.exists():
            _speech(audio, secs)
        out = d / "out.mp4"
        t0 = time.perf_counter()
        # Output to files, not pipes: a long run's progress lines would fill a pipe nobody reads yet.
        with open(d / "stdout", "w+") as so, open(d / "stderr", "w+") as se:
            proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "generate", "--face", str(photo),
                                     "--audio", str(audio), "--out", str(out), "--checkpoint", args.checkpoint,
                                     "--batch-size", str(args.batch_size), "--device", "cpu", "--renderer",
                                     renderer, "--quiet"], cwd=ROOT,
                                    stdout=so, stderr=se)
            _, status, usage = os.wait4(proc.pid, 0)
            so.seek(0)
            se.seek(0)
            stdout, stderr = so.read(), se.read()
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"generate failed: {stderr[-2000:]}")
        row = {"photo": f"{w}x{h}", "renderer": renderer, "seconds": secs, "frames": json.loads(stdout)["frames"],
               "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "wall_s": round(time.perf_counter() - t0, 1)}
        print(row, flush=True)
        rows.append(row)
    base = min(r["peak_rss_mb"] for r in rows)
    for r in rows:
        r["peak_vs_smallest"] = round(r["peak_rss_mb"] / base, 3)
    res = {"rows": rows, "batch_size": args.batch_size, "cpus": os.cpu_count(),
           "machine": f"{platform.machine()} {_cpu_name()}", "checkpoint": args.checkpoint,
           "note": "one run each; peak RSS of the davs generate process (wait4 ru_maxrss, MiB)"}
    path = ROOT / args.out
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
