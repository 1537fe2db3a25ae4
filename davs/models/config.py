"""Model hyper-parameters shared by every DAVS component (nanoGPT-style config dataclass)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class DAVSConfig:
    """Sizes of the DAVS networks. The default is the small CPU model; :meth:`davs_size` the paper's."""

    image_size: int = 64  # square face crops
    feat_dim: int = 128  # word and identity feature size
    width: int = 16  # encoder base channels
    gen_width: int = 16  # generator base channels
    disc_width: int = 16  # discriminator base channels
    num_words: int = 500  # word classes (LRW: 500)
    num_ids: int = 1000  # identity classes (MS-Celeb subset)
    mfcc_frames: int = 20
    mfcc_coeffs: int = 12
    mfcc_recipe: str = "torchaudio"  # how the audio was featurised (davs.data.features): inference must match
    window: int = 5  # frames seen by the temporal discriminator
    mouth_box: tuple[float, float, float, float] = (0.62, 0.25, 0.95, 0.75)  # relative (y0, x0, y1, x1)
    audio_conditioned_disc: bool = True
    variant: str = "davs"  # "davs" (ours) or "paper" (the official DAVS's networks: see build())
    dis_frames: int = 20  # paper variant: consecutive frames the word-from-identity classifier reads (official 20)
    identity_rank: int = 0  # directions of identity the word encoders' last layer removes (davs.models.identity_nuisance)
    gen_conceal: bool = True  # G's reference has its mouth box concealed: G draws every mouth (davs.models.generator)

    # the fields the encoders and classifiers depend on (what disent / gen must share with joint)
    ENCODER_FIELDS = ("image_size", "feat_dim", "width", "num_words", "num_ids", "mfcc_frames", "mfcc_coeffs",
                      "mfcc_recipe", "mouth_box", "variant", "identity_rank")
    VARIANTS = ("davs", "paper")
    # fields added after model files were first written, with the value every earlier file was trained with:
    # a file that does not name a field is read with this value, not the current default
    LEGACY = {"variant": "davs", "dis_frames": 20, "gen_conceal": False, "identity_rank": 0}
    # fields earlier files name that no network depends on any more (num_speakers: training reads no speakers)
    RETIRED = ("num_speakers",)

    def __post_init__(self) -> None:
        if self.variant not in self.VARIANTS:
            raise ValueError(f"model variant must be one of {self.VARIANTS} (got {self.variant!r})")
        if self.variant == "paper" and self.gen_conceal:
            raise ValueError("gen_conceal: the paper variant's generator reads the whole reference (set it False)")

    @staticmethod
    def davs_size(num_words: int = 500, num_ids: int = 40145, variant: str = "davs") -> DAVSConfig:
        """The paper's setting: 256x256 faces, 256-d features, 500 LRW words, 40,145 MS-Celeb identities.
        ``variant="paper"`` also takes the official code's widths (Ep 32, G and D 64), its 6-frame temporal
        discriminator, 20-frame Cw_p and SyncNet MFCCs."""
        if variant == "paper":
            return DAVSConfig(image_size=256, feat_dim=256, width=32, gen_width=64, disc_width=64, window=6,
                              num_words=num_words, num_ids=num_ids, mfcc_recipe="syncnet", variant="paper", dis_frames=20,
                              gen_conceal=False)
        return DAVSConfig(image_size=256, feat_dim=256, width=64, gen_width=64, disc_width=64,
                          num_words=num_words, num_ids=num_ids, variant=variant)

    def to_dict(self) -> dict:
        return {**asdict(self), "mouth_box": list(self.mouth_box)}

    @staticmethod
    def from_dict(d: dict) -> DAVSConfig:
        kept = {k: v for k, v in d.items() if k not in DAVSConfig.RETIRED}
        return DAVSConfig(**{**DAVSConfig.LEGACY, **kept, "mouth_box": tuple(d["mouth_box"])})
