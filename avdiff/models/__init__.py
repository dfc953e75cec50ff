"""Models: shared AV encoder (tokens), joint diffusion transformer, stage-1 autoencoders, neural vocoder."""

from avdiff.models.dit import DiT
from avdiff.models.trunks import DualTowerDiT, JointDiT, build_dit
from avdiff.models.encoder import SharedAVEncoder
from avdiff.models.autoencoder import IdentityAE, JointAE, SeparateAE, ae_loss, build_autoencoder
from avdiff.models.vocoder import Vocoder, build_vocoder, vocoder_loss
