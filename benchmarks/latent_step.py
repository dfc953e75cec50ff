"""What a DiT training step costs on pixel patches, on latents through the frozen encoder, and on cached latents, in
one process (so the ratios hold on a loaded machine), plus the stage-1 autoencoder's own step.

    python -m benchmarks.latent_step --out=benchmarks/latent_step.md

Members: configs/tiny.py (pixel patches); configs/ablations/encoder_joint_ae.py (the same 160 + 40 token grid) with
its clips encoded in every step (the step before stage 1 paid once) and with the cached latents the step now reads
(`avdiff.train.stage1`); the joint autoencoder's training step (`tasks.autoencoder.stage_config`: batch
model.ae.batch_size), with the conv video stem and with the patch stem (configs/ablations/encoder_joint_ae_patch.py).
The full jitted train step (loss, grads, AdamW, EMA) on synthetic batches, one CPU device, a randomly initialised
autoencoder (the cost does not depend on its weights). Timing: after one warm-up call, `--repeats` rounds, each
timing `--steps` steps of every member in turn (interleaved, so a change in the machine's load hits all members
alike); the table gives each member's fastest round.
"""

from __future__ import annotations

import argparse
import time

from benchmarks import report


def _compiled_step(config, task, batch, mesh):
  """(jitted step compiled for the batch, state, frozen params, batch on the device)."""
  import jax  # pylint: disable=g-import-not-at-top
  from avdiff import parallel  # pylint: disable=g-import-not-at-top
  from avdiff.train import optim, state as state_lib, step as step_lib  # pylint: disable=g-import-not-at-top
  tx = optim.make_optimizer(config.train)
  model, _, shardings, state = state_lib.create(config, task, tx, mesh)
  frozen = task.frozen_params()
  frozen_shardings = None if frozen is None else jax.tree.map(lambda _: parallel.replicated(mesh), frozen)
  fn = step_lib.make_train_step(config, task, model, tx, mesh, shardings, frozen_shardings)
  batch = jax.device_put(batch, parallel.batch_sharding(mesh, config.mesh.data_axes))
  compiled = fn.lower(state, batch, frozen).compile()
  state, metrics = compiled(state, batch, frozen)
  jax.block_until_ready(metrics)
  return compiled, state, frozen, batch


def _batches(config, batch_size: int, seed: int = 0) -> tuple[dict, dict]:
  """Synthetic (pixel batch, latent batch) of the config's shapes."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from avdiff import config_lib  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  d, lay = config.data, config_lib.layout(config)
  label = jnp.zeros((batch_size,), jnp.int32)
  pixels = {'video': jnp.asarray(rng.uniform(-1, 1, (batch_size, config_lib.num_frames(d), d.resolution, d.resolution,
                                                     3)), jnp.float32),
            'audio_mel': jnp.asarray(rng.uniform(-1, 1, (batch_size, config_lib.num_mel_frames(d), d.n_mels)),
                                     jnp.float32), 'label': label}
  latents = {'video_latent': jnp.asarray(rng.normal(size=(batch_size,) + tuple(lay.video_latent)), jnp.float32),
             'audio_latent': jnp.asarray(rng.normal(size=(batch_size,) + tuple(lay.audio_latent)), jnp.float32),
             'label': label}
  return pixels, latents


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=5, help='Steps per timed round.')
  parser.add_argument('--repeats', type=int, default=3, help='Timed rounds per member.')
  parser.add_argument('--out', default='', help='Markdown table file (e.g. benchmarks/latent_step.md).')
  args = parser.parse_args()

  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from avdiff import config_lib, models, parallel  # pylint: disable=g-import-not-at-top
  from avdiff.train.tasks import DiffusionTask  # pylint: disable=g-import-not-at-top
  from avdiff.train.tasks import autoencoder as autoencoder_task  # pylint: disable=g-import-not-at-top
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from configs.ablations import encoder_joint_ae  # pylint: disable=g-import-not-at-top
  from configs.ablations import encoder_joint_ae_patch  # pylint: disable=g-import-not-at-top

  def one_device(config):
    config.mesh.shape = ml_collections.ConfigDict({'data': 1, 'fsdp': 1, 'context': 1, 'tensor': 1})
    config_lib.validate(config, 1)
    return config

  pixel_cfg, latent_cfg = one_device(tiny.get_config()), one_device(encoder_joint_ae.get_config())
  mesh = parallel.make_mesh(latent_cfg.mesh, jax.devices()[:1])
  batch = int(pixel_cfg.train.global_batch_size)
  ae = models.build_autoencoder(latent_cfg, nnx.Rngs(0))
  pixels, latents = _batches(latent_cfg, batch)
  ae_cfg = one_device(autoencoder_task.stage_config(latent_cfg))
  ae_pixels, _ = _batches(latent_cfg, int(ae_cfg.train.global_batch_size))
  patch_cfg = one_device(autoencoder_task.stage_config(encoder_joint_ae_patch.get_config()))
  members = {
      f'DiT on pixel patches (configs/tiny.py, batch {batch})':
          _compiled_step(pixel_cfg, DiffusionTask(pixel_cfg), _batches(pixel_cfg, batch)[0], mesh),
      f'DiT on joint-AE latents, encoder run every step (batch {batch})':
          _compiled_step(latent_cfg, DiffusionTask(latent_cfg, autoencoder=ae), pixels, mesh),
      f'DiT on cached joint-AE latents (batch {batch})':
          _compiled_step(latent_cfg, DiffusionTask(latent_cfg, autoencoder=ae,
                                                   latents={'train': None, 'validation': None}), latents, mesh),
      f'joint autoencoder, stage 1 (batch {ae_cfg.train.global_batch_size})':
          _compiled_step(ae_cfg, autoencoder_task.AutoencoderTask(ae_cfg), ae_pixels, mesh),
      f'joint autoencoder with the patch video stem, stage 1 (batch {ae_cfg.train.global_batch_size})':
          _compiled_step(patch_cfg, autoencoder_task.AutoencoderTask(patch_cfg), ae_pixels, mesh),
  }
  best = {name: float('inf') for name in members}
  for _ in range(args.repeats):
    for name, (compiled, state, frozen, data) in members.items():
      start = time.perf_counter()
      for _ in range(args.steps):
        state, metrics = compiled(state, data, frozen)
      jax.block_until_ready(metrics)
      best[name] = min(best[name], (time.perf_counter() - start) / args.steps)
      members[name] = (compiled, state, frozen, data)
  pixel = next(iter(best.values()))
  lines = [f'Written by `python -m benchmarks.latent_step --steps={args.steps} --repeats={args.repeats}'
           f'{" --out=" + args.out if args.out else ""}`', '',
           f'Full jitted train step on one CPU device (this machine), synthetic batches, fastest of {args.repeats} '
           f'interleaved rounds of {args.steps} steps; the latent members share the 160 + 40 token grid of the pixel '
           'path (configs/ablations/encoder_joint_ae.py).', '',
           '| step | seconds per step | steps/s | x the pixel step |', '|---|---|---|---|']
  for name, seconds in best.items():
    lines.append(f'| {name} | {seconds:.3f} | {1.0 / seconds:.2f} | {seconds / pixel:.2f} |')
  report.emit(lines, args.out)


if __name__ == '__main__':
  main()
