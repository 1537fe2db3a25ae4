"""The ``davs`` command: one sub-command per pipeline stage, plus ``generate`` and ``check-params``."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

# Sub-command -> the function that runs it. Functions are imported only when their command runs, so a
# stage's code is exactly the import closure of its entry here (davs/provenance.py; tests/test_dvc_deps.py
# checks dvc.yaml's deps against it).
COMMANDS = {
    "sources": "pipeline.stages:sources",
    "synth": "pipeline.stages:synth",
    "ingest-lrw": "pipeline.stages:ingest_lrw",
    "ingest-msceleb": "pipeline.stages:ingest_msceleb",
    "train": "pipeline.stages:train",
    "judges": "pipeline.stages:judges",
    "lips": "pipeline.stages:lips",
    "eval": "pipeline.evaluate:evaluate",
    "generate": "pipeline.generate:run",
}


def _entry(spec: str) -> Callable[..., Any]:
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _message(err: BaseException) -> str:
    """The error's own message, also when a DataLoader worker raised it (torch wraps it in a traceback)."""
    text = str(err)
    if "Original Traceback" in text:
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


def _terminate(signum: int, _frame: Any) -> None:
    """SIGTERM (a scheduler, ``kill``, Prefect cancelling a run) unwinds like Ctrl-C: temporary files and
    staging directories are removed by their ``finally`` blocks, worker processes die with this one."""
    raise SystemExit(128 + signum)


def _terminate_now(signum: int, _frame: Any) -> None:
    """SIGTERM once the command's work is over (interpreter shutdown, where libraries' ``atexit`` hooks run):
    nothing is left to clean up, and unwinding there would only print a traceback from inside the hook."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, _terminate_now)


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="davs", description=__doc__ + " See README.md.")
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub.add_parser("sources", help="list the real datasets' files (size, mtime) for DVC -> data/sources/")
    sub.add_parser("synth", help="generate the embedded LRW- and MS-Celeb-format corpus")
    sub.add_parser("ingest-lrw", help="LRW tree -> WebDataset shards + data-quality report")
    sub.add_parser("ingest-msceleb", help="MS-Celeb TSV / RecordIO -> WebDataset shards + data-quality report")
    t = sub.add_parser("train", help="run a training stage (joint, disent, gen); resumes from checkpoints/")
    t.add_argument("stage", choices=["joint", "disent", "gen"])
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    sub.add_parser("judges", help="train the evaluation judges (mouth-state regressor, SyncNet) -> models/judges.pt")
    sub.add_parser("lips", help="fit the lip head (mouth shape from word features) for davs generate -> models/lips.pt")
    e = sub.add_parser("eval", help="evaluate on the test split -> reports/metrics.json, plots, samples")
    e.add_argument("--device", default="auto")
    c = sub.add_parser("check-params", help="validate params.yaml and print it (the DVC stage writes --out)")
    c.add_argument("--out", help="on success, also write this marker file, whose content does not depend on "
                                 "the params (every stage depends on it, so bad params stop DVC first)")
    g = sub.add_parser("generate", help="make a face say an audio, or mimic a driving video")
    g.add_argument("--face", required=True, help="photo (jpg/png) or video (mp4...) with the face to animate")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", help="speech to say: wav/mp3/m4a/... (any rate, any length), or a video's audio")
    src.add_argument("--text", help="text to say, spoken by the bundled eSpeak NG (see --voice, --rate)")
    src.add_argument("--driving-video", help="video whose lip motion (and audio, if it has any) the face mimics")
    g.add_argument("--voice", default="en-us", help="eSpeak NG voice for --text, e.g. en-us, en-gb, de, fr (default en-us)")
    g.add_argument("--rate", type=int, default=175, help="words per minute for --text, 80..450 (default 175)")
    g.add_argument("--out", required=True, help="output mp4 (H.264 + AAC)")
    g.add_argument("--checkpoint", default="models/gen.pt", help="generator model file (default: models/gen.pt)")
    g.add_argument("--renderer", choices=["warp", "paste"], default="warp",
                   help="photos: warp (the photo's own lips, moved by the lip head at the photo's resolution; default) "
                        "or paste (the generator's mouth change pasted on the photo)")
    g.add_argument("--lips", help="lip head model file for --renderer warp (default: lips.pt beside --checkpoint; "
                                  "without one, the generator's mouth is pasted)")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda")
    g.add_argument("--batch-size", type=int, default=64, help="frames generated per forward pass")
    g.add_argument("--fps", type=float, default=25.0, help="output frame rate (the model runs at 25 fps)")
    g.add_argument("--max-gap", type=int, default=25,
                   help="face videos: frames without a face filled from their neighbours (default 25 = 1 s); "
                        "longer gaps pass through unchanged")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g.add_argument("--finetune-steps", type=int, default=0,
                   help="Adam steps adapting Ep and G to the face before it talks (the official DAVS: 5; default 0)")
    g.add_argument("--word-scale", type=float, default=1.0,
                   help="multiply the word features by this (the official DAVS: 1.5 for audio, 0.8 for video; default 1)")
    args = ap.parse_args(argv)
    _setup_logging(args.verbose)
    log = logging.getLogger("davs")

    if args.cmd == "generate":
        return _entry(COMMANDS["generate"])(args)
    from pipeline.params import ParamsError, load_params

    try:
        p = load_params(args.params)
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.cmd == "check-params":
        print(json.dumps(p.model_dump(), indent=2))
        if args.out:
            from pathlib import Path

            from davs.files import atomic_write_text

            atomic_write_text(Path(args.out), json.dumps({"params": args.params, "valid": True}) + "\n")
        return 0
    from davs.errors import DavsError

    run = _entry(COMMANDS[args.cmd])
    try:
        out = run(p, args.stage, args.device) if args.cmd == "train" else (
            run(p, args.device) if args.cmd == "eval" else run(p))
    except (DavsError, OSError) as err:  # OSError: a missing input, a full disk, a permission
        log.error("%s: %s", args.cmd, _message(err))
        return 1
    except MemoryError:
        log.error("%s: out of memory: lower the batch size or the number of workers in %s", args.cmd, args.params)
        return 1
    log.info("%s done: %s", args.cmd, json.dumps(out, default=str)[:2000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
