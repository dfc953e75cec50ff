"""Text by cross-attention: after every self-attention block the audio-video tokens attend to the prompt's text
tokens (model.text.fusion='cross_attention', as JavisDiT++, Ovi and LTX-2), instead of the text tokens riding in
the joint sequence (configs/text.py, single stream as in daVinci-MagiHuman and Klear).

    python -m experiments.train --config=configs/ablations/text_cross_attention.py --workdir=runs/text_xattn
"""

from configs import text


def get_config():
  c = text.get_config()
  c.model.text.fusion = 'cross_attention'
  return c
