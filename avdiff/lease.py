"""Workdir io: the lease that lets one trainer at a time write a run directory.

A trainer holds `W/lease.json` (host, pid, process count, start time, last renewal time, all times in seconds
since the epoch) while it runs: it creates the file before touching anything else in W, renews it every
`timeout_s / 4` seconds from a background thread (file io only, so the loop never waits on it) and deletes it on a
clean or preempted exit. A second trainer on the same W stops with `LeaseHeldError` naming the holder. A lease
whose holder stopped renewing for more than `timeout_s` seconds, or whose process is gone (same host, pid no
longer alive), is taken over with a warning naming the old holder.

Every change is a compare-and-swap, so two trainers starting together cannot both win:
  local path   create: temp file + os.link (fails if lease.json exists); renew / take over / release: read, check
               and write under an exclusive flock on `W/lease.lock` (never deleted; writes by temp + os.replace)
  gs://b/p     google-cloud-storage generation preconditions: if_generation_match=0 to create,
               =<generation read> to renew, take over or delete
Staleness compares the reader's clock with the holder's last renewal time: hosts are assumed to keep their clocks
within a few seconds of each other (NTP), far below the timeout.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from typing import Callable, Optional

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from avdiff import console

LEASE_FILE = 'lease.json'
LOCK_FILE = 'lease.lock'  # Local paths only: serializes read-check-write between trainers.
_ACQUIRE_ATTEMPTS = 5  # Lost races (another trainer changed the lease between our read and write) before giving up.
_MESSAGE_BYTES = 4096  # Process 0's outcome, broadcast to the other processes as fixed-size UTF-8.


class LeaseHeldError(console.UserError):
  """Another live trainer holds the run directory; the message names it and says what to do."""


class LeaseLostError(console.UserError):
  """This trainer's lease was taken over while it ran (it did not renew within the timeout)."""


# ----------------------------------------------------------------------------- the record

@dataclasses.dataclass(frozen=True)
class Holder:
  """Who holds a lease. `started` and `renewed` are seconds since the epoch; `token` tells two holders apart."""
  host: str
  pid: int
  processes: int
  started: float
  renewed: float
  token: str

  def to_json(self) -> bytes:
    return json.dumps(dataclasses.asdict(self), indent=1).encode()

  @classmethod
  def from_json(cls, data: bytes) -> 'Holder':
    """Raises ValueError (also for a lease file that is not JSON or misses a field)."""
    try:
      fields = json.loads(data)
      return cls(str(fields['host']), int(fields['pid']), int(fields['processes']), float(fields['started']),
                 float(fields['renewed']), str(fields['token']))
    except (KeyError, TypeError, json.JSONDecodeError) as e:
      raise ValueError(f'not a lease record: {e}') from e

  def describe(self, now: float) -> str:
    """'host h1, pid 123 (2 processes), running since 2026-12-02 17:31:45 UTC, last renewed 12 s ago'."""
    procs = '' if self.processes == 1 else f' ({self.processes} processes)'
    return (f'host {self.host}, pid {self.pid}{procs}, running since {_utc(self.started)}, last renewed '
            f'{max(0.0, now - self.renewed):.0f} s ago')


def _utc(seconds: float) -> str:
  return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')


def _pid_alive(pid: int) -> bool:
  """Whether process `pid` of this host still runs (a zombie, killed but not yet reaped, counts as gone)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Another user's process: it exists.
    return True
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except (OSError, IndexError):  # No /proc (macOS): kill(pid, 0) is all we know.
    return True


# ----------------------------------------------------------------------------- stores

class _LocalStore:
  """lease.json in a local (or shared POSIX) folder. A token is the exact bytes last read or written."""

  def __init__(self, workdir: str):
    self.dir = workdir
    self.path = os.path.join(workdir, LEASE_FILE)

  def read(self) -> Optional[tuple[bytes, bytes]]:
    """(contents, token) or None when there is no lease file."""
    try:
      with open(self.path, 'rb') as f:
        data = f.read()
    except FileNotFoundError:
      return None
    return data, data

  def create(self, data: bytes) -> Optional[bytes]:
    """Writes the lease if none exists; returns its token, or None when one exists already."""
    os.makedirs(self.dir, exist_ok=True)
    tmp = self._write_temp(data)
    try:
      os.link(tmp, self.path)  # Atomic and exclusive: fails if lease.json exists; readers never see it half-written.
    except FileExistsError:
      return None
    finally:
      os.unlink(tmp)
    return data

  def replace(self, data: bytes, token: bytes) -> Optional[bytes]:
    """Overwrites the lease if it is still `token`; returns the new token, or None when it changed meanwhile."""
    with self._locked():
      if self.read() != (token, token):
        return None
      os.replace(self._write_temp(data), self.path)
    return data

  def delete(self, token: bytes) -> bool:
    """Deletes the lease if it is still `token`."""
    with self._locked():
      if self.read() != (token, token):
        return False
      os.unlink(self.path)
    return True

  def _write_temp(self, data: bytes) -> str:
    tmp = os.path.join(self.dir, f'.{LEASE_FILE}.{uuid.uuid4().hex}.tmp')
    with open(tmp, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    return tmp

  def _locked(self):
    return _FileLock(os.path.join(self.dir, LOCK_FILE))


class _FileLock:
  """An exclusive flock on a file, held for a `with` block (blocks until free: holders keep it for milliseconds)."""

  def __init__(self, path: str):
    self.path = path
    self.fd = -1

  def __enter__(self):
    self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(self.fd, fcntl.LOCK_EX)
    return self

  def __exit__(self, *exc):
    fcntl.flock(self.fd, fcntl.LOCK_UN)
    os.close(self.fd)


class _GcsStore:
  """lease.json as an object in a bucket; a token is the object's generation. google-cloud-storage reads
  STORAGE_EMULATOR_HOST, so an emulator works as the bucket."""

  def __init__(self, workdir: str):
    # A heavy client library that only runs on buckets need.
    from google.api_core import exceptions  # pylint: disable=g-import-not-at-top
    from google.cloud import storage  # pylint: disable=g-import-not-at-top
    bucket, _, prefix = workdir[len('gs://'):].partition('/')
    self.name = f'{prefix.strip("/")}/{LEASE_FILE}' if prefix.strip('/') else LEASE_FILE
    self.bucket = storage.Client().bucket(bucket)
    self.failed = (exceptions.PreconditionFailed, exceptions.NotFound)

  def read(self) -> Optional[tuple[bytes, int]]:
    for _ in range(_ACQUIRE_ATTEMPTS):
      blob = self.bucket.get_blob(self.name)
      if blob is None:
        return None
      try:
        return blob.download_as_bytes(if_generation_match=blob.generation), blob.generation
      except self.failed:  # Rewritten or deleted between the two requests: read again.
        continue
    raise RuntimeError(f'gs://{self.bucket.name}/{self.name} keeps changing while being read')

  def create(self, data: bytes) -> Optional[int]:
    return self._upload(data, 0)

  def replace(self, data: bytes, token: int) -> Optional[int]:
    return self._upload(data, token)

  def delete(self, token: int) -> bool:
    # The precondition alone suffices on GCS; checking first also protects on emulators that ignore it on delete.
    blob = self.bucket.get_blob(self.name)
    if blob is None or blob.generation != token:
      return False
    try:
      blob.delete(if_generation_match=token)
    except self.failed:
      return False
    return True

  def _upload(self, data: bytes, generation: int) -> Optional[int]:
    blob = self.bucket.blob(self.name)
    try:
      blob.upload_from_string(data, content_type='application/json', if_generation_match=generation)
    except self.failed:
      return None
    return blob.generation


def _store(workdir: str):
  return _GcsStore(workdir) if workdir.startswith('gs://') else _LocalStore(workdir)


# ----------------------------------------------------------------------------- the lease

class Lease:
  """The lease on one run directory, for this process (or, given, another identity: tests).

  Args:
    workdir: a local path or gs://bucket/prefix.
    timeout_s: seconds without renewal after which another trainer may take the lease over.
    processes: processes of the job that holds it (recorded for the message a refused trainer prints).
    host, pid: the holder's identity; default this host and process.
    clock: seconds since the epoch (time.time).
  """

  def __init__(self, workdir: str, timeout_s: float, processes: int = 1, *, host: Optional[str] = None,
               pid: Optional[int] = None, clock: Callable[[], float] = time.time):
    self.workdir = str(workdir).rstrip('/')
    self.location = f'{self.workdir}/{LEASE_FILE}'
    self.timeout_s = float(timeout_s)
    self.host = host or socket.gethostname()
    self.pid = os.getpid() if pid is None else pid
    self.processes = processes
    self.clock = clock
    self.store = _store(self.workdir)
    self.holder: Optional[Holder] = None  # Ours, as last written.
    self.lost: Optional[Holder] = None  # Who took it over, once renewal found it gone.
    self._token = None
    self._mutex = threading.Lock()  # Renewal thread vs. release.
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None

  def acquire(self) -> Optional[Holder]:
    """Takes the lease; returns the previous holder when it was taken over (and warns), else None.
    Raises LeaseHeldError when a live trainer holds it."""
    for _ in range(_ACQUIRE_ATTEMPTS):
      now = self.clock()
      mine = Holder(self.host, self.pid, self.processes, now, now, uuid.uuid4().hex)
      found = self.store.read()
      if found is None:
        if self._took(mine, self.store.create(mine.to_json())):
          return None
        continue  # Another trainer created it between our read and create: look again.
      data, token = found
      old, why = self._takeover_reason(data, now)
      if why is None:
        raise LeaseHeldError(self._held_message(old, now))
      if self._took(mine, self.store.replace(mine.to_json(), token)):
        logging.warning('Took over the lease on %s from %s: %s.', self.workdir,
                        old.describe(now) if old else 'an unreadable lease file', why)
        return old
    raise LeaseHeldError(f'{self.workdir}: other trainers kept changing {self.location} while this one tried to '
                         'take it; is the same command running several times at once? Run it once.')

  def _took(self, mine: Holder, token) -> bool:
    if token is None:
      return False
    self.holder, self._token, self.lost = mine, token, None
    return True

  def _takeover_reason(self, data: bytes, now: float) -> tuple[Optional[Holder], Optional[str]]:
    """(holder read, why it may be taken over now, or None while it is live)."""
    try:
      old = Holder.from_json(data)
    except ValueError as e:
      return None, f'the lease file is unreadable ({e})'
    if old.host == self.host and old.pid == self.pid:
      return old, 'held by this very process (a run in it that did not release it)'
    if old.host == self.host and not _pid_alive(old.pid):
      return old, f'process {old.pid} no longer runs on this host'
    if now - old.renewed > self.timeout_s:
      return old, f'not renewed for {now - old.renewed:.0f} s, more than train.lease_timeout_s={self.timeout_s:g}'
    return old, None

  def _held_message(self, old: Holder, now: float) -> str:
    return (f'{self.workdir} is in use by another trainer: {old.describe(now)} ({self.location}). Wait for it to '
            f'finish or stop it, or give this run another --workdir. A trainer that died without stopping is '
            f'taken over by the same command {self.timeout_s:g} s after its last renewal (train.lease_timeout_s), '
            f'at once on its own host.')

  def renew(self) -> bool:
    """Writes a new renewal time if the lease is still ours; False (and `lost` set) when another trainer took it."""
    with self._mutex:
      if self.holder is None or self.lost is not None:
        return False
      mine = dataclasses.replace(self.holder, renewed=self.clock())
      token = self.store.replace(mine.to_json(), self._token)
      if token is None:
        self.lost = self._current_holder() or self.holder
        logging.error('The lease on %s was taken over by %s; this trainer must stop.', self.workdir,
                      self.lost.describe(self.clock()))
        return False
      self.holder, self._token = mine, token
      return True

  def _current_holder(self) -> Optional[Holder]:
    found = self.store.read()
    try:
      return Holder.from_json(found[0]) if found else None
    except ValueError:
      return None

  def start_renewing(self, every_s: Optional[float] = None) -> None:
    """Renews every `every_s` seconds (default timeout_s / 4) on a daemon thread until `release`."""
    every_s = self.timeout_s / 4 if every_s is None else every_s
    self._stop.clear()
    self._thread = threading.Thread(target=self._renew_until_stopped, args=(every_s,), name='lease-renewal',
                                    daemon=True)
    self._thread.start()

  def _renew_until_stopped(self, every_s: float) -> None:
    while not self._stop.wait(every_s):
      try:
        if not self.renew():
          return
      except Exception as e:  # pylint: disable=broad-except  (a failed renewal is retried: the timeout allows 3)
        logging.warning('Could not renew the lease on %s (%s: %s); retrying in %.0f s.', self.workdir,
                        type(e).__name__, e, every_s)

  def release(self) -> None:
    """Stops renewing and deletes the lease if it is still ours. Idempotent."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
      self._thread = None
    with self._mutex:
      if self.holder is not None and self.lost is None:
        if not self.store.delete(self._token):
          logging.warning('The lease on %s was no longer ours at release; left it in place.', self.workdir)
      self.holder, self._token = None, None

  def check(self) -> None:
    """Raises LeaseLostError when renewal found the lease taken over."""
    if self.lost is not None:
      raise lost_error(self.workdir, self.lost.describe(self.clock()))


def lost_error(workdir: str, holder: str) -> LeaseLostError:
  return LeaseLostError(f'{workdir} was taken over by another trainer ({holder}) because this one did not renew its '
                        'lease within train.lease_timeout_s (was the process paused or the storage unreachable?); '
                        'stopped without saving. Let one of the two finish.')


# ----------------------------------------------------------------------------- one lease per job

def acquire_for_job(workdir: str, timeout_s: float) -> Optional[Lease]:
  """The job's lease: process 0 acquires it and renews it every timeout_s / 4 seconds; every process learns the
  outcome through a broadcast, so all of them stop together on refusal. Returns the Lease on process 0, None on
  the others. Raises LeaseHeldError (on every process) when another trainer holds the workdir."""
  lease, outcome = None, ''
  if jax.process_index() == 0:
    lease = Lease(workdir, timeout_s, jax.process_count())
    try:
      lease.acquire()
    except LeaseHeldError as e:
      outcome = str(e)
    except Exception as e:  # pylint: disable=broad-except  (told to the other processes, then re-raised)
      _broadcast(f'process 0 could not take the lease on {workdir}: {type(e).__name__}: {e}')
      raise
  outcome = _broadcast(outcome)
  if outcome:
    raise LeaseHeldError(outcome)
  if lease is not None:
    lease.start_renewing()
  return lease


def _broadcast(text: str) -> str:
  """Process 0's text on every process (a no-op with one process)."""
  if jax.process_count() == 1:
    return text
  buf = np.zeros(_MESSAGE_BYTES, np.uint8)
  raw = text.encode()[:_MESSAGE_BYTES]
  buf[:len(raw)] = np.frombuffer(raw, np.uint8)
  out = np.asarray(multihost_utils.broadcast_one_to_all(buf))
  return bytes(out[out != 0].tobytes()).decode(errors='replace')


def any_lost(lease: Optional[Lease]) -> Optional[str]:
  """The holder that took this job's lease over (described), agreed by every process; None while it is ours."""
  mine = lease.lost.describe(lease.clock()) if lease is not None and lease.lost is not None else ''
  return _broadcast(mine) or None
