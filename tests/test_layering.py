"""The package's dependencies point one way (README, 'Layout'): libraries below checkpoint and sampling, those below
evaluation, evaluation below training, entry points on top. Read from the source with `ast`, so an import anywhere
in a file (also inside a function) counts.

    config_lib, console   <-  data, diffusion, parallel, models          (libraries)
    run_dir               (workdir io: the paths and files of a run, local or gs://)
    checkpoint, lease     (workdir io: config.json, Orbax, restore_params; the one-trainer-per-workdir lease)
    autoencoders          (where a config's stage-1 autoencoder lives: fingerprint, directory, completion marker)
    vocoders              (the same for the config's neural vocoder)
    sampling              (codec, the sampler cache, load_model, sample_clips, write_clips)
    long_clips            (any length: windows of the one model, on top of sampling)
    eval/                 metrics, sync expert network, conditions, folder / workdir / in-loop evaluation,
                          results (handed a sample function)                -- never imports train/
    train/                state, step, loop + hooks, tasks/
    study/                sweeps (train + evaluate members x seeds) and their comparison
    experiments/          wiring only: flags -> one call
"""

import ast
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LIBRARIES = {'config_lib', 'console', 'data', 'diffusion', 'parallel', 'models'}
# Layer -> the layers it may import (besides itself).
ALLOWED = {
    'config_lib': set(),
    'console': {'config_lib'},
    'data': {'config_lib', 'console'},
    'diffusion': {'config_lib'},
    'parallel': {'config_lib'},
    'models': {'config_lib', 'data'},
    'run_dir': set(),
    'checkpoint': {'config_lib', 'console', 'run_dir'},
    'lease': {'config_lib', 'console', 'run_dir'},
    'autoencoders': {'config_lib', 'console', 'data', 'run_dir'},
    'vocoders': {'config_lib', 'console', 'data', 'run_dir', 'autoencoders'},
    'sampling': LIBRARIES | {'run_dir', 'checkpoint', 'autoencoders', 'vocoders'},
    'long_clips': LIBRARIES | {'run_dir', 'checkpoint', 'autoencoders', 'vocoders', 'sampling'},
    'eval': LIBRARIES | {'run_dir', 'checkpoint', 'autoencoders', 'vocoders', 'sampling', 'long_clips'},
    'train': LIBRARIES | {'run_dir', 'checkpoint', 'lease', 'autoencoders', 'vocoders', 'sampling', 'long_clips',
                          'eval'},
    'study': LIBRARIES | {'run_dir', 'checkpoint', 'lease', 'autoencoders', 'vocoders', 'sampling', 'long_clips',
                          'eval', 'train'},
}


def _python_files(folder):
  for root, _, files in os.walk(os.path.join(REPO, folder)):
    for name in sorted(files):
      if name.endswith('.py'):
        yield os.path.join(root, name)


def _module_name(path):
  rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, '.')
  return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def _imports(path):
  """(module imported, line, inside a function) for every import of the file; `from a import b` yields a.b when
  that is a module of ours, else a."""
  tree = ast.parse(open(path).read(), path)
  functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
  nested = {id(n) for f in functions for n in ast.walk(f)}
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [(a.name, node.lineno, id(node) in nested) for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for a in node.names:
        full = f'{node.module}.{a.name}'
        as_module = os.path.exists(os.path.join(REPO, *full.split('.'))) or os.path.exists(
            os.path.join(REPO, *full.split('.')) + '.py')
        out.append((full if as_module else node.module, node.lineno, id(node) in nested))
  return out


def _layer(module):
  """avdiff.eval.workdir -> 'eval'; avdiff.sampling -> 'sampling'; other packages -> None."""
  parts = module.split('.')
  return parts[1] if parts[0] == 'avdiff' and len(parts) > 1 else None


def _own_edges():
  edges = {}
  for path in _python_files('avdiff'):
    edges[_module_name(path)] = [(m, line, nested) for m, line, nested in _imports(path)
                                 if m.split('.')[0] in ('avdiff', 'configs', 'experiments')]
  return edges


def test_layers_import_only_layers_below():
  wrong = []
  for module, imports in _own_edges().items():
    here = _layer(module)
    if here is None:
      continue
    for target, line, _ in imports:
      there = _layer(target)
      if there is None:  # configs / experiments: never from the package.
        wrong.append(f'{module}:{line} imports {target} (avdiff never imports configs/ or experiments/)')
      elif there != here and there not in ALLOWED[here]:
        wrong.append(f'{module}:{line} imports {target} ({here} may import only {sorted(ALLOWED[here])})')
  assert not wrong, '\n'.join(wrong)


def test_no_import_cycles_between_modules():
  own = _own_edges()
  edges = {m: {t for t, _, _ in imps if t in own} for m, imps in own.items()}
  # A package's __init__ re-exporting its submodules (and a submodule importing a sibling through the package) is
  # not a cycle of the design: edges between a package and its own submodules are skipped.
  state, cycles = {}, []

  def visit(node, stack):
    state[node] = 'open'
    for nxt in sorted(edges.get(node, ())):
      if nxt.startswith(node + '.') or node.startswith(nxt + '.'):
        continue
      if state.get(nxt) == 'open':
        cycles.append(' -> '.join(stack[stack.index(nxt):] + [nxt]))
      elif nxt not in state:
        visit(nxt, stack + [nxt])
    state[node] = 'done'

  for module in sorted(edges):
    if module not in state:
      visit(module, [module])
  assert not cycles, '\n'.join(cycles)


@pytest.mark.parametrize('folder', ['avdiff', 'experiments'])
def test_no_lazy_imports_of_our_modules(folder):
  """Imports of our own modules sit at the top of the file (heavy optional packages such as torch, dlib or the I3D
  weights are imported where they are used, by the module that needs them)."""
  lazy = [f'{os.path.relpath(path, REPO)}:{line} imports {m} inside a function'
          for path in _python_files(folder) for m, line, nested in _imports(path)
          if nested and m.split('.')[0] in ('avdiff', 'configs', 'experiments')]
  assert not lazy, '\n'.join(lazy)


def test_entry_points_are_wiring_only():
  """Each experiments/ file parses flags and calls one function of the package: it defines `main` and nothing
  else (no classes, no helpers)."""
  fat = []
  for path in _python_files('experiments'):
    tree = ast.parse(open(path).read(), path)
    defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
    if os.path.basename(path) != '__init__.py' and defs != ['main']:
      fat.append(f'{os.path.relpath(path, REPO)} defines {defs}')
  assert not fat, '\n'.join(fat)


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
  """The rules above can fail: an evaluation module importing the trainer, lazily, and a cycle are reported."""
  pkg = tmp_path / 'avdiff' / 'eval'
  pkg.mkdir(parents=True)
  (tmp_path / 'avdiff' / '__init__.py').write_text('')
  (pkg / '__init__.py').write_text('')
  (pkg / 'bad.py').write_text('def f():\n  from avdiff.train import loop\n  return loop\n')
  (pkg / 'a.py').write_text('from avdiff.eval import b\n')
  (pkg / 'b.py').write_text('from avdiff.eval import a\n')
  (tmp_path / 'avdiff' / 'train').mkdir()
  (tmp_path / 'avdiff' / 'train' / 'loop.py').write_text('')
  monkeypatch.setattr(sys.modules[__name__], 'REPO', str(tmp_path))
  with pytest.raises(AssertionError, match='avdiff.eval.bad:2 imports avdiff.train.loop'):
    test_layers_import_only_layers_below()
  with pytest.raises(AssertionError, match='inside a function'):
    test_no_lazy_imports_of_our_modules('avdiff')
  with pytest.raises(AssertionError, match='avdiff.eval.a -> avdiff.eval.b -> avdiff.eval.a'):
    test_no_import_cycles_between_modules()
