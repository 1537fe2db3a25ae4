"""``davs generate``: CLI wrapper around :class:`davs.inference.Talker` (errors are messages, not tracebacks).

The request (options, input files, output path, device) is checked before the checkpoint is loaded or a
frame decoded; every problem is one line on stderr and exit code 1. Ctrl-C (SIGINT) and SIGTERM stop it with
exit code 130 / 143, leaving neither the output nor a temporary file (the mp4 is written under a temporary
name beside ``--out`` and renamed when complete).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("davs.generate")


def _lips(args: argparse.Namespace) -> Path | None:
    """The lip head for ``--renderer warp``: ``--lips``, else ``lips.pt`` beside the checkpoint if there is one."""
    if args.renderer != "warp":
        return None
    if args.lips:
        return Path(args.lips)
    beside = Path(args.checkpoint).with_name("lips.pt")
    if beside.exists():
        return beside
    from davs.inference.request import is_photo

    if is_photo(args.face):
            log.warning("no lip head at %s (dvc repro trains it): pasting the generator's mouth on the photo", beside)
    return None


def speak(text: str, voice: str, rate: int, out: Path) -> Path:
    """``text`` spoken by the bundled eSpeak NG into a wav file at ``out``."""
    import wave

    from davs.inference import GenerateError
    from davs.synth.espeak import Voice, synthesize

    if not text.strip():
        raise GenerateError("--text is empty")
    if not 80 <= rate <= 450:
        raise GenerateError(f"--rate must be 80..450 words per minute (got {rate})")
    try:
        speech = synthesize(text, Voice(name=voice, rate=rate))
    except (RuntimeError, ValueError, OSError) as e:
        raise GenerateError(f"eSpeak NG cannot speak with voice {voice!r}: {e}") from None
    if len(speech.samples) == 0:
        raise GenerateError(f"eSpeak NG made no sound for --text (voice {voice!r})")
    with wave.open(str(out), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(speech.sample_rate)
        f.writeframes(speech.samples.tobytes())
    return out


def run(args: argparse.Namespace) -> int:
    from davs.errors import DavsError

    try:
        from davs.inference import Talker
        from davs.inference.request import TalkOptions, check_request

        with tempfile.TemporaryDirectory(prefix="davs-text-") as tmp:
            audio = speak(args.text, args.voice, args.rate, Path(tmp) / "text.wav") if args.text else args.audio
            check_request(args.face, args.out, audio, args.driving_video, args.fps, args.batch_size)
            options = TalkOptions(finetune_steps=args.finetune_steps, word_scale=args.word_scale)
            options.check()
            talker = Talker(args.checkpoint, args.device, args.batch_size, options=options, lips=_lips(args),
                            max_gap=args.max_gap, progress=not args.quiet)
            res = talker.generate(args.face, args.out, audio_path=audio, driving_video=args.driving_video,
                                  fps=args.fps)
    except DavsError as e:
        print(f"davs generate: error: {e}", file=sys.stderr)
        return 1
    except MemoryError:
        print("davs generate: error: out of memory: lower --batch-size", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"davs generate: interrupted: {args.out} was not written", file=sys.stderr)
        return 130
    t = talker.timing
    res["frames_per_s"] = round(t.frames / t.total_s, 1) if t.total_s else None
    print(json.dumps(res))
    return 0
