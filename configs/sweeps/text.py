r"""Where text enters the DiT: the prompt's tokens in the joint sequence (configs/text.py) against cross-attention
to them after every block (configs/ablations/text_cross_attention.py), 3 seeds each at the main job's scale.

    python -m experiments.ablate --sweep=configs/sweeps/text.py --workdir=runs/text_sweep
    python -m benchmarks.prompt_following --workdirs=runs/text_sweep/tokens/seed0,...   # prompt following per member
"""


def get_sweep():
  return {
      'base': 'configs/text.py',
      'seeds': (0, 1, 2),
      'members': {
          'tokens': {},
          'cross_attention': 'configs/ablations/text_cross_attention.py',
      },
  }
