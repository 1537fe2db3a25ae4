"""Inference: make any face say any audio, or mimic any video (``davs generate``)."""

from davs.inference.talk import GenerateError, Talker, TalkOptions

__all__ = ["GenerateError", "TalkOptions", "Talker"]
