r"""The text recipe (configs/text.py: SentencePiece tokens in the joint sequence) against its alternatives, 3 seeds
each at the main job's scale: no timestep shift (configs/ablations/text_no_shift.py), cross-attention to the text
tokens after every block (configs/ablations/text_cross_attention.py), UTF-8 bytes instead of pieces (configs/ablations/text_bytes.py), a bag
of words in the pooled text vector (configs/ablations/text_bag.py), and the label control, no text at all
(configs/ablations/text_labels.py).

    python -m experiments.ablate --sweep=configs/sweeps/text.py --workdir=runs/text_sweep
    python -m benchmarks.prompt_following --workdirs=runs/text_sweep/tokens/seed0,... \
        --members=tokens,...    # prompt following per member
"""


def get_sweep():
  return {
      'base': 'configs/text.py',
      'seeds': (0, 1, 2),
      'members': {
          'tokens': {},
          'no_shift': 'configs/ablations/text_no_shift.py',
          'cross_attention': 'configs/ablations/text_cross_attention.py',
          'bytes': 'configs/ablations/text_bytes.py',
          'bag': 'configs/ablations/text_bag.py',
          'labels': 'configs/ablations/text_labels.py',
      },
  }
