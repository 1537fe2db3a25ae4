"""DAVS losses: contrastive embedding, adversarial (uniform / domain confusion), reconstruction, GAN."""

from davs.losses.adversarial import domain_confusion_loss, domain_flip_loss, domain_loss, uniform_mse_loss
from davs.losses.contrastive import (
    contrastive_loss,
    embedding_contrastive_loss,
    frame_sync_loss,
    paper_contrastive_loss,
)
from davs.losses.gan import gan_d_loss, gan_g_loss
from davs.losses.reconstruction import lip_feature_loss, mask_box_mean, masked_l1, smoothness_l1

__all__ = ["contrastive_loss", "embedding_contrastive_loss", "frame_sync_loss", "domain_confusion_loss",
           "domain_flip_loss", "domain_loss", "gan_d_loss", "gan_g_loss", "lip_feature_loss", "mask_box_mean",
           "masked_l1", "paper_contrastive_loss", "smoothness_l1", "uniform_mse_loss"]
