"""``davs generate``: CLI wrapper around :class:`davs.inference.Talker` (errors are messages, not tracebacks).

The request (options, input files, output path, device) is checked before the checkpoint is loaded or a
frame decoded; every problem is one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
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
    log.warning("no lip head at %s (dvc repro trains it): pasting the generator's mouth on photos", beside)
    return None


def run(args: argparse.Namespace) -> int:
    from davs.errors import DavsError
    from davs.inference import Talker
    from davs.inference.talk import TalkOptions, check_request

    try:
        check_request(args.face, args.out, args.audio, args.driving_video, args.fps, args.batch_size)
        options = TalkOptions(finetune_steps=args.finetune_steps, word_scale=args.word_scale)
        options.check()
        talker = Talker(args.checkpoint, args.device, args.batch_size, options=options, lips=_lips(args))
        res = talker.generate(args.face, args.out, audio_path=args.audio, driving_video=args.driving_video,
                              fps=args.fps)
    except DavsError as e:
        print(f"davs generate: error: {e}", file=sys.stderr)
        return 1
    except MemoryError:
        print("davs generate: error: out of memory: lower --batch-size", file=sys.stderr)
        return 1
    t = talker.timing
    res["frames_per_s"] = round(t.frames / t.total_s, 1) if t.total_s else None
    print(json.dumps(res))
    return 0
