"""What the evaluation judges take (:mod:`davs.judges.train`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from davs.config.types import Box, NonNeg, Pos, PosF


@dataclass(frozen=True)
class JudgeConfig:
    seed: int  # the judges' own seed, not the pipeline's: they share nothing with the models they judge
    image_size: Pos
    mouth_box: Box
    margin: NonNeg  # ROI shift augmentation, pixels
    width: Pos
    embed_dim: Pos  # SyncNet embedding size
    stack: Pos  # SyncNet: consecutive mouth frames per video input
    max_shift: Pos  # SyncNet: audio offsets searched, +/- frames (Wav2Lip: 15 at 25 fps; 7 fits LRW's 29 frames)
    mouth_steps: Pos
    mouth_batch: Pos
    sync_steps: Pos
    sync_batch: Pos
    lr: PosF
    temperature: PosF

    def to_dict(self) -> dict:
        return {**asdict(self), "mouth_box": list(self.mouth_box)}

    @staticmethod
    def from_dict(d: dict) -> JudgeConfig:
        return JudgeConfig(**{**d, "mouth_box": tuple(d["mouth_box"])})
