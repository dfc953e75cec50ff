"""Output of the benchmark scripts: the result text on stdout, and in a file when one is named."""


def emit(lines: list[str], out: str = '') -> str:
  """Prints the lines joined and writes them to `out` (with a final newline) when it is not empty."""
  text = '\n'.join(lines)
  print(text)
  if out:
    with open(out, 'w') as f:
      f.write(text + '\n')
  return text
