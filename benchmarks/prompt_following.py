"""Prompt following of text-to-audio-video runs (configs/text.py): seen vs novel attribute combinations, template vs
paraphrase wording, over seeds; and prompt agreement and lip-sync against the text guidance scale.

    python -m benchmarks.prompt_following --workdirs=runs/text/seed0,runs/text/seed1,runs/text/seed2 \
        --out=benchmarks/prompt_following.md
    python -m benchmarks.prompt_following --workdirs=runs/text/seed0 --guidance=1,2,3,5 \
        --out=benchmarks/prompt_guidance.md                      # the guidance curve (+ .png)
    python -m benchmarks.prompt_following --workdirs=runs/text/seed0,runs/text_xattn/seed0 \
        --members=tokens,cross_attention --out=benchmarks/text_fusion.md     # members side by side
    python -m benchmarks.prompt_following --workdirs=runs/text_3k/seed0 --steps=1000,2000,3000 \
        --out=benchmarks/prompt_steps.md                         # agreement against training steps
    python -m benchmarks.prompt_following --workdirs=runs/text/seed0,... --orders=together,audio_first,video_first \
        --out=benchmarks/prompt_order.md                         # agreement against the joint sampling order

Per run the scores go to W/eval/prompt_following[_g<scale>][_s<step>][_o<order>].json (reused when present: the
command resumes); the table to stdout and --out. Agreement: share of samples whose reading of an attribute named in the
prompt equals it (avdiff.eval.prompts); 'all': every named attribute right. Readers on the held-out clips and
another clip's prompt are the ceiling and the chance level.
"""

from __future__ import annotations

import functools
import json
import os

from absl import app
from absl import flags
import numpy as np

from benchmarks import report

_WORKDIRS = flags.DEFINE_list('workdirs', ['runs/text/seed0', 'runs/text/seed1', 'runs/text/seed2'], 'Text runs.')
_NUM = flags.DEFINE_integer('num', 32, 'Prompts (held-out clips) per set.')
_GUIDANCE = flags.DEFINE_list('guidance', [], 'Text guidance scales for the curve (default: the runs\' own scale, '
                              'the prompt-following table).')
_MEMBERS = flags.DEFINE_list('members', [], 'Member name of each workdir (runs of one name are its seeds): a table '
                             'of members side by side instead of one recipe over seeds.')
_STEPS = flags.DEFINE_list('steps', [], 'Checkpoint steps (kept by train.keep_checkpoints): agreement against '
                           'training steps on the template sets instead.')
_ORDERS = flags.DEFINE_list('orders', [], 'Joint sampling orders (diffusion.joint_order): agreement and joint '
                            'lip-sync against the order on the template sets instead.')
_OUT = flags.DEFINE_string('out', '', 'Markdown table file (e.g. benchmarks/prompt_following.md); the guidance '
                           'curve\'s png goes beside it. Empty: stdout only.')

NAMES = ('colour', 'shape', 'pitch', 'rate', 'syllables', 'all')


def _json_default(v):
  return int(v) if isinstance(v, np.integer) else float(v)


def score_run(workdir: str, guidance: str = '', step: str = '', order: str = '') -> dict:
  """W/eval/prompt_following[_g<guidance>][_s<step>][_o<order>].json, computed when missing: prompt following and,
  with a guidance scale, the in-loop lip-sync measures of 16 validation clips at that scale; with a step, the
  template sets of that checkpoint only; with a joint sampling order, the template sets and the joint lip-sync
  sampled in that order."""
  name = (f'prompt_following{"_g" + guidance if guidance else ""}{"_s" + step if step else ""}'
          f'{"_o" + order if order else ""}.json')
  path = os.path.join(workdir, 'eval', name)
  cached = None
  if os.path.exists(path):
    with open(path) as f:
      cached = json.load(f)
    if guidance and 'fvd' not in cached['sets']['seen/template']:
      cached = None  # Scored before the guidance curve had FVD: sample again.
    elif guidance or step or order or 'binding' in cached.get('probe', {}) or cached.get('condition') == 'label':
      return cached
  from avdiff import checkpoint  # pylint: disable=g-import-not-at-top  (JAX only when something is sampled)
  from avdiff import config_lib  # pylint: disable=g-import-not-at-top
  from avdiff import sampling  # pylint: disable=g-import-not-at-top
  from avdiff.eval import in_loop, prompts  # pylint: disable=g-import-not-at-top
  from configs import base  # pylint: disable=g-import-not-at-top
  config = checkpoint.load_config(workdir, base.get_config())
  if guidance:
    config.diffusion.guidance_text = float(guidance)
  if order:
    config.diffusion.joint_order = order
  model = sampling.load_model(workdir, config, step=int(step) if step else None)
  if cached is not None:  # Scored before the (binding) probe was part of it: add the probe only.
    cached['probe'] = text_probe(model, config)
    with open(path, 'w') as f:
      json.dump(cached, f, indent=1, default=_json_default)
    return cached
  sample_fn = functools.partial(sampling.sample_clips, model)
  fvd_features = None
  if guidance:
    from avdiff.eval import fvd  # pylint: disable=g-import-not-at-top
    fvd_features = fvd.I3DFeatures()
  # A model without text is the label-conditioned control: the same prompts' (colour, shape, pitch) as its label;
  # a paraphrase gives it the same label as the template, so only the template sets.
  text = bool(config_lib.text_encoder(config))
  result = prompts.prompt_following(
      sample_fn, config, num=_NUM.value, seed=0, condition='prompt' if text else 'label',
      sets=prompts.SETS if text and not (guidance or step or order) else ('seen/template', 'novel/template'),
      fvd_features=fvd_features)
  result.update(guidance_text=float(config.diffusion.guidance_text), step=model.step,
                joint_order=config.diffusion.joint_order)
  if text and not (guidance or step or order):
    result['probe'] = text_probe(model, config)
  if guidance:  # What two held-out sets of the same size score: FVD's floor at this N.
    from avdiff.data import builders  # pylint: disable=g-import-not-at-top
    real = [fvd_features([c['video'] for c in builders.load_clips(config, s, _NUM.value)]) for s in ('validation',
                                                                                                     'test')]
    result['fvd_floor'] = fvd.fvd(*real)
  if guidance or order:  # The joint order changes joint samples only.
    modes = ('joint',) if order else ('joint', 'audio_to_video')
    sync = in_loop.InLoopEvaluator(config, modes=modes)(sample_fn, seed=0)
    result['sync'] = {k: v for k, v in sync.items() if k.startswith('eval/')}
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(result, f, indent=1, default=_json_default)
  return result


def text_probe(model, config) -> dict:
  """What the text encoder's output carries: per attribute, the validation accuracy of a linear read-out (ridge
  regression onto one-hot values, closed form) of the K resampled text tokens, fitted on the train captions.

  'binding': whether the encoder writes the voice pitch apart from the face colour (`prompts.pitch_binding`).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from avdiff.data import builders, captions, text_inputs  # pylint: disable=g-import-not-at-top
  from avdiff.eval import prompts  # pylint: disable=g-import-not-at-top
  inputs = text_inputs.TextInputs(config)

  def features(split):
    source = builders.load_source(config, split)
    recs = [source[i] for i in range(len(source))]
    texts = [r['caption'].decode() if isinstance(r['caption'], bytes) else str(r['caption']) for r in recs]
    text = text_inputs.model_text(config, inputs(texts))
    tokens, _ = model.dit.text_encoder(jax.tree.map(jax.numpy.asarray, text))
    x = np.asarray(tokens, np.float64).reshape(len(recs), -1)
    return np.concatenate([x, np.ones((len(recs), 1))], 1), np.stack([np.asarray(r['attributes']) for r in recs])

  (x, a), (xv, av), (xn, an) = features('train'), features('validation'), features('test_novel')
  out = {}
  for j, (name, values) in enumerate(captions.TALKING_ATTRIBUTES.items()):
    out[name] = float(np.mean(np.argmax(xv @ prompts.ridge(x, a[:, j], len(values)), 1) == av[:, j]))
  out['binding'] = prompts.pitch_binding((x, a), (xv, av), (xn, an))
  return out


def _cell(values: list[float]) -> str:
  values = [v for v in values if v == v]
  if not values:
    return 'n/a'
  return f'{np.mean(values):.2f}' + (f' ± {np.std(values, ddof=1):.2f}' if len(values) > 1 else '')


_BINDING = ('the pitch binding (`avdiff.eval.prompts.pitch_binding`): a pitch read-out fitted only on train '
            'captions whose face colour is in no held-out pair, reading the captions of the held-out pairs\' '
            'colours, seen (validation) and novel (test_novel). Novel far below seen: the encoder writes those '
            'colours\' pitch from the colour word.')
_BINDING_COLUMNS = ('pitch binding seen', 'pitch binding novel')


def _probe_cells(runs: list[dict]) -> list[str]:
  """Probe accuracies per attribute, then the pitch binding seen and novel ('n/a' where scored before it)."""
  binding = [[r['probe'].get('binding', {}).get(k, float('nan')) for r in runs] for k in ('seen', 'novel')]
  return [_cell([r['probe'][n] for r in runs]) for n in NAMES[:-1]] + [_cell(b) for b in binding]


def _command() -> str:
  extra = ''.join(f' --{f.name}={",".join(f.value) if isinstance(f.value, list) else f.value}'
                  for f in (_NUM, _GUIDANCE, _MEMBERS, _STEPS, _ORDERS, _OUT) if f.value != f.default)
  return f'python -m benchmarks.prompt_following --workdirs={",".join(_WORKDIRS.value)}{extra}'


def table(results: list[dict]) -> list[str]:
  """The prompt-following table over runs (mean ± sd over seeds) and the verdict against the targets."""
  from avdiff.eval import prompts  # pylint: disable=g-import-not-at-top
  lines = [f'Written by `{_command()}`', '',
           f'{len(results)} seeds, {_NUM.value} prompts per set from held-out clips, one joint sample each, text '
           f'guidance {results[0]["guidance_text"]:g}, step {results[0]["step"]}. Agreement: share of samples whose '
           'attribute, read back by the weight-free readers, is the one the prompt names (mean ± sd over seeds).', '',
           '| set | what | ' + ' | '.join(NAMES) + ' |', '|---|---|' + '---|' * len(NAMES)]
  scored = [s for s in prompts.SETS if s in results[0]['sets']]  # The label control: template sets only.
  for name in scored:
    for key, what in (('agreement', '**model samples**'), ('ground_truth', 'readers on the held-out clips'),
                      ('other_prompt', "samples vs another clip's prompt")):
      if key != 'agreement' and name.endswith('paraphrase'):
        continue  # The same clips as the template row: the same ceiling and chance level.
      cells = [_cell([r['sets'][name][key][n] for r in results]) for n in NAMES]
      lines.append(f'| {name} | {what} | ' + ' | '.join(cells) + ' |')
  if all('probe' in r for r in results):
    lines += ['', 'What the text encoder carries: validation accuracy of a linear read-out of its text tokens per '
              'attribute (fitted on the train captions; chance 0.25 / 0.5 / 0.5 / 0.5 / 0.25), and ' + _BINDING, '',
              '| ' + ' | '.join(NAMES[:-1]) + ' | ' + ' | '.join(_BINDING_COLUMNS) + ' |',
              '|' + '---|' * (len(NAMES) + 1),
              '| ' + ' | '.join(_probe_cells(results)) + ' |']
  lines += ['', 'Lip-sync of the same runs at their last in-loop evaluation (16 validation clips; main-job targets: '
            'a2v r >= 0.8, |shuffled| <= 0.15, joint r >= 0.7):', '',
            '| run | step | a2v r | a2v shuffled r | joint r |', '|---|---|---|---|---|']
  from avdiff.train import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  for workdir in _WORKDIRS.value:
    rows = [r for r in metrics_lib.read_metrics(workdir) if 'eval/a2v_r' in r]
    if rows:
      last = rows[-1]
      lines.append(f'| {workdir} | {last["step"]} | {last["eval/a2v_r"]:.3f} | {last["eval/a2v_shuffled_r"]:.3f} | '
                   f'{last["eval/joint_r"]:.3f} |')
  lines += ['', 'Targets: every attribute named in the prompt obeyed on >= 80% of seen and >= 70% of novel '
            f'combinations; paraphrases within {prompts.PARAPHRASE_GAP * 100:.0f} points of the templates.']
  for r_i, r in enumerate(results):
    sets = r['sets']
    # The attributes scored in set s (NaN: not named, e.g. rate and syllables for the label control).
    named = lambda s: [v for v in (sets[s]['agreement'][n] for n in NAMES[:-1]) if v == v]
    worst = {s: min(named(s)) for s in scored}
    met = [worst[f'{g}/template'] >= prompts.TARGETS[g] for g in ('seen', 'novel')]
    verdict = ['met' if m else 'not met' for m in met]
    line = (f'- {_WORKDIRS.value[r_i]}: worst attribute seen {worst["seen/template"]:.2f} ({verdict[0]}), novel '
            f'{worst["novel/template"]:.2f} ({verdict[1]})')
    if 'seen/paraphrase' in sets:
      gaps = [float(np.mean(named(f'{g}/template')) - np.mean(named(f'{g}/paraphrase'))) for g in ('seen', 'novel')]
      line += (f'; paraphrase gap in the mean attribute agreement seen {gaps[0]:+.2f}, novel {gaps[1]:+.2f} '
               f'({"met" if max(gaps) <= prompts.PARAPHRASE_GAP else "not met"})')
    lines.append(line)
  return lines


def members_table(results: list[dict]) -> list[str]:
  """Model-sample agreement per member and set (mean ± sd over the member's seeds)."""
  from avdiff.eval import prompts  # pylint: disable=g-import-not-at-top
  if len(_MEMBERS.value) != len(results):
    raise app.UsageError(f'--members names {len(_MEMBERS.value)} workdirs, --workdirs has {len(results)}')
  members = list(dict.fromkeys(_MEMBERS.value))
  lines = [f'Written by `{_command()}`', '',
           f'{_NUM.value} prompts per set from held-out clips, one joint sample each; agreement of the model samples '
           '(as in the prompt-following table), mean ± sd over each member\'s seeds.', '',
           '| member | seeds | set | ' + ' | '.join(NAMES) + ' |', '|---|---|---|' + '---|' * len(NAMES)]
  for member in members:
    runs = [r for r, m in zip(results, _MEMBERS.value) if m == member]
    for name in [s for s in prompts.SETS if s in runs[0]['sets']]:
      cells = [_cell([r['sets'][name]['agreement'][n] for r in runs]) for n in NAMES]
      lines.append(f'| {member} | {len(runs)} | {name} | ' + ' | '.join(cells) + ' |')
  probed = [m for m in members if all('probe' in r for r, m2 in zip(results, _MEMBERS.value) if m2 == m)]
  if probed:
    lines += ['', 'What each text encoder carries (linear read-out of its text tokens, as in the prompt-following '
              'table; chance 0.25 / 0.5 / 0.5 / 0.5 / 0.25), and ' + _BINDING, '',
              '| member | ' + ' | '.join(NAMES[:-1]) + ' | ' + ' | '.join(_BINDING_COLUMNS) + ' |',
              '|---|' + '---|' * (len(NAMES) + 1)]
    for member in probed:
      runs = [r for r, m in zip(results, _MEMBERS.value) if m == member]
      lines.append(f'| {member} | ' + ' | '.join(_probe_cells(runs)) + ' |')
  return lines


def guidance_table(per_scale: dict[str, list[dict]]) -> list[str]:
  """Agreement (mean over the named attributes, and the voice pitch and face colour alone; seen and novel) and
  lip-sync against the text guidance scale; the plot next to --out."""
  first = next(iter(per_scale.values()))
  floor = float(np.mean([r['fvd_floor'] for r in first]))
  lines = [f'Written by `{_command()}`', '',
           f'Text guidance scale against prompt following ({_NUM.value} template prompts per set; "mean": agreement '
           'averaged over the five attributes), lip-sync (16 validation clips of the in-loop evaluation) and FVD '
           f'(I3D; each set\'s {_NUM.value} samples against the {_NUM.value} held-out clips its prompts were written '
           f'from; at this N two held-out sets of the same data score {floor:.0f}), mean over runs.', '',
           '| guidance | seen mean | seen pitch | seen colour | novel mean | novel pitch | novel colour | a2v r | '
           'joint r | FVD seen | FVD novel |', '|---|---|---|---|---|---|---|---|---|---|---|']
  rows = []
  for scale, results in per_scale.items():
    mean = lambda f: float(np.mean([f(r) for r in results]))
    row = [float(scale)]
    for s in ('seen/template', 'novel/template'):
      row += [mean(lambda r, s=s: np.mean([r['sets'][s]['agreement'][n] for n in NAMES[:-1]])),
              mean(lambda r, s=s: r['sets'][s]['agreement']['pitch']),
              mean(lambda r, s=s: r['sets'][s]['agreement']['colour'])]
    row += [mean(lambda r: r['sync'].get('eval/a2v_r', float('nan'))),
            mean(lambda r: r['sync'].get('eval/joint_r', float('nan')))]
    row += [mean(lambda r, s=s: r['sets'][s]['fvd']) for s in ('seen/template', 'novel/template')]
    rows.append(row)
    lines.append(f'| {scale} | ' + ' | '.join(f'{v:.2f}' for v in row[1:-2]) + ' | '
                 + ' | '.join(f'{v:.0f}' for v in row[-2:]) + ' |')
  if not _OUT.value:  # The plot goes beside the table file.
    return lines
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = np.asarray(rows)
  fig, ax = plt.subplots(figsize=(6, 3.6))
  for col, label in ((1, 'seen: mean attribute'), (2, 'seen: pitch'), (3, 'seen: colour'), (4, 'novel: mean attribute'),
                     (5, 'novel: pitch'), (7, 'a2v r (lip-sync)'), (8, 'joint r (lip-sync)')):
    ax.plot(rows[:, 0], rows[:, col], marker='o', label=label)
  ax.set_xlabel('text guidance scale')
  ax.set_ylim(0, 1.02)
  ax.grid(alpha=0.3)
  fvd_ax = ax.twinx()
  for col, label, colour in ((9, 'FVD seen (right axis)', 'black'), (10, 'FVD novel (right axis)', 'dimgrey')):
    fvd_ax.plot(rows[:, 0], rows[:, col], marker='s', linestyle='--', color=colour, label=label)
  fvd_ax.axhline(floor, color='grey', linewidth=0.8, linestyle=':')
  fvd_ax.set_ylabel(f'FVD (N = {_NUM.value}; dotted: two held-out sets)')
  fvd_ax.set_ylim(0, None)
  handles = [h for a in (ax, fvd_ax) for h in a.get_legend_handles_labels()[0]]
  ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc='lower left')
  fig.tight_layout()
  png = os.path.splitext(_OUT.value)[0] + '.png'
  fig.savefig(png, dpi=120)
  return lines


def steps_table(per_step: dict[str, list[dict]]) -> list[str]:
  """Model-sample agreement per attribute on the seen and novel template sets against the checkpoint step (mean
  over runs)."""
  lines = [f'Written by `{_command()}`', '',
           f'Prompt following against training steps ({_NUM.value} template prompts per set from held-out clips, one '
           f'joint sample each, text guidance {per_step[_STEPS.value[0]][0]["guidance_text"]:g}; mean over '
           f'{len(_WORKDIRS.value)} run(s)).', '',
           '| step | set | ' + ' | '.join(NAMES) + ' |', '|---|---|' + '---|' * len(NAMES)]
  for step, results in per_step.items():
    for s in ('seen/template', 'novel/template'):
      cells = [_cell([r['sets'][s]['agreement'][n] for r in results]) for n in NAMES]
      lines.append(f'| {step} | {s} | ' + ' | '.join(cells) + ' |')
  return lines


def orders_table(per_order: dict[str, list[dict]]) -> list[str]:
  """Model-sample agreement per attribute on the seen and novel template sets, and joint lip-sync, against the joint
  sampling order (mean ± sd over runs)."""
  first = per_order[_ORDERS.value[0]][0]
  lines = [f'Written by `{_command()}`', '',
           f'Prompt following against the joint sampling order (diffusion.joint_order; {_NUM.value} template prompts '
           f'per set from held-out clips, one joint sample each, text guidance {first["guidance_text"]:g}, step '
           f'{first["step"]}; mean ± sd over {len(_WORKDIRS.value)} run(s)). joint r: lip-sync of joint samples '
           '(16 validation clips of the in-loop evaluation).', '',
           '| order | set | ' + ' | '.join(NAMES) + ' | joint r |', '|---|---|' + '---|' * (len(NAMES) + 1)]
  for order, results in per_order.items():
    for s in ('seen/template', 'novel/template'):
      cells = [_cell([r['sets'][s]['agreement'][n] for r in results]) for n in NAMES]
      sync = _cell([r['sync'].get('eval/joint_r', float('nan')) for r in results]) if s.startswith('seen') else ''
      lines.append(f'| {order} | {s} | ' + ' | '.join(cells) + f' | {sync} |')
  return lines


def main(argv):
  del argv
  if _ORDERS.value:
    per_order = {o: [score_run(w, order=o) for w in _WORKDIRS.value] for o in _ORDERS.value}
    report.emit(orders_table(per_order), _OUT.value)
  elif _STEPS.value:
    per_step = {s: [score_run(w, step=s) for w in _WORKDIRS.value] for s in _STEPS.value}
    report.emit(steps_table(per_step), _OUT.value)
  elif _GUIDANCE.value:
    per_scale = {g: [score_run(w, g) for w in _WORKDIRS.value] for g in _GUIDANCE.value}
    report.emit(guidance_table(per_scale), _OUT.value)
  elif _MEMBERS.value:
    report.emit(members_table([score_run(w) for w in _WORKDIRS.value]), _OUT.value)
  else:
    report.emit(table([score_run(w) for w in _WORKDIRS.value]), _OUT.value)


if __name__ == '__main__':
  app.run(main)
