"""``davs generate``: CLI wrapper around :class:`davs.inference.Talker` (errors are messages, not tracebacks)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

log = logging.getLogger("davs.generate")


def run(args: argparse.Namespace) -> int:
    from davs.inference import GenerateError, Talker

    try:
        talker = Talker(args.checkpoint, args.device, args.batch_size)
        res = talker.generate(args.face, args.out, audio_path=args.audio, driving_video=args.driving_video,
                              fps=args.fps)
    except GenerateError as e:
        print(f"davs generate: error: {e}", file=sys.stderr)
        return 1
    t = talker.timing
    res["frames_per_s"] = round(t.frames / t.total_s, 1) if t.total_s else None
    print(json.dumps(res))
    return 0
