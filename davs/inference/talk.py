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
and the device are checked before any of that starts (:mod:`davs.inference.request`); the temporary
stores are :mod:`davs.inference.stores`, and one request's course from inputs to mp4 is
:mod:`davs.inference.generate`. A photo with a lip head talks with its own lips instead
(:mod:`davs.inference.lip_warp`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from davs.checkpoint import load_model
from davs.data.features import mfcc_windows_span, read_zero_padded
from davs.devices import resolve_device
from davs.face.align import Alignment, FaceAligner, cut, mouth_mask, paste_change
from davs.inference.finetune import finetune, restore, snapshot
from davs.inference.generate import generate as run_request
from davs.inference.lip_warp import LipWarper, warp_frames
from davs.inference.request import (
    MODEL_FPS,
    GenerateError,
    TalkOptions,
    Timing,
)
from davs.inference.stores import FrameFile
from davs.models import DAVSConfig, generate_frames, load_nets
from davs.models.generator import contextualise_stream
from davs.models.lip_head import LipHead, load_lip_head
from davs.tensors import to_images, to_uint8

log = logging.getLogger(__name__)

CONTEXT = 2  # frames either side a chunk of word features needs (frame difference + temporal conv)
MAX_GAP_FRAMES = 25  # frames without a face filled from their neighbours' alignments (1 s at 25 fps)


class Talker:
    """A trained generator (``models/gen.pt``: Ev_w, Ea_w, Ep, G) that makes faces talk."""

    PARTS = ("Ev_w", "Ea_w", "Ep", "G")

    def __init__(self, checkpoint: str | Path, device: str = "auto", batch_size: int = 64,
                 use_landmarks: bool = True, options: TalkOptions | None = None,
                 lips: str | Path | None = None, max_gap: int = MAX_GAP_FRAMES, progress: bool = False) -> None:
        """``lips``: a lip head model file (``models/lips.pt``): a photo then talks with its own lips, warped
        at its resolution (:mod:`davs.inference.lip_warp`); without one, G's change is pasted on the photo.
        ``max_gap``: frames of a video without a detected face that are filled from their neighbours'
        alignments; longer gaps of a face video pass through unchanged. ``progress``: a progress bar."""
        path = Path(checkpoint)
        if not path.exists():
            raise GenerateError(f"checkpoint {path} not found: train the pipeline first (dvc repro) or pass --checkpoint")
        dev = resolve_device(device)
        self._setup(load_model(path, device=dev), dev, batch_size, use_landmarks, f"checkpoint {path}", options)
        if not isinstance(max_gap, int) or max_gap < 0:
            raise GenerateError(f"--max-gap must be a non-negative number of frames (got {max_gap})")
        self.max_gap, self.progress = max_gap, progress
        if lips is not None:
            if not Path(lips).exists():
                raise GenerateError(f"lip head {lips} not found: train the pipeline first (dvc repro), pass --lips, "
                                    "or --renderer paste")
            self.lip_head = load_lip_head(lips, dev)
            if self.lip_head.feat_dim != self.cfg.feat_dim:
                raise GenerateError(f"lip head {lips} reads {self.lip_head.feat_dim}-d word features, the generator's "
                                    f"are {self.cfg.feat_dim}-d: use the lips.pt of the same dvc repro")

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
        self.max_gap, self.progress = MAX_GAP_FRAMES, False
        self.timing = Timing()

    def _to_input(self, crops: np.ndarray) -> torch.Tensor:
        return to_images(torch.from_numpy(crops).to(self.device))  # (N, S, S, 3) uint8 -> (N, 3, S, S)

    def track(self, frames: Iterable[np.ndarray], what: str) -> tuple[list[Alignment], list[int]]:
        """Alignments of every frame (gaps of up to ``max_gap`` frames filled from the neighbours) and the
        frames of longer gaps, which the caller passes through (a face video) or fills (a driving video)."""
        aligns, missing = self.aligner.track(frames, max_gap=self.max_gap)
        n = len(aligns) or len(missing)
        if not aligns:
            raise GenerateError(f"no face found in {what} (checked {n} frame{'s' * (n > 1)})")
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
            log.warning("%s: no face in frames %s (%d of %d, gaps longer than %d frames)", what, shown, len(missing),
                        len(aligns), self.max_gap)
        log.info("%s: aligned on %s", what, "facial landmarks" if aligns[0].landmarks else "face boxes (no landmarks)")
        return aligns, missing

    @torch.no_grad()
    def word_chunks(self, encoder: str, inputs: Callable[[int, int], torch.Tensor], n: int) -> Iterator[torch.Tensor]:
        """Word features (b - a, D) of frames [a, b), ``batch_size`` frames at a time; each chunk is encoded
        with CONTEXT frames either side (and those its identity removal reads), so it equals the same rows of the
        whole-sequence encoding."""
        context = CONTEXT + self.nets[encoder].nuisance.context
        for a in range(0, n, self.batch_size):
            b = min(a + self.batch_size, n)
            lo, hi = max(0, a - context), min(n, b + context)
            yield self.nets[encoder](inputs(lo, hi)[None])[0, a - lo : b - lo]  # (b - a, D)

    def mfcc_inputs(self, read: Callable[[int, int], np.ndarray]) -> Callable[[int, int], torch.Tensor]:
        def inputs(lo: int, hi: int) -> torch.Tensor:
            m = mfcc_windows_span(read, lo, hi, MODEL_FPS, self.cfg.mfcc_frames, self.cfg.mfcc_coeffs,
                                  self.cfg.mfcc_recipe)
            return torch.from_numpy(m).to(self.device)  # (hi - lo, F, C)

        return inputs

    @torch.no_grad()
    def audio_words(self, audio: np.ndarray, n: int) -> torch.Tensor:
        """(n, D) word features from in-memory 16 kHz audio, one per 25 fps frame."""
        return torch.cat(list(self.word_chunks("Ea_w", self.mfcc_inputs(read_zero_padded(audio)), n)))

    @torch.no_grad()
    def video_words(self, crops: np.ndarray) -> torch.Tensor:
        """(n, D) word features of aligned face crops (n, S, S, 3) uint8, one per frame."""
        return torch.cat(list(self.word_chunks("Ev_w", lambda lo, hi: self._to_input(crops[lo:hi]), len(crops))))

    def animate(self, crop: np.ndarray, words: torch.Tensor) -> np.ndarray:
        """An aligned face crop (S, S, 3) uint8 saying ``words`` (n, D) -> (n, S, S, 3) uint8 crops."""
        return np.concatenate([self._generate(crop[None], w) for w in _batches(self._g_words(words), self.batch_size)])

    def _g_words(self, words: torch.Tensor | Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """What G reads of a word stream (one (n, D) tensor or chunks of one): scaled by ``options.word_scale``,
        each frame with its neighbours (:func:`~davs.models.generator.contextualise_stream`), chunk by chunk."""
        chunks = [words] if isinstance(words, torch.Tensor) else words
        scale = self.options.word_scale
        return contextualise_stream(self.nets["G"], (w * scale if scale != 1.0 else w for w in chunks))

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

    def crop_inputs(self, frames: FrameFile, aligns: list[Alignment]) -> Callable[[int, int], torch.Tensor]:
        def inputs(lo: int, hi: int) -> torch.Tensor:
            return self._to_input(np.stack([cut(frames[i], aligns[i]) for i in range(lo, hi)]))  # (hi - lo, 3, S, S)

        return inputs

    @torch.no_grad()
    def _generate(self, crops: np.ndarray, words: torch.Tensor) -> np.ndarray:
        """crops (N, S, S, 3) uint8 aligned sources (or one, shared), words (N, D), rows of what G reads of the
        sequence (:meth:`_g_words`) -> (N, S, S, 3) uint8."""
        t0 = time.perf_counter()
        ep, g, ref = self.nets["Ep"], self.nets["G"], self._to_input(crops)  # (1 | N, 3, S, S)
        if len(crops) == 1:  # one face saying every word: Ep once
            gen = generate_frames(ep, g, ref, words[None], contextualised=True)[0]  # (1, N, D) -> (N, 3, S, S)
        else:  # each frame its own reference
            gen = generate_frames(ep, g, ref, words[:, None], contextualised=True)[:, 0]  # (N, 1, D) -> (N, 3, S, S)
        out = to_uint8(gen).cpu().numpy()
        self.timing.model_s += time.perf_counter() - t0
        return out

    def warp_landmarks(self, photo: np.ndarray) -> np.ndarray | None:
        """The photo's 68 landmarks when it will talk with its own lips (a lip head and landmarks), else None."""
        if self.lip_head is None:
            return None
        landmarks = self.aligner.landmarks(photo)
        if landmarks is None:
            log.warning("no facial landmarks in the photo: pasting the generator's mouth instead of warping its lips")
        return landmarks

    def render_photo(self, photo: np.ndarray, align: Alignment, words: Iterable[torch.Tensor],
                     landmarks: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """The photo saying ``words`` (chunks of (b, D), or one (n, D) tensor): frames (H, W, 3), made one batch
        at a time: with ``landmarks`` (:meth:`warp_landmarks`) the photo's own lips warped by the lip head's
        mouth states (each frame valid until the next is made), else G's change pasted on the photo."""
        if landmarks is not None:
            yield from warp_frames(LipWarper(photo, landmarks), self.lip_head, _batches(words, self.batch_size))
            return
        crop = cut(photo, align)[None]  # (1, S, S, 3)
        for chunk in _batches(self._g_words(words), self.batch_size):
            for g in self._generate(crop, chunk):
                yield paste_change(photo, crop[0], g, align, self.mask)

    def render_video(self, frames: FrameFile, order: np.ndarray, aligns: list[Alignment],
                     words: Iterable[torch.Tensor], unchanged: Iterable[int] = ()) -> Iterator[np.ndarray]:
        """Source frames ``frames[order[k]]`` saying ``words``, each frame its own identity reference; the
        frames in ``unchanged`` (no face found) pass through as they are."""
        skip, k = set(unchanged), 0
        for chunk in _batches(self._g_words(words), self.batch_size):
            idx = order[k : k + len(chunk)]
            src = [frames[i] for i in idx]
            crops = np.stack([cut(f, aligns[i]) for f, i in zip(src, idx)])
            for f, c, g, i in zip(src, crops, self._generate(crops, chunk), idx):
                yield f.copy() if i in skip else paste_change(f, c, g, aligns[i], self.mask)
            k += len(chunk)

    def generate(self, face_path: str | Path, out: str | Path, audio_path: str | Path | None = None,
                 driving_video: str | Path | None = None, fps: float = MODEL_FPS) -> dict:
        """Write ``out`` (mp4): the face (a photo or a video) saying the audio, or mimicking the driving
        video (:func:`davs.inference.generate.generate`)."""
        return run_request(self, face_path, out, audio_path, driving_video, fps)


def _batches(words: torch.Tensor | Iterable[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    """Word features in chunks of at most ``size`` rows, from one (n, D) tensor or an iterable of chunks."""
    if isinstance(words, torch.Tensor):
        words = [words]
    for w in words:
        for i in range(0, len(w), size):
            yield w[i : i + size]
