r"""Text to audio-video on the main job's scale: configs/tiny.py on `talking` clips whose face colour, face shape,
voice pitch, speaking rate and syllable count vary independently (data.attributes='independent'), each with a
caption generated from its ground truth; a text encoder trained with the DiT from scratch over SentencePiece tokens
(a BPE vocabulary fitted to the training captions, so each caption word is one token); the prompt's tokens in the
joint sequence. The label is never shown (label_dropout 1): the prompt is the only condition, and classifier-free
guidance runs on it (diffusion.guidance_text). Training and sampling times are shifted towards noise
(diffusion.flow_shift 3, the SD3 shift): a face's colour survives noise almost to t = 1 (a linear reader tells it from
x_t alone up to t = 0.95, benchmarks/prompt_evidence.md), so the prompt's colour word is only needed, and so only
learned, above that, where the main job's time density puts 0.4% of training; the shift puts 9.5% there.

    python -m experiments.train --config=configs/text.py --workdir=runs/text/seed0
    python -m experiments.sample --workdir=runs/text/seed0 --mode=joint \
        --prompt="a blue round face, high voice, four syllables"
    python -m benchmarks.prompt_following --workdirs=runs/text/seed0,...   # the prompt-following table

Expected result: README, 'Text prompts' (benchmarks/prompt_following.md, text_tokenizer.md, prompt_steps.md): at
1000 steps the face colour and the speaking rate follow the prompt on every seed, seen and held-out combinations;
shape and pitch not yet. With --config.train.steps=3000 the shape and the syllable count follow too and the seen
pitch nearly (0.76); on held-out colour / pitch pairs the voice takes the pitch of the colour's training partner:
the text encoder writes it from the colour word (README, 'Where the colour/pitch binding sits'). Lip-sync as the
main job's.
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.data.attributes = 'independent'
  c.model.num_classes = 16  # (colour, shape, pitch) combinations; never shown, see label_dropout.
  c.model.text.encoder = 'pieces'
  c.model.text.ngram = 3  # A word is already a token: the window only joins neighbouring words.
  c.model.text.fusion = 'tokens'
  c.diffusion.flow_shift = 3.0  # More training and sampling steps where only the prompt tells the face colour.
  c.diffusion.label_dropout = 1.0
  c.diffusion.text_dropout = 0.1
  c.diffusion.guidance_video = 1.0
  c.diffusion.guidance_audio = 1.0
  c.diffusion.guidance_text = 2.0
  return c
