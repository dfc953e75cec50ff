"""Pod planning for long clips: per-device memory of the pod_1b train step with and without context parallelism on 64
fake CPU devices (compiled only, never run), and the longest clip that fits in a memory budget each way.

    python -m benchmarks.context_memory [--seconds_plain=2,4,6,8,10] [--seconds_context=10,20,30,40]
        [--context=8] [--budget_gib=16] [--out=benchmarks/context_memory.md]

The clip: configs/pod_1b.py's model (1.0B parameters, width 1536, depth 24, 16 heads, bf16 compute) on 448 x 448
frames at 24 fps with 24 kHz audio as 64-band log-mel at 96 Hz: 4800 tokens per second of clip (4704 video + 96
audio), 48,000 for 10 s. The token grid is the one of pod_1b's latent path (8x spatial and 4x temporal AE, 1 x 2 x 2
latent patches; audio 4x time and 4x frequency, 1 x 4 patches) built with pixel patches of the same footprint
(4 x 16 x 16 video, 4 x 16 mel), so the step is the DiT's alone: the frozen AE encoder would run on 240 frames of
448 x 448 per clip inside the step, which a long-clip run avoids by training on cached latents.

Meshes: without the context axis, fsdp=64 and one clip per device (the least a whole clip can take); with it,
fsdp=64/c x context=c and one clip per c devices. model.remat='full' (only block inputs kept between layers; the
least activation memory) and attention 'chunked' in QUERY_BLOCK query blocks: the CPU compiler cannot lower cuDNN
flash attention, and the blocked kernel has its memory profile (O(N) per head plus one [block, N] step). The full
depth is compiled: layers run under jax.lax.scan, so compile time does not grow with depth.
"""

from __future__ import annotations

import argparse
import os
import sys

from benchmarks import report

DEVICES = 64


def long_clip_overrides(seconds: float, context: int) -> str:
  """bench_train-style overrides of configs/pod_1b.py for a `seconds` clip on 64 devices, context axis `context`."""
  fsdp = DEVICES // context
  return ';'.join([
      'data.fps=24', f'data.clip_seconds={float(seconds)}', 'data.resolution=448', 'data.sample_rate=24000',
      'data.n_mels=64', 'data.mel_frames_per_video_frame=4',
      "model.encoder='patch'", 'model.video_patch=(4,16,16)', 'model.audio_patch=(4,16)',
      "model.remat='full'", "model.attention='chunked'",
      f'train.global_batch_size={fsdp}',
      f"mesh.shape={{'data': 1, 'fsdp': {fsdp}, 'context': {context}, 'tensor': 1}}"])


def measure(seconds: float, context: int) -> dict:
  from benchmarks import bench_train  # pylint: disable=g-import-not-at-top
  from avdiff.models import attention as attn_lib  # pylint: disable=g-import-not-at-top
  from avdiff.train import step as step_lib  # pylint: disable=g-import-not-at-top
  planned = step_lib.sequence_parallel
  if context == 1:
    # The kernel per device in shard_map, sequence whole: left to the partitioner, the chunked kernel's lax.map over
    # batch x heads gathers the whole global batch onto every device (24 GiB of temporaries at 2 s instead of the
    # one clip's), which the GPU's cuDNN kernel, batched over clips, does not do.
    step_lib.sequence_parallel = lambda config, mesh: attn_lib.SequenceParallel(mesh, ('data', 'fsdp'), (), ())
  try:
    return bench_train.bench_memory_child('pod_1b', long_clip_overrides(seconds, context))
  finally:
    step_lib.sequence_parallel = planned


def table(rows: list[dict], budget: float, command: str, context: int) -> list[str]:
  lines = [f'Written by `{command}`', '',
           f'configs/pod_1b.py model on {DEVICES} fake CPU devices, compiled only (`compiled.memory_analysis()` of '
           'the full train step: loss, grads, AdamW, EMA), remat `full`, chunked attention in query blocks; '
           'the clip and the meshes are described in benchmarks/context_memory.py. State = params + EMA + 2 Adam '
           'moments, float32, split over fsdp only (replicated over context).', '',
           '| mesh | clip (s) | tokens / clip | devices / clip | arguments GiB | temporaries GiB | total GiB | '
           f'fits {budget:g} GiB | compile s |',
           '|---|---|---|---|---|---|---|---|---|']
  for r in rows:
    mesh = ' '.join(f'{k}={v}' for k, v in r['mesh'].items() if v > 1)
    per_clip = r['mesh'].get('context', 1)
    lines.append(f"| {mesh} | {r['seconds']:g} | {r['tokens_per_clip']} | {per_clip} | {r['arguments_gib']} | "
                 f"{r['temp_gib']} | {r['total_gib']} | {'yes' if r['total_gib'] <= budget else 'no'} | "
                 f"{r['compile_s']} |")
  lines.append('')
  for c in sorted({r['mesh'].get('context', 1) for r in rows}):
    fit = [r for r in rows if r['mesh'].get('context', 1) == c and r['total_gib'] <= budget]
    over = [r for r in rows if r['mesh'].get('context', 1) == c and r['total_gib'] > budget]
    best = max(fit, key=lambda r: r['seconds']) if fit else None
    what = 'without the context axis' if c == 1 else f'with context={c}'
    if best is None:
      lines.append(f'- {what}: none of the lengths tried fits {budget:g} GiB per device.')
      continue
    limit = min((r['seconds'] for r in over if r['seconds'] > best['seconds']), default=None)
    lines.append(f"- {what}: the longest clip tried that fits {budget:g} GiB per device is {best['seconds']:g} s "
                 f"({best['tokens_per_clip']} tokens, {best['total_gib']} GiB)" +
                 (f'; {limit:g} s does not fit.' if limit else '; no longer length was tried.'))
  return lines


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--seconds_plain', default='2,4,6,8,10')
  parser.add_argument('--seconds_context', default='10,20,30,40')
  parser.add_argument('--context', type=int, default=8)
  parser.add_argument('--budget_gib', type=float, default=16.0)
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  os.environ['JAX_PLATFORMS'] = 'cpu'
  os.environ['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={DEVICES}'
  rows = []
  for context, seconds in ((1, args.seconds_plain), (args.context, args.seconds_context)):
    for s in (float(x) for x in seconds.split(',') if x):
      row = measure(s, context)
      row['seconds'] = s
      print(row, flush=True)
      rows.append(row)
  command = ('python -m benchmarks.context_memory ' + ' '.join(sys.argv[1:])).strip()
  lines = table(rows, args.budget_gib, command, args.context)
  report.emit(lines, args.out)


if __name__ == '__main__':
  main()
