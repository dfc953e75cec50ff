"""The GCS emulator fixture: epath (gcsfs), a subprocess and TensorStore all reach the same bucket."""

import subprocess
import sys

import numpy as np
import tensorstore as ts
from etils import epath


def test_emulated_bucket_is_shared_by_gcsfs_subprocesses_and_tensorstore(gcs_bucket):
  path = epath.Path(gcs_bucket) / 'a' / 'b.txt'
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text('hello')
  assert path.read_text() == 'hello'
  assert [p.name for p in (epath.Path(gcs_bucket) / 'a').iterdir()] == ['b.txt']

  # A subprocess inherits the environment, so it reads the same object.
  read = subprocess.run([sys.executable, '-c', f'from etils import epath; print(epath.Path("{path}").read_text())'],
                        capture_output=True, text=True, timeout=120, check=False)
  assert read.stdout.strip() == 'hello', read.stderr

  # TensorStore (what Orbax writes arrays with) reads TENSORSTORE_GCS_HTTP_URL.
  array = ts.open({'driver': 'zarr', 'kvstore': f'{gcs_bucket}/ts/'}, create=True, dtype=ts.float32,
                  shape=[4]).result()
  array.write(np.arange(4, dtype=np.float32)).result()
  np.testing.assert_array_equal(array.read().result(), np.arange(4, dtype=np.float32))
