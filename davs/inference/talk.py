"""``Talker``: a trained DAVS model that animates a face from audio (or from a driving video).

Pipeline: decode the media (PyAV: any container, codec, sample rate) -> align the face on landmarks
(:mod:`davs.face.align`) -> for every output frame at 25 fps, the MFCC window of the audio (or the
video word features of the driving face) -> G(identity of the aligned source crop, word feature) -> the
change G makes to the crop, added to the source frame at its own resolution and only inside the mouth
region (every other pixel is the input's own) -> H.264 + AAC mp4 with the input audio.

Everything streams, so memory is a constant plus one batch whatever the audio's length or the photo's
size: the audio is decoded once into a temporary raw file and read back span by span (MFCC windows,
the word encoders and the generator run ``batch_size`` frames at a time, with two frames of context so
the chunked features equal the whole-sequence ones); video inputs are decoded frame by frame into a
temporary raw frame file; a photo is held once; frames are encoded as they are made. Options, paths
and the device are checked before any of that starts.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from davs.checkpoint import load_model
from davs.data.features import SAMPLE_RATE, mfcc_windows_span, read_zero_padded
from davs.devices import resolve_device
from davs.errors import DavsError
from davs.face.align import Alignment, FaceAligner, cut, mouth_mask, paste_change
from davs.inference.finetune import OFFICIAL_LR, OFFICIAL_MOUTH_WEIGHT, finetune, restore, snapshot
from davs.inference.lip_warp import LipWarper
from davs.media import iter_audio, iter_video, video_fps, write_mp4
from davs.models import DAVSConfig, generate_frames, load_nets
from davs.models.lip_head import LipHead, load_lip_head
from davs.tensors import to_images, to_uint8

log = logging.getLogger(__name__)

MODEL_FPS = 25.0
CONTEXT = 2  # frames either side a chunk of word features needs (frame difference + temporal conv)
MAX_PHOTO_PIXELS = 80_000_000  # a photo is held once: 80 MP (240 MB) at most
_IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class GenerateError(DavsError):
    """A user-facing problem with the inputs or the checkpoint; the message says what to do."""


@dataclass
class Timing:
    frames: int = 0
    model_s: float = 0.0
    total_s: float = 0.0


def check_request(face: str | Path, out: str | Path, audio: str | Path | None = None,
                  driving_video: str | Path | None = None, fps: float = MODEL_FPS, batch_size: int = 1) -> None:
    """Everything about a request that can be checked before a model is loaded or a frame decoded."""
    if (audio is None) == (driving_video is None):
        raise GenerateError("give exactly one of an audio file and a driving video")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise GenerateError(f"--batch-size must be a positive integer (got {batch_size})")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 1 <= fps <= 120):
        raise GenerateError(f"--fps must be between 1 and 120 (got {fps})")
    for what, p in (("face", face), ("audio", audio), ("driving video", driving_video)):
        if p is not None and not Path(p).is_file():
            raise GenerateError(f"{what} file {p} does not exist" if not Path(p).exists()
                                else f"{what} {p} is not a file")
    out = Path(out)
    if out.is_dir():
        raise GenerateError(f"--out {out} is a directory: give a file name such as {out / 'talk.mp4'}")
    if out.suffix.lower() != ".mp4":
        raise GenerateError(f"--out {out}: the output is an mp4 file (name it *.mp4)")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise GenerateError(f"--out {out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise GenerateError(f"--out {out}: directory {parent} is not writable")


def load_photo(path: str | Path) -> np.ndarray:
    """A photo as one (H, W, 3) uint8 array (the only copy held)."""
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PHOTO_PIXELS:
                raise GenerateError(f"{path} is {im.width}x{im.height}: more than {MAX_PHOTO_PIXELS // 10**6} MP; "
                                    "downscale it first")
            return np.asarray(im.convert("RGB"))
    except GenerateError:
        raise
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as e:
        raise GenerateError(f"cannot read image {path}: {e}") from None


def is_photo(path: str | Path) -> bool:
    return Path(path).suffix.lower() in _IMAGE_EXT


def source_index(k: int, fps: float, out_fps: float) -> int:
    """The input frame (at ``fps``) on screen at output frame k's time (k / out_fps); exact when the rates
    are equal (1.16 * 25 is 28.999999999999996 in floating point)."""
    return int(k * fps / out_fps + 1e-6)


def resample_to(frames: Iterable[np.ndarray], fps: float, out_fps: float) -> Iterator[np.ndarray]:
    """Nearest-in-time resampling of a stream of unknown length: output frame k (time k / out_fps) is input
    frame :func:`source_index`, for every k / out_fps before the input's end."""
    k = 0
    for i, f in enumerate(frames):
        while source_index(k, fps, out_fps) <= i:
            yield f
            k += 1


class AudioTrack:
    """Speech decoded once, as it streams, into a temporary raw float32 file at 16 kHz; spans read back."""

    def __init__(self, path: str | Path, workdir: Path) -> None:
        self.file = workdir / "audio.f32"
        n = 0
        try:
            with open(self.file, "wb") as f:
                for chunk in iter_audio(path, SAMPLE_RATE):
                    f.write(chunk.astype("<f4", copy=False).tobytes())
                    n += len(chunk)
        except Exception as e:  # PyAV raises several error types for unreadable media
            raise GenerateError(f"cannot read audio from {path}: {e}") from None
        if n == 0:
            raise GenerateError(f"{path}: the audio stream decodes to nothing")
        self.samples = n
        self._fh = open(self.file, "rb")  # noqa: SIM115 - closed by close()

    def read(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b), zeros outside the signal."""
        out = np.zeros(b - a, np.float32)
        lo, hi = max(a, 0), min(b, self.samples)
        if hi > lo:
            self._fh.seek(lo * 4)
            out[lo - a : hi - a] = np.frombuffer(self._fh.read((hi - lo) * 4), "<f4")
        return out

    def chunks(self, stop: int, size: int = 10 * SAMPLE_RATE) -> Iterator[np.ndarray]:
        for a in range(0, stop, size):
            yield self.read(a, min(a + size, stop))

    def close(self) -> None:
        self._fh.close()


class FrameFile:
    """Video frames spilled to a temporary raw file as they decode; frame i read back on demand."""

    def __init__(self, frames: Iterable[np.ndarray], file: Path) -> None:
        self.file, self.n, self.shape = file, 0, None
        with open(file, "wb") as f:
            for fr in frames:
                if self.shape is None:
                    self.shape = fr.shape
                elif fr.shape != self.shape:
                    raise GenerateError(f"frame {self.n} is {fr.shape[1]}x{fr.shape[0]}, not like the first")
                f.write(np.ascontiguousarray(fr, np.uint8).tobytes())
                self.n += 1
        self._size = int(np.prod(self.shape)) if self.shape else 0
        self._fh = open(file, "rb")  # noqa: SIM115 - closed by close()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        self._fh.seek(i * self._size)
        return np.frombuffer(self._fh.read(self._size), np.uint8).reshape(self.shape)

    def close(self) -> None:
        self._fh.close()


def _load_video(path: str | Path, workdir: Path, name: str) -> FrameFile:
    """A video resampled to 25 fps into a :class:`FrameFile`."""
    try:
        store = FrameFile(resample_to(iter_video(path), video_fps(path), MODEL_FPS), workdir / f"{name}.rgb")
    except GenerateError:
        raise
    except Exception as e:  # PyAV raises several error types for unreadable media
        raise GenerateError(f"cannot read video {path}: {e}") from None
    if len(store) == 0:
        raise GenerateError(f"{path}: the video stream decodes to no frame")
    return store


@dataclass(frozen=True)
class TalkOptions:
    """Inference options of the official DAVS, off by default.

    ``finetune_steps``: Adam steps adapting Ep and G to the reference face before it talks
    (:mod:`davs.inference.finetune`; the official code takes 5). ``word_scale``: word features are multiplied
    by it before G (the official code: 1.5 for audio, 0.8 for a driving video)."""

    finetune_steps: int = 0
    finetune_lr: float = OFFICIAL_LR
    finetune_mouth_weight: float = OFFICIAL_MOUTH_WEIGHT
    word_scale: float = 1.0

    def check(self) -> None:
        if not isinstance(self.finetune_steps, int) or not 0 <= self.finetune_steps <= 1000:
            raise GenerateError(f"--finetune-steps must be an integer in [0, 1000] (got {self.finetune_steps})")
        for name, lo, hi in (("finetune_lr", 0.0, 1.0), ("finetune_mouth_weight", 0.0, 1.0), ("word_scale", 0.0, 10.0)):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
                raise GenerateError(f"--{name.replace('_', '-')} must be in [{lo:g}, {hi:g}] (got {v})")


class Talker:
    """A trained generator (``models/gen.pt``: Ev_w, Ea_w, Ep, G) that makes faces talk."""

    PARTS = ("Ev_w", "Ea_w", "Ep", "G")

    def __init__(self, checkpoint: str | Path, device: str = "auto", batch_size: int = 64,
                 use_landmarks: bool = True, options: TalkOptions | None = None,
                 lips: str | Path | None = None) -> None:
        """``lips``: a lip head model file (``models/lips.pt``): a photo then talks with its own lips, warped
        at its resolution (:mod:`davs.inference.lip_warp`); without one, G's change is pasted on the photo."""
        path = Path(checkpoint)
        if not path.exists():
            raise GenerateError(f"checkpoint {path} not found: train the pipeline first (dvc repro) or pass --checkpoint")
        dev = resolve_device(device)
        self._setup(load_model(path, device=dev), dev, batch_size, use_landmarks, f"checkpoint {path}", options)
        if lips is not None:
            if not Path(lips).exists():
                raise GenerateError(f"lip head {lips} not found: train the pipeline first (dvc repro), pass --lips, "
                                    "or --renderer paste")
            self.lip_head = load_lip_head(lips, dev)

    @classmethod
    def from_model(cls, model: dict, device: torch.device, batch_size: int = 64, use_landmarks: bool = True,
                   options: TalkOptions | None = None) -> Talker:
        """A Talker over an already loaded model file (:func:`davs.checkpoint.load_model`)."""
        self = cls.__new__(cls)
        self._setup(model, device, batch_size, use_landmarks, "model", options)
        return self

    def _setup(self, model: dict, device: torch.device, batch_size: int, use_landmarks: bool, source: str,
               options: TalkOptions | None) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise GenerateError(f"--batch-size must be a positive integer (got {batch_size})")
        self.options = options or TalkOptions()
        self.options.check()
        self.device, self.batch_size = device, batch_size
        self.nets = load_nets(model, self.PARTS, device, source)
        self.cfg = DAVSConfig.from_dict(model["model_config"])
        self.aligner = FaceAligner(self.cfg.image_size, use_landmarks)
        self.mask = mouth_mask(self.cfg.image_size, self.cfg.mouth_box)  # where a generated change is kept
        self.lip_head: LipHead | None = None
        self.timing = Timing()

    def _to_input(self, crops: np.ndarray) -> torch.Tensor:
        return to_images(torch.from_numpy(crops).to(self.device))  # (N, S, S, 3) uint8 -> (N, 3, S, S)

    def _track(self, frames: Iterable[np.ndarray], what: str) -> list[Alignment]:
        aligns, missing = self.aligner.track(frames)
        n = len(aligns) or len(missing)
        if not aligns:
            raise GenerateError(f"no face found in {what} (checked {n} frame{'s' * (n > 1)})")
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
            raise GenerateError(f"no face found in {what} frames {shown} ({len(missing)} of {len(aligns)})")
        log.info("%s: aligned on %s", what, "facial landmarks" if aligns[0].landmarks else "face boxes (no landmarks)")
        return aligns

    @torch.no_grad()
    def _chunked(self, encoder: str, inputs: Callable[[int, int], torch.Tensor], n: int) -> Iterator[torch.Tensor]:
        """Word features (b - a, D) of frames [a, b), ``batch_size`` frames at a time; each chunk is encoded
        with CONTEXT frames either side, so it equals the same rows of the whole-sequence encoding."""
        for a in range(0, n, self.batch_size):
            b = min(a + self.batch_size, n)
            lo, hi = max(0, a - CONTEXT), min(n, b + CONTEXT)
            yield self.nets[encoder](inputs(lo, hi)[None])[0, a - lo : b - lo]  # (b - a, D)

    def _mfcc(self, read: Callable[[int, int], np.ndarray]) -> Callable[[int, int], torch.Tensor]:
        def inputs(lo: int, hi: int) -> torch.Tensor:
            m = mfcc_windows_span(read, lo, hi, MODEL_FPS, self.cfg.mfcc_frames, self.cfg.mfcc_coeffs,
                                  self.cfg.mfcc_recipe)
            return torch.from_numpy(m).to(self.device)  # (hi - lo, F, C)

        return inputs

    @torch.no_grad()
    def audio_words(self, audio: np.ndarray, n: int) -> torch.Tensor:
        """(n, D) word features from in-memory 16 kHz audio, one per 25 fps frame."""
        return torch.cat(list(self._chunked("Ea_w", self._mfcc(read_zero_padded(audio)), n)))

    @torch.no_grad()
    def video_words(self, crops: np.ndarray) -> torch.Tensor:
        """(n, D) word features of aligned face crops (n, S, S, 3) uint8, one per frame."""
        return torch.cat(list(self._chunked("Ev_w", lambda lo, hi: self._to_input(crops[lo:hi]), len(crops))))

    def animate(self, crop: np.ndarray, words: torch.Tensor) -> np.ndarray:
        """An aligned face crop (S, S, 3) uint8 saying ``words`` (n, D) -> (n, S, S, 3) uint8 crops."""
        return np.concatenate([self._generate(crop[None], w) for w in _batches(words, self.batch_size)])

    @contextmanager
    def adapted(self, crop: np.ndarray, word: torch.Tensor) -> Iterator[None]:
        """Within the block, Ep and G are fine-tuned on the aligned reference crop (S, S, 3) uint8 with the word
        feature (D,) (``options.finetune_steps`` steps, the official test-time fine-tune); the trained
        weights are back afterwards. Without fine-tune steps, nothing changes."""
        if self.options.finetune_steps == 0:
            yield
            return
        nets = (self.nets["Ep"], self.nets["G"])
        saved = snapshot(*nets)
        try:
            t0 = time.perf_counter()
            o = self.options
            losses = finetune(*nets, self._to_input(crop[None]), word[None], self.cfg.mouth_box, o.finetune_steps,
                              o.finetune_lr, o.finetune_mouth_weight)
            self.timing.model_s += time.perf_counter() - t0
            log.info("fine-tuned Ep and G on the reference face: %d steps, weighted L1 %.4f -> %.4f",
                     len(losses), losses[0], losses[-1])
            yield
        finally:
            restore(nets, saved)

    def _crops(self, frames: FrameFile, aligns: list[Alignment]) -> Callable[[int, int], torch.Tensor]:
        def inputs(lo: int, hi: int) -> torch.Tensor:
            return self._to_input(np.stack([cut(frames[i], aligns[i]) for i in range(lo, hi)]))  # (hi - lo, 3, S, S)

        return inputs

    @torch.no_grad()
    def _generate(self, crops: np.ndarray, words: torch.Tensor) -> np.ndarray:
        """crops (N, S, S, 3) uint8 aligned sources (or one, shared), words (N, D) -> (N, S, S, 3) uint8."""
        t0 = time.perf_counter()
        ep, g, ref = self.nets["Ep"], self.nets["G"], self._to_input(crops)  # (1 | N, 3, S, S)
        if self.options.word_scale != 1.0:
            words = words * self.options.word_scale
        if len(crops) == 1:  # one face saying every word: Ep once
            gen = generate_frames(ep, g, ref, words[None])[0]  # (1, N, D) -> (N, 3, S, S)
        else:  # each frame its own reference
            gen = generate_frames(ep, g, ref, words[:, None])[:, 0]  # (N, 1, D) -> (N, 3, S, S)
        out = to_uint8(gen).cpu().numpy()
        self.timing.model_s += time.perf_counter() - t0
        return out

    def render_photo(self, photo: np.ndarray, align: Alignment, words: Iterable[torch.Tensor]) -> Iterator[np.ndarray]:
        """The photo saying ``words`` (chunks of (b, D), or one (n, D) tensor): frames (H, W, 3), made one batch
        at a time: the photo's own lips warped by the lip head's mouth states where there is a lip head and
        the photo's landmarks are found, else G's change pasted on the photo."""
        landmarks = self.aligner.landmarks(photo) if self.lip_head is not None else None
        if self.lip_head is not None and landmarks is None:
            log.warning("no facial landmarks in the photo: pasting the generator's mouth instead of warping its lips")
        if landmarks is not None:
            warper = LipWarper(photo, landmarks)
            with torch.no_grad():
                for states in self.lip_head.stream(_batches(words, self.batch_size)):
                    for s in states.float().cpu().numpy():
                        yield warper.frame(s)
            return
        crop = cut(photo, align)[None]  # (1, S, S, 3)
        for chunk in _batches(words, self.batch_size):
            for g in self._generate(crop, chunk):
                yield paste_change(photo, crop[0], g, align, self.mask)

    def render_video(self, frames: FrameFile, order: np.ndarray, aligns: list[Alignment],
                     words: Iterable[torch.Tensor]) -> Iterator[np.ndarray]:
        """Source frames ``frames[order[k]]`` saying ``words``, each frame its own identity reference."""
        k = 0
        for chunk in _batches(words, self.batch_size):
            idx = order[k : k + len(chunk)]
            src = [frames[i] for i in idx]
            crops = np.stack([cut(f, aligns[i]) for f, i in zip(src, idx)])
            for f, c, g, i in zip(src, crops, self._generate(crops, chunk), idx):
                yield paste_change(f, c, g, aligns[i], self.mask)
            k += len(chunk)

    def generate(self, face_path: str | Path, out: str | Path, audio_path: str | Path | None = None,
                 driving_video: str | Path | None = None, fps: float = MODEL_FPS) -> dict:
        check_request(face_path, out, audio_path, driving_video, fps, self.batch_size)
        t0 = time.perf_counter()
        photo = load_photo(face_path) if is_photo(face_path) else None
        if photo is not None:  # fail on a face-less photo before decoding any audio
            align = self._track([photo], "the face input")[0]
        with tempfile.TemporaryDirectory(prefix="davs-generate-") as tmp:
            work = Path(tmp)
            audio = AudioTrack(driving_video or audio_path, work)
            try:
                return self._generate_to(out, photo, align if photo is not None else None, face_path, audio,
                                         driving_video, fps, work, t0)
            finally:
                audio.close()

    def _generate_to(self, out: str | Path, photo: np.ndarray | None, align: Alignment | None,
                     face_path: str | Path, audio: AudioTrack, driving_video: str | Path | None, fps: float,
                     work: Path, t0: float) -> dict:
        stores: list[FrameFile] = []
        try:
            if driving_video is not None:
                drive = _load_video(driving_video, work, "drive")
                stores.append(drive)
                n = len(drive)
                drive_aligns = self._track((drive[i] for i in range(n)), "the driving video")
                words = self._chunked("Ev_w", self._crops(drive, drive_aligns), n)
            else:
                n = int(audio.samples / SAMPLE_RATE * MODEL_FPS)
                if n < 1:
                    raise GenerateError(f"audio is {audio.samples / SAMPLE_RATE * 1000:.0f} ms long: "
                                        "shorter than one frame (40 ms)")
                words = self._chunked("Ea_w", self._mfcc(audio.read), n)
            first, words = _peek(words)
            if photo is not None:
                ref_crop = cut(photo, align)
                frames = self.render_photo(photo, align, words)
            else:  # loop the face video back and forth to cover the audio (as Wav2Lip does)
                face = _load_video(face_path, work, "face")
                stores.append(face)
                aligns = self._track((face[i] for i in range(len(face))), "the face input")
                ref_crop = cut(face[0], aligns[0])
                m = len(face)
                pingpong = np.r_[np.arange(m), np.arange(m - 2, 0, -1)] if m > 2 else np.arange(m)
                frames = self.render_video(face, pingpong[np.arange(n) % len(pingpong)], aligns, words)
            n_out = n if fps == MODEL_FPS else max(1, int(round(n / MODEL_FPS * fps)))
            if fps != MODEL_FPS:
                frames = resample_stream(frames, MODEL_FPS, fps, n_out)
            stop = int(round(n / MODEL_FPS * SAMPLE_RATE))
            with self.adapted(ref_crop, first[0]):
                try:
                    write_mp4(out, frames, fps=int(round(fps)), audio=audio.chunks(stop), sample_rate=SAMPLE_RATE)
                except OSError as e:
                    raise GenerateError(f"cannot write {out}: {e}") from None
        finally:
            for s in stores:
                s.close()
        self.timing.frames += n
        self.timing.total_s += time.perf_counter() - t0
        return {"out": str(out), "frames": n_out, "fps": fps, "seconds": round(n / MODEL_FPS, 3),
                "mode": "video" if driving_video is not None else "audio"}


def _peek(chunks: Iterable[torch.Tensor]) -> tuple[torch.Tensor, Iterator[torch.Tensor]]:
    """The first chunk of a stream, and the whole stream again."""
    it = iter(chunks)
    first = next(it)
    return first, itertools.chain([first], it)


def _batches(words: torch.Tensor | Iterable[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    """Word features in chunks of at most ``size`` rows, from one (n, D) tensor or an iterable of chunks."""
    if isinstance(words, torch.Tensor):
        words = [words]
    for w in words:
        for i in range(0, len(w), size):
            yield w[i : i + size]


def resample_stream(frames: Iterator[np.ndarray], fps: float, out_fps: float, n_out: int) -> Iterator[np.ndarray]:
    """Nearest-in-time resampling of a frame stream, as :func:`resample_frames` does, without holding it:
    output frame k is input frame :func:`source_index`, the last one repeated past the end."""
    k, f = 0, None
    for i, f in enumerate(frames):
        while k < n_out and source_index(k, fps, out_fps) <= i:
            yield f
            k += 1
    while f is not None and k < n_out:
        yield f
        k += 1
