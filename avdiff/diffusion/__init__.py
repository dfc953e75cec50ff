"""Diffusion: schedules, objectives, the joint training loss, samplers, guidance and conditional sampling modes.

Works on dicts of arrays {'video': [B, ...], 'audio': [B, ...]} and an abstract network
`pred_fn(x: dict, t: dict of [B], label [B]) -> dict`, with continuous time t in [0, 1] (0 = clean) per modality.
"""

from avdiff.diffusion.conditioning import MODES, frame_masks, sample
from avdiff.diffusion.diagnostics import denoising_errors
from avdiff.diffusion.guidance import guided_pred_fn
from avdiff.diffusion.loss import training_loss
from avdiff.diffusion.objectives import OBJECTIVES
from avdiff.diffusion.samplers import SAMPLERS, make_denoiser, num_evals
from avdiff.diffusion.schedules import SCHEDULES, Schedule, from_config as schedule_from_config, resolution_shift
from avdiff.diffusion.windows import fuse_overlaps
