"""Model hyper-parameters shared by every DAVS component (nanoGPT-style config dataclass)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from davs.config.types import Box, NonNeg, Pos


@dataclass(frozen=True)
class DAVSConfig:
    """Sizes of the DAVS networks (the pipeline's ``model.*`` and ``data.*`` settings; the paper's:
    :meth:`davs_size`). A model file keeps its config (:meth:`to_dict`)."""

    image_size: Pos  # square face crops
    feat_dim: Pos  # word and identity feature size (DAVS: 256)
    width: Pos  # encoder base channels
    gen_width: Pos  # generator base channels
    disc_width: Pos  # discriminator base channels
    num_words: Pos  # word classes (LRW: 500; from the shards)
    num_ids: Pos  # identity classes (the MS-Celeb subset; from the shards)
    mfcc_frames: Pos  # MFCC window per video frame
    mfcc_coeffs: Pos
    mfcc_recipe: Literal["torchaudio", "syncnet"]  # how the audio was featurised (davs.data.features): inference must match
    window: Pos  # consecutive frames seen by the temporal discriminator
    mouth_box: Box
    variant: Literal["davs", "paper"]  # ours, or the official DAVS's networks (see build())
    dis_frames: Pos  # paper variant: consecutive frames the word-from-identity classifier reads (official 20)
    identity_rank: NonNeg  # identity directions the word encoders' last layer removes (davs.models.identity_nuisance)
    gen_conceal: bool  # G's reference has its mouth box concealed: G draws every mouth (davs.models.generator)
    gen_context: NonNeg  # word-feature frames either side G reads for each frame it draws (0 = that frame's alone)

    # the fields the encoders and classifiers depend on (what disent / gen must share with joint)
    ENCODER_FIELDS = ("image_size", "feat_dim", "width", "num_words", "num_ids", "mfcc_frames", "mfcc_coeffs",
                      "mfcc_recipe", "mouth_box", "variant", "identity_rank")
    VARIANTS = ("davs", "paper")
    # fields added after model files were first written, with the value every earlier file was trained with:
    # a file that does not name a field is read with this value, not the current default
    LEGACY = {"variant": "davs", "dis_frames": 20, "gen_conceal": False, "identity_rank": 0, "gen_context": 0}
    # fields earlier files name that no network depends on any more (num_speakers: training reads no speakers;
    # audio_conditioned_disc: the temporal discriminator is always conditioned on the audio)
    RETIRED = ("num_speakers", "audio_conditioned_disc")

    def __post_init__(self) -> None:
        if self.variant not in self.VARIANTS:
            raise ValueError(f"model variant must be one of {self.VARIANTS} (got {self.variant!r})")
        if self.variant == "paper" and self.gen_conceal:
            raise ValueError("gen_conceal: the paper variant's generator reads the whole reference (set it False)")
        if self.variant == "paper" and self.gen_context:
            raise ValueError("gen_context: the paper variant's generator reads each frame's word alone (set it 0)")

    @staticmethod
    def davs_size(num_words: int = 500, num_ids: int = 40145, variant: str = "davs") -> DAVSConfig:
        """The paper's setting: 256x256 faces, 256-d features, 500 LRW words, 40,145 MS-Celeb identities, 20 x 12
        MFCC windows. ``variant="paper"`` also takes the official code's widths (Ep 32, G and D 64), its 6-frame
        temporal discriminator, 20-frame Cw_p and SyncNet MFCCs."""
        common = dict(image_size=256, feat_dim=256, num_words=num_words, num_ids=num_ids, mfcc_frames=20,
                      mfcc_coeffs=12, mouth_box=(0.62, 0.25, 0.95, 0.75), dis_frames=20, identity_rank=0,
                      gen_context=0)
        if variant == "paper":
            return DAVSConfig(**common, width=32, gen_width=64, disc_width=64, window=6, mfcc_recipe="syncnet",
                              variant="paper", gen_conceal=False)
        return DAVSConfig(**common, width=64, gen_width=64, disc_width=64, window=5, mfcc_recipe="torchaudio",
                          variant=variant, gen_conceal=True)

    def to_dict(self) -> dict:
        return {**asdict(self), "mouth_box": list(self.mouth_box)}

    @staticmethod
    def from_dict(d: dict) -> DAVSConfig:
        kept = {k: v for k, v in d.items() if k not in DAVSConfig.RETIRED}
        return DAVSConfig(**{**DAVSConfig.LEGACY, **kept, "mouth_box": tuple(d["mouth_box"])})
