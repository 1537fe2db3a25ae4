"""One ``davs generate`` request: check it, decode the inputs into temporary stores, render, encode.

Everything streams (:mod:`davs.inference.talk`): the audio is decoded once into a raw file read back span by
span, video inputs into raw frame files, frames are encoded as they are made; the stores are removed when
the request ends, however it ends.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from davs.data.features import SAMPLE_RATE
from davs.face.align import Alignment, cut
from davs.inference.request import MODEL_FPS, GenerateError, check_request, is_photo, load_photo
from davs.inference.resample import resample_stream
from davs.inference.stores import AudioTrack, FrameFile, encodable, has_audio, load_video
from davs.media import write_mp4

if TYPE_CHECKING:
    from davs.inference.talk import Talker

log = logging.getLogger(__name__)


def generate(talker: Talker, face_path: str | Path, out: str | Path, audio_path: str | Path | None = None,
             driving_video: str | Path | None = None, fps: float = MODEL_FPS) -> dict:
    """The request checked before any work; the photo's face found before any audio is decoded; the audio
    decoded once into a temporary store; then :func:`_write`."""
    check_request(face_path, out, audio_path, driving_video, fps, talker.batch_size)
    t0 = time.perf_counter()
    photo = load_photo(face_path) if is_photo(face_path) else None
    if photo is not None:  # fail on a face-less photo before decoding any audio
        aligns, missing = talker.track([photo], "the face input")
        if missing:
            raise GenerateError("no face found in the face input (checked 1 frame)")
        align = aligns[0]
    with tempfile.TemporaryDirectory(prefix="davs-generate-") as tmp:
        work = Path(tmp)
        if driving_video is not None and not has_audio(driving_video):
            log.warning("%s has no audio track: the output is silent (the lips follow the video)", driving_video)
            audio = None
        else:
            audio = AudioTrack(driving_video or audio_path, work)
        try:
            return _write(talker, out, photo, align if photo is not None else None, face_path, audio,
                          driving_video, fps, work, t0)
        finally:
            if audio is not None:
                audio.close()


def _write(talker: Talker, out: str | Path, photo: np.ndarray | None, align: Alignment | None,
           face_path: str | Path, audio: AudioTrack | None, driving_video: str | Path | None, fps: float,
           work: Path, t0: float) -> dict:
    """Word features (from the audio or the driving video) -> frames (the photo warped or pasted, or the
    face video looped back and forth) -> the output frame rate -> H.264 + AAC."""
    stores: list[FrameFile] = []
    try:
        if driving_video is not None:
            drive = load_video(driving_video, work, "drive")
            stores.append(drive)
            n = len(drive)
            drive_aligns, _ = talker.track((drive[i] for i in range(n)), "the driving video")  # gaps: filled
            words = talker.word_chunks("Ev_w", talker.crop_inputs(drive, drive_aligns), n)
        else:
            n = int(audio.samples / SAMPLE_RATE * MODEL_FPS)  # audio is set: only a driving video may lack it
            if n < 1:
                raise GenerateError(f"audio is {audio.samples / SAMPLE_RATE * 1000:.0f} ms long: "
                                    "shorter than one frame (40 ms)")
            words = talker.word_chunks("Ea_w", talker.mfcc_inputs(audio.read_floored), n)
        first, words = _peek(words)
        landmarks = talker.warp_landmarks(photo) if photo is not None else None
        if landmarks is not None and (talker.options.finetune_steps or talker.options.word_scale != 1.0):
            log.warning("--finetune-steps and --word-scale tune G, which the photo's lip warp does not use")
        if photo is not None:
            ref_crop = cut(photo, align)
            frames = talker.render_photo(photo, align, words, landmarks)
        else:  # loop the face video back and forth to cover the audio (as Wav2Lip does)
            face = load_video(face_path, work, "face")
            stores.append(face)
            aligns, unchanged = talker.track((face[i] for i in range(len(face))), "the face input")
            if unchanged:
                log.warning("the face input: those frames pass through unchanged")
            ref_crop = cut(face[0], aligns[0])
            m = len(face)
            pingpong = np.r_[np.arange(m), np.arange(m - 2, 0, -1)] if m > 2 else np.arange(m)
            frames = talker.render_video(face, pingpong[np.arange(n) % len(pingpong)], aligns, words, unchanged)
        n_out = n if fps == MODEL_FPS else max(1, int(round(n / MODEL_FPS * fps)))
        if fps != MODEL_FPS:
            frames = resample_stream(frames, MODEL_FPS, fps, n_out)
        stop = int(round(n / MODEL_FPS * SAMPLE_RATE))
        frames = encodable(frames, n_out, talker.progress)
        with nullcontext() if landmarks is not None else talker.adapted(ref_crop, first[0]):
            try:
                write_mp4(out, frames, fps=int(round(fps)), audio=audio.chunks(stop) if audio else None,
                          sample_rate=SAMPLE_RATE)
            except OSError as e:
                raise GenerateError(f"cannot write {out}: {e}") from None
    finally:
        for s in stores:
            s.close()
    talker.timing.frames += n
    talker.timing.total_s += time.perf_counter() - t0
    return {"out": str(out), "frames": n_out, "fps": fps, "seconds": round(n / MODEL_FPS, 3),
            "mode": "video" if driving_video is not None else "audio"}


def _peek(chunks: Iterable[torch.Tensor]) -> tuple[torch.Tensor, Iterator[torch.Tensor]]:
    """The first chunk of a stream, and the whole stream again."""
    it = iter(chunks)
    first = next(it)
    return first, itertools.chain([first], it)
