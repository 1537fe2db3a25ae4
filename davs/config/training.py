"""What the training stages take: the loop, each stage's loss weights and learning rates, the lip head's fit.

The later stages keep the earlier ones' losses, so their hyper-parameters hold the earlier ones'
(``DisentHParams.joint``, ``GenHParams.disent``) instead of copies of some of their fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from davs.config.types import Frac, NonNeg, NonNegF, Pos, PosF


@dataclass
class LoopConfig:
    steps: Pos
    optimizer: Literal["adamw", "adam"]
    weight_decay: NonNegF  # on weight matrices and kernels only
    grad_clip: NonNegF  # 0 = off
    log_every: Pos
    val_every: Pos
    ckpt_every: Pos
    amp: bool  # bf16 autocast on CUDA, and on a CPU with AMX (fp32 on other CPUs)
    compile: bool  # torch.compile the modules
    amp_on_cpu: bool = False  # autocast on the CPU too: where it has bf16 units (davs.devices.cpu_has_bf16_units)
    seed: int = 0
    checkpoint: str | None = None  # resume file (last.pt), written every ckpt_every steps
    fingerprint: dict = field(default_factory=dict)  # what must match for a resume to be valid


@dataclass(frozen=True)
class JointHParams:
    lr: PosF
    contrastive_weight: NonNegF  # clip-level contrastive loss (margin) on pooled audio / video word features
    frame_sync_weight: NonNegF  # frame-level audio-visual synchronisation (InfoNCE) of per-frame word features
    sync_negatives: Literal["batch", "clip"]  # frame sync's negatives: other words' clips too | the clip's own frames
    margin: PosF
    identity_weight: NonNegF  # Cp's cross-entropy on MS-Celeb faces
    domain_weight: NonNegF
    warmup_steps: NonNeg  # contrastive and domain terms ramp up linearly over these steps
    # the word encoders' training inputs varied clip by clip (davs/training/augment.py; joint and disent; 0 = off)
    aug_scale: NonNegF  # the mouth's width scaled by up to 1 + aug_scale (log-uniform, about the mouth box)
    aug_shift: NonNegF  # the face shifted by up to this share of the crop, each direction
    aug_colour: NonNegF  # per-channel gain in 1 +- aug_colour and offset in +- aug_colour
    aug_warp: NonNegF  # the MFCC's mel axis warped by a factor in 1 +- aug_warp (vocal tract length)
    # the official DAVS's forms (model.variant: paper)
    contrastive_form: Literal["davs", "paper"]  # ours (pooled, negatives across words) | official L2 contrastive
    domain_loss: Literal["confusion", "flip"]  # ours (the discriminator's probability to 1/2) | official flipped BCE


@dataclass(frozen=True)
class DisentHParams:
    joint: JointHParams  # the joint stage's embedding losses, kept (its margin, form and frame-sync weight)
    lr: PosF
    dis_lr: PosF
    uniform_weight: NonNegF  # the encoders' uniform-softmax (MSE to 1/N) loss against each dis-classifier
    keep_weight: NonNegF  # weight of the stage-1 losses that keep the embedding
    dis_steps: Pos  # dis-classifier updates per encoder update
    dis_memory: Pos  # the dis-classifiers train on the features of the last dis_memory steps
    identity_ridge: PosF  # model.identity_rank's subspace: ridge of its reduced-rank regression from identity vectors
    identity_clips: Pos  # ... fitted on this many training clips, after the last step
    identity_form: Literal["plain", "motion", "slow"]  # ... removed by the orthogonal projection, or by the one that keeps the
    # frames' motion about their clip's mean, or only the directions' local mean (davs/models/identity_nuisance.py)
    identity_window: NonNeg  # ... slow: the frames either side of that local mean
    head_steps: NonNeg  # then Cw refitted for this many steps on the features with the subspace removed
    head_lr: PosF
    clip_id_weight: NonNegF  # the label-free adversary: the clip's own identity read from its word features (0 = off)
    clip_id_memory: Pos  # ... by a ridge regression on the pooled features of the last clip_id_memory steps
    clip_id_ridge: PosF  # ... its ridge, relative to the standardised features' unit variance
    clip_id_clusters: NonNeg  # ... its target: k-means pseudo-speakers of the identity vectors (0: the vectors)
    # the official DAVS's form (model.variant: paper)
    uniform_form: Literal["davs", "paper"]  # ours (summed over classes, x C) | official (mean per element)


@dataclass(frozen=True)
class GenHParams:
    disent: DisentHParams  # end to end: the earlier stages' losses and adversaries, with their forms and weights
    lr: PosF
    d_lr: PosF
    l1_weight: NonNegF
    mouth_weight: NonNegF  # L1 on the mouth box, relative to the whole-face L1
    gan_weight: NonNegF
    lip_weight: NonNegF  # lip-feature loss: the frozen Ev_w must read the generated mouth as the real one (0 = off)
    mask_weight: NonNegF  # attention penalty on the mouth box (GANimation), against a mask saturated to "copy"
    sync_gan_weight: NonNegF  # the discriminator's mouth head, with mismatched audio as negatives (0 = off)
    # the official DAVS's forms (model.variant: paper)
    smooth_weight: NonNegF  # L1 between consecutive audio-driven frames outside the mouth (x5 there; 0 = off)
    soft_labels: Frac  # the discriminator's labels softened by u ~ U(0, soft_labels) (official: 0.1)
    train_encoders: bool  # Ev_w, Ea_w, Ep and Cw train with G, keeping the embedding losses and the adversaries
    embed_weight: NonNegF  # end to end: weight of the word cross-entropies and the contrastive loss
    clip_id_weight: NonNegF  # end to end: disent's label-free adversary keeps the speaker out of the word features (0 = off)


@dataclass(frozen=True)
class WordHeadHParams:
    lr: float
    joint: JointHParams  # the embedding stages' contrastive and frame-sync losses, kept


@dataclass(frozen=True)
class LipHeadConfig:
    context: NonNeg  # word-feature frames either side the head reads
    ridge: PosF  # L2 penalty, relative to the mean diagonal of the features' Gram matrix
