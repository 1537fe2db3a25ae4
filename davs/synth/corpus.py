"""The embedded corpus: a small LRW-format and MS-Celeb-format dataset, deterministic from a seed.

LRW format (see data/README.md): ``lipread_mp4/<WORD>/{train,val,test}/<WORD>_<NNNNN>.{mp4,txt}``,
256x256, 25 fps, 29 frames, H.264 + AAC mono 16 kHz, the word centred in time, a five-line ``.txt``
ending ``Duration: 0.53 seconds``. Speech is real eSpeak NG output; lips follow its phoneme timings.

MS-Celeb format: ``FaceImageCroppedWithAlignment.tsv``, seven TAB-separated columns with a base64
float32 face rectangle and a base64 JPEG face crop.

Beyond the real formats, two sidecars of metadata that real LRW does not have, which no reader needs:
``lipread_mp4/speakers.csv`` (clip -> speaker; ingestion uses it when present to report identity leakage
per speaker) and ``lipread_mp4/mouth_states.csv`` (clip, frame -> the renderer's mouth state: open, width,
round), the ground truth of the evaluation judges (:mod:`davs.judges`).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import math
import os
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from davs.config.data import CorpusSpec
from davs.files import atomic_path, staged_dir
from davs.media import write_mp4
from davs.parallel import process_pool
from davs.synth.espeak import Voice, synthesize
from davs.synth.face import CANVAS, FaceRenderer, Identity, Scene
from davs.synth.visemes import mouth_track

log = logging.getLogger(__name__)

FPS = 25
NUM_FRAMES = 29
SAMPLE_RATE = 16000
_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5"]


@dataclass(frozen=True)
class ClipJob:
    word: str
    split: str
    index: int
    speaker: int
    path: str  # mp4 path


def choose_words(vocab: list[str], spec: CorpusSpec) -> list[str]:
    if spec.words:
        missing = [w for w in spec.words if w not in vocab]
        if missing:
            raise ValueError(f"synth.words not in the LRW vocabulary: {missing}")
        return sorted(spec.words)
    rng = np.random.default_rng([spec.seed, 17])
    return sorted(rng.choice(vocab, size=spec.num_words, replace=False).tolist())


def speaker_voice(speaker: int, seed: int) -> Voice:
    rng = np.random.default_rng([seed, 31, speaker])
    return Voice(
        name="en-us" if speaker % 3 else "en",
        variant=_VARIANTS[speaker % len(_VARIANTS)],
        pitch=int(rng.integers(30, 75)),
        pitch_range=int(rng.integers(30, 80)),
        rate=int(rng.integers(150, 200)),
    )


def clip_jobs(root: Path, words: list[str], spec: CorpusSpec) -> list[ClipJob]:
    jobs = []
    regular = list(range(spec.speakers))
    test_speakers = list(range(spec.speakers + spec.test_only_speakers))
    for wi, word in enumerate(words):
        for split, n, pool in (("train", spec.train_per_word, regular), ("val", spec.val_per_word, regular),
                               ("test", spec.test_per_word, test_speakers)):
            for k in range(n):
                speaker = pool[(k + wi) % len(pool)]
                path = root / word / split / f"{word}_{k + 1:05d}.mp4"
                jobs.append(ClipJob(word, split, k + 1, speaker, str(path)))
    return jobs


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(x.astype(np.float32)), sr_in, sr_out).numpy()


def render_clip(job: ClipJob, spec: CorpusSpec) -> dict:
    """Synthesize, render and write one LRW-format clip; returns its metadata."""
    rng = np.random.default_rng([spec.seed, 101, job.speaker, hash_word(job.word), ["train", "val", "test"].index(job.split), job.index])
    base = speaker_voice(job.speaker, spec.seed)
    clip_s = NUM_FRAMES / FPS
    rate = int(base.rate * rng.uniform(0.9, 1.1))
    for _ in range(8):  # speed up until the word fits in the clip with a margin
        voice = Voice(base.name, base.variant, int(np.clip(base.pitch + rng.integers(-6, 7), 0, 100)), base.pitch_range, rate)
        speech = synthesize(job.word.lower(), voice)
        ends = [t for name, t in speech.phonemes if name.startswith("_")]
        dur = ends[0] if ends else len(speech.samples) / speech.sample_rate
        if dur <= clip_s - 0.2:
            break
        rate = int(rate * 1.15)
    wav = speech.samples[: int(round(dur * speech.sample_rate))].astype(np.float32) / 32768.0
    wav = _resample(wav, speech.sample_rate, SAMPLE_RATE)
    dur = len(wav) / SAMPLE_RATE
    offset = (clip_s - dur) / 2
    audio = np.zeros(NUM_FRAMES * SAMPLE_RATE // FPS, np.float32)
    start = int(round(offset * SAMPLE_RATE))
    audio[start : start + len(wav)] = wav[: len(audio) - start]
    peak = np.abs(audio).max() + 1e-8
    audio *= rng.uniform(0.5, 0.9) / peak
    snr = rng.uniform(*spec.snr_db)
    rms = math.sqrt(float(np.mean(wav**2)) + 1e-12) * (rng.uniform(0.5, 0.9) / peak)
    audio += rng.normal(0, rms / (10 ** (snr / 20)), size=audio.shape).astype(np.float32)

    times = (np.arange(NUM_FRAMES) + 0.5) / FPS
    track = mouth_track(speech.phonemes, dur, offset, times)  # (T, 3)
    track[:, 0] *= rng.uniform(0.85, 1.15)  # per-clip articulation strength
    renderer = FaceRenderer(Identity.make(job.speaker, spec.seed), Scene.random(rng, spec.jitter))
    frames = np.stack([renderer.frame(tuple(track[i]), times[i]) for i in range(NUM_FRAMES)])  # (T, H, W, 3)

    path = Path(job.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, frames, fps=FPS, audio=audio, sample_rate=SAMPLE_RATE)
    txt = path.with_suffix(".txt")
    tmp = atomic_path(txt)
    tmp.write_text(
        f"Text:  {job.word}\nConf:  {int(rng.integers(3, 10))}\n\n"
        f"{job.word} {offset:.3f} {offset + dur:.3f} 0.0\nDuration: {dur:.2f} seconds\n"
    )
    os.replace(tmp, txt)
    return {"clip": str(path), "word": job.word, "split": job.split, "speaker": job.speaker, "duration": round(dur, 3),
            "mouth": track}


MOUTH_STATES = "mouth_states.csv"
MOUTH_FIELDS = ("open", "width", "round")


def write_mouth_states(path: Path, tracks: dict[str, np.ndarray]) -> None:
    """The sidecar ``clip,frame,open,width,round``: one row per frame, clips in the given order."""
    tmp = atomic_path(path)
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["clip", "frame", *MOUTH_FIELDS])
        for clip, track in tracks.items():
            for t, row in enumerate(np.asarray(track)):
                w.writerow([clip, t, *(f"{v:.4f}" for v in row)])
    os.replace(tmp, path)


def read_mouth_states(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``mouth_states.csv`` -> {clip path relative to ``lipread_mp4/``: (frames, 3) float32 (open, width, round)}."""
    rows: dict[str, list[tuple[int, list[float]]]] = {}
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        missing = {"clip", "frame", *MOUTH_FIELDS} - set(r.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for row in r:
            rows.setdefault(row["clip"], []).append((int(row["frame"]), [float(row[k]) for k in MOUTH_FIELDS]))
    return {c: np.asarray([v for _, v in sorted(fr)], np.float32) for c, fr in rows.items()}


def hash_word(word: str) -> int:
    """A stable (process-independent) integer for a word; Python's hash() is salted per process."""
    return int.from_bytes(word.encode()[:8].ljust(8, b"\0"), "little") % (2**31)


def mid_for(ident: int) -> str:
    """A Freebase-style MID (``m.0xxxx``) for a synthetic identity."""
    alphabet = "0123456789bcdfghjklmnpqrstvwxyz_"
    s, n = "", ident * 7919 + 4099
    for _ in range(4):
        s += alphabet[n % 32]
        n //= 32
    return "m.0" + s


def msceleb_rows(ident: int, spec: CorpusSpec) -> list[str]:
    """TSV lines for one MS-Celeb-format identity (identities are disjoint from LRW speakers)."""
    person = 1000 + ident
    idt = Identity.make(person, spec.seed)
    top, left, size = spec.msceleb_crop
    cx, cy = CANVAS / 2, idt.face_cy
    rect = np.array([(cx - idt.face_hw - left) / size, (cy - idt.face_hh - top) / size,
                     (cx + idt.face_hw - left) / size, (cy + idt.face_hh - top) / size], dtype="<f4").clip(0, 1)
    rows = []
    for k in range(spec.msceleb_images):
        rng = np.random.default_rng([spec.seed, 211, ident, k])
        r = FaceRenderer(idt, Scene.random(rng, spec.jitter))
        mouth = (float(rng.uniform(0, 0.8)), float(rng.uniform(0.3, 0.9)), float(rng.uniform(0, 0.6)))
        img = r.frame(mouth, float(rng.uniform(0, 2)))[top : top + size, left : left + size]  # (size, size, 3)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        mid = mid_for(ident)
        rows.append("\t".join([
            mid, str(k + 1), f"http://example.invalid/{mid}/{k + 1}.jpg", f"http://example.invalid/{mid}.html",
            f"{ident:06d}-{k:03d}", base64.b64encode(rect.tobytes()).decode(), base64.b64encode(buf.getvalue()).decode(),
        ]))
    return rows


def _run_clip(args: tuple[ClipJob, CorpusSpec]) -> dict:
    return render_clip(*args)


def _run_celeb(args: tuple[int, CorpusSpec]) -> list[str]:
    return msceleb_rows(*args)


def generate(out: str | os.PathLike, vocab: list[str], spec: CorpusSpec) -> dict:
    """Write the corpus under ``out``: ``lipread_mp4/`` and ``msceleb/FaceImageCroppedWithAlignment.tsv``.

    It is built in a hidden staging directory and replaces ``out`` whole when complete
    (:func:`davs.files.staged_dir`): a killed run leaves the previous corpus, never half of a new one."""
    with staged_dir(out) as stage:
        return _generate(stage, vocab, spec)


def _generate(out: Path, vocab: list[str], spec: CorpusSpec) -> dict:
    lrw = out / "lipread_mp4"
    words = choose_words(vocab, spec)
    jobs = clip_jobs(lrw, words, spec)
    workers = spec.workers or os.cpu_count() or 1
    log.info("synth: %d words, %d clips, %d MS-Celeb identities, %d workers", len(words), len(jobs),
             spec.msceleb_identities, workers)
    with process_pool(workers) if workers > 1 else nullcontext() as pool:  # one worker: in this process
        run = partial(pool.map, chunksize=4) if pool is not None else map
        meta = list(tqdm(run(_run_clip, [(j, spec) for j in jobs]), total=len(jobs), desc="synth LRW clips",
                         unit="clip"))
        celeb = list(tqdm(run(_run_celeb, [(i, spec) for i in range(spec.msceleb_identities)]),
                          total=spec.msceleb_identities, desc="synth MS-Celeb ids", unit="id"))
    spk = lrw / "speakers.csv"
    tmp = atomic_path(spk)
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["clip", "speaker"])
        for m in meta:
            w.writerow([os.path.relpath(m["clip"], lrw), f"spk{m['speaker']:03d}"])
    os.replace(tmp, spk)
    write_mouth_states(lrw / MOUTH_STATES, {os.path.relpath(m["clip"], lrw): m["mouth"] for m in meta})
    tsv = out / "msceleb" / "FaceImageCroppedWithAlignment.tsv"
    tsv.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(tsv)
    with open(tmp, "w") as f:
        for rows in celeb:
            f.write("\n".join(rows) + "\n")
    os.replace(tmp, tsv)
    summary = {
        "spec": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items()},
        "words": words,
        "clips": {s: sum(m["split"] == s for m in meta) for s in ("train", "val", "test")},
        "speakers": spec.speakers + spec.test_only_speakers,
        "msceleb_images": sum(len(r) for r in celeb),
        "mean_word_duration_s": round(float(np.mean([m["duration"] for m in meta])), 3),
    }
    (out / "corpus.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


