"""The DAVS networks, one file per component, named as in the paper."""

import torch

from davs.checkpoint import CheckpointError
from davs.config.model import DAVSConfig
from davs.models.audio_word_encoder import AudioWordEncoder
from davs.models.dis_classifiers import IdentityFromWord, WordFromIdentity
from davs.models.domain_discriminator import DomainDiscriminator
from davs.models.generator import Generator, generate_frames
from davs.models.identity_classifier import IdentityClassifier
from davs.models.identity_encoder import IdentityEncoder, IdentityFeatures
from davs.models.paper_dis_classifier import WordFromIdentityMaps
from davs.models.paper_generator import PaperGenerator
from davs.models.paper_identity_encoder import PaperIdentityEncoder
from davs.models.paper_temporal_discriminator import PaperTemporalDiscriminator
from davs.models.paper_video_word_encoder import FanVideoWordEncoder
from davs.models.temporal_discriminator import TemporalDiscriminator
from davs.models.video_word_encoder import VideoWordEncoder
from davs.models.word_classifier import WordClassifier

__all__ = [
    "AudioWordEncoder", "DAVSConfig", "DomainDiscriminator", "FanVideoWordEncoder", "Generator", "IdentityClassifier",
    "IdentityEncoder", "IdentityFeatures", "IdentityFromWord", "PaperGenerator", "PaperIdentityEncoder",
    "PaperTemporalDiscriminator", "TemporalDiscriminator", "VideoWordEncoder", "WordClassifier", "WordFromIdentity",
    "WordFromIdentityMaps", "build", "generate_frames", "load_nets",
]


def build(cfg: DAVSConfig, parts: tuple[str, ...] | None = None) -> dict:
    """Instantiate the named DAVS components (all by default) from one config.

    ``cfg.variant == "paper"`` takes the official DAVS's networks where they differ from ours: Ep (max-feature
    blocks, maps at 1/4 .. 1/32), Ev_w (FAN on the whole face), Cw_p (on Ep's 1/4 maps of ``dis_frames``
    frames), G (deconv decoder, one skip, no attention mask) and the temporal discriminator (PatchGAN with a
    mouth + raw-MFCC head). Ea_w, Cw, Cp, the domain discriminator and Cp_w are shared by both variants.
    """
    if cfg.variant == "paper":
        return _build_paper(cfg, parts)
    ep = lambda: IdentityEncoder(cfg.image_size, cfg.width, cfg.feat_dim)  # noqa: E731
    makers = {
        "Ev_w": lambda: VideoWordEncoder(cfg.image_size, cfg.width, cfg.feat_dim, cfg.mouth_box, cfg.identity_rank),
        "Ea_w": lambda: AudioWordEncoder(cfg.mfcc_frames, cfg.mfcc_coeffs, cfg.width, cfg.feat_dim,
                                         cfg.identity_rank),
        "Ep": ep,
        "Cw": lambda: WordClassifier(cfg.feat_dim, cfg.num_words),
        "Cp": lambda: IdentityClassifier(cfg.feat_dim, cfg.num_ids),
        "D_domain": lambda: DomainDiscriminator(cfg.feat_dim),
        "Cw_p": lambda: WordFromIdentity(cfg.feat_dim, cfg.num_words),
        "Cp_w": lambda: IdentityFromWord(cfg.feat_dim, cfg.num_ids),
        "G": lambda: (lambda e: Generator(e.out_channels, e.skip_channels, cfg.feat_dim, cfg.gen_width,
                                                e.fmap_size,
                                                conceal_box=cfg.mouth_box if cfg.gen_conceal else None,
                                                context=cfg.gen_context))(ep()),
        "D_temporal": lambda: TemporalDiscriminator(cfg.window, cfg.disc_width, cfg.image_size, cfg.feat_dim,
                                                    cfg.mouth_box),
    }
    names = parts or tuple(makers)
    unknown = set(names) - set(makers)
    if unknown:
        raise KeyError(f"unknown DAVS components {sorted(unknown)}")
    return {n: makers[n]() for n in names}


def _build_paper(cfg: DAVSConfig, parts: tuple[str, ...] | None) -> dict:
    names = parts or ("Ev_w", "Ea_w", "Ep", "Cw", "Cp", "D_domain", "Cw_p", "Cp_w", "G", "D_temporal")
    paper = {
        "Ev_w": lambda: FanVideoWordEncoder(cfg.image_size, cfg.width, cfg.feat_dim, identity_rank=cfg.identity_rank),
        "Ep": lambda: PaperIdentityEncoder(cfg.image_size, cfg.width, cfg.feat_dim),
        "Cw_p": lambda: WordFromIdentityMaps(2 * cfg.width, cfg.image_size // 4, cfg.num_words, cfg.dis_frames),
        "G": lambda: PaperGenerator(cfg.image_size, cfg.feat_dim, cfg.gen_width, 5 * cfg.width),
        "D_temporal": lambda: PaperTemporalDiscriminator(cfg.window, cfg.disc_width, cfg.image_size, cfg.mfcc_frames,
                                                         cfg.mfcc_coeffs, cfg.mouth_box),
    }
    shared = [n for n in names if n not in paper]
    built = build(DAVSConfig.from_dict({**cfg.to_dict(), "variant": "davs"}), tuple(shared)) if shared else {}
    unknown = set(names) - set(paper) - set(built)
    if unknown:
        raise KeyError(f"unknown DAVS components {sorted(unknown)}")
    return {n: built[n] if n in built else paper[n]() for n in names}


def load_nets(ck: dict, parts: tuple[str, ...] | None = None, device: str | torch.device = "cpu",
              source: str = "checkpoint") -> dict[str, torch.nn.Module]:
    """The named components (all the file holds by default) of a model file (:func:`davs.checkpoint.load_model`),
    built from its own config, loaded, on ``device``, in eval mode."""
    try:
        cfg = DAVSConfig.from_dict(ck["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: its model_config is not a davs model config ({e})") from None
    names = parts or tuple(ck["nets"])
    missing = [k for k in names if k not in ck["nets"]]
    if missing:
        raise CheckpointError(f"{source} lacks {missing} (it holds {sorted(ck['nets'])}): use models/gen.pt")
    nets = build(cfg, names)
    try:
        for k, m in nets.items():
            m.load_state_dict(ck["nets"][k])
            m.to(device).eval()
    except RuntimeError as e:
        raise CheckpointError(f"{source} does not match its own model config: {str(e).splitlines()[0]}") from None
    return nets
