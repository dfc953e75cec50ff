"""The run directory's lease (avdiff.lease), on a local folder and on an emulated GCS bucket: acquire, refuse with
the holder named, renew, take over a stale lease (with a warning) or one whose process is gone, release, and only
one winner when trainers race."""

import json
import subprocess
import threading
import time
import types

import pytest

from avdiff import lease as lease_lib

TIMEOUT_S = 120.0
OTHER_HOST = 'another-host'  # A holder elsewhere: its pid cannot be checked, only its renewal time.


class _Clock:
  """Seconds since the epoch, moved by hand."""

  def __init__(self, now: float = 1_790_000_000.0):
    self.now = now

  def __call__(self) -> float:
    return self.now


@pytest.fixture(params=['local', 'gcs'])
def workdir(request, tmp_path):
  if request.param == 'local':
    return str(tmp_path / 'run')
  return request.getfixturevalue('gcs_bucket') + '/runs/run'


@pytest.fixture
def live_pid():
  """The pid of a process of this host that runs for the test's duration."""
  proc = subprocess.Popen(['sleep', '300'])
  yield proc.pid
  proc.kill()
  proc.wait()


def _record(workdir):
  found = lease_lib._store(workdir).read()  # pylint: disable=protected-access
  return None if found is None else json.loads(found[0])


def test_acquire_names_the_holder_and_release_deletes_it(workdir):
  lease = lease_lib.Lease(workdir, TIMEOUT_S, processes=2)
  assert lease.acquire() is None
  record = _record(workdir)
  assert (record['host'], record['pid'], record['processes']) == (lease.host, lease.pid, 2)
  assert record['started'] == record['renewed'] > 0
  lease.release()
  assert _record(workdir) is None
  lease.release()  # Idempotent.


def test_a_live_holder_is_named_and_not_disturbed(workdir, live_pid):
  clock = _Clock()
  holder = lease_lib.Lease(workdir, TIMEOUT_S, pid=live_pid, clock=clock)
  holder.acquire()
  before = _record(workdir)
  clock.now += 30
  with pytest.raises(lease_lib.LeaseHeldError) as refused:
    lease_lib.Lease(workdir, TIMEOUT_S, clock=clock).acquire()
  message = str(refused.value)
  assert '\n' not in message
  for part in (f'host {holder.host}', f'pid {live_pid}', 'running since', 'last renewed 30 s ago', 'lease.json',
               'train.lease_timeout_s'):
    assert part in message, message
  assert _record(workdir) == before
  # Another host's holder that renewed within the timeout is refused the same way (its pid is not checked).
  other = lease_lib.Lease(workdir, TIMEOUT_S, host=OTHER_HOST, pid=1, clock=clock)
  with pytest.raises(lease_lib.LeaseHeldError):
    other.acquire()


def test_renewal_moves_the_time_forward(workdir):
  clock = _Clock()
  lease = lease_lib.Lease(workdir, TIMEOUT_S, clock=clock)
  lease.acquire()
  started = _record(workdir)['started']
  clock.now += 45
  assert lease.renew()
  record = _record(workdir)
  assert (record['started'], record['renewed']) == (started, started + 45)
  lease.release()


def test_a_stale_lease_is_taken_over_with_a_warning(workdir, caplog):
  clock = _Clock()
  old = lease_lib.Lease(workdir, TIMEOUT_S, host=OTHER_HOST, pid=4242, clock=clock)
  old.acquire()
  clock.now += TIMEOUT_S - 1
  with pytest.raises(lease_lib.LeaseHeldError):
    lease_lib.Lease(workdir, TIMEOUT_S, clock=clock).acquire()
  clock.now += 2
  new = lease_lib.Lease(workdir, TIMEOUT_S, clock=clock)
  previous = new.acquire()
  assert (previous.host, previous.pid) == (OTHER_HOST, 4242)
  assert _record(workdir)['pid'] == new.pid
  warning = [r.getMessage() for r in caplog.records if 'Took over the lease' in r.getMessage()]
  assert warning and f'host {OTHER_HOST}, pid 4242' in warning[0] and 'not renewed for 121 s' in warning[0]
  # The old holder, back to life, finds it gone at its next renewal and stops; its release leaves the new lease.
  assert not old.renew()
  assert old.lost.pid == new.pid
  with pytest.raises(lease_lib.LeaseLostError, match=f'pid {new.pid}'):
    old.check()
  old.release()
  assert _record(workdir)['pid'] == new.pid
  new.release()


def test_a_dead_process_on_this_host_is_taken_over_at_once(workdir, caplog):
  proc = subprocess.Popen(['true'])
  proc.wait()  # Gone and reaped: its pid is free.
  lease_lib.Lease(workdir, TIMEOUT_S, pid=proc.pid).acquire()
  new = lease_lib.Lease(workdir, TIMEOUT_S)
  assert new.acquire().pid == proc.pid
  assert any(f'process {proc.pid} no longer runs' in r.getMessage() for r in caplog.records)
  new.release()


def test_this_process_takes_back_a_lease_it_did_not_release(workdir):
  first = lease_lib.Lease(workdir, TIMEOUT_S)
  first.acquire()
  second = lease_lib.Lease(workdir, TIMEOUT_S)
  assert second.acquire().token == first.holder.token
  second.release()


def test_an_unreadable_lease_file_is_taken_over(workdir):
  lease_lib._store(workdir).create(b'not json')  # pylint: disable=protected-access
  lease = lease_lib.Lease(workdir, TIMEOUT_S)
  assert lease.acquire() is None
  assert _record(workdir)['pid'] == lease.pid
  lease.release()


def _race(workdir, clock, n=6):
  """n trainers, each on its own host (so only renewal times count), acquire at once; returns the winners."""
  leases = [lease_lib.Lease(workdir, TIMEOUT_S, host=f'host-{i}', pid=1000 + i, clock=clock) for i in range(n)]
  won, barrier = [], threading.Barrier(n)

  def attempt(lease):
    barrier.wait()
    try:
      lease.acquire()
      won.append(lease)
    except lease_lib.LeaseHeldError:
      pass

  threads = [threading.Thread(target=attempt, args=(lease,)) for lease in leases]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  return won


def test_racing_trainers_have_one_winner(workdir):
  clock = _Clock()
  won = _race(workdir, clock)
  assert len(won) == 1 and _record(workdir)['pid'] == won[0].pid
  # Taking over a stale lease is a race too: exactly one of the racers replaces it.
  clock.now += TIMEOUT_S + 1
  won = _race(workdir, clock)
  assert len(won) == 1 and _record(workdir)['pid'] == won[0].pid


def test_background_renewal_and_job_lease(workdir):
  lease = lease_lib.acquire_for_job(workdir, TIMEOUT_S)  # One process: it holds the lease itself.
  first = _record(workdir)['renewed']
  lease.release()
  lease = lease_lib.Lease(workdir, TIMEOUT_S)
  lease.acquire()
  lease.start_renewing(every_s=0.05)
  deadline = time.time() + 30
  while _record(workdir)['renewed'] == first and time.time() < deadline:
    time.sleep(0.05)
  assert _record(workdir)['renewed'] > first
  lease.release()
  assert _record(workdir) is None


def test_the_loop_stops_once_its_lease_was_taken_over(tmp_path):
  """The training loop's LeaseCheck hook raises, naming the new holder, as soon as renewal found the lease gone."""
  from avdiff.train import loop as loop_lib  # pylint: disable=g-import-not-at-top  (the trainer: only this test)
  workdir, clock = str(tmp_path), _Clock()
  mine = lease_lib.Lease(workdir, TIMEOUT_S, host=OTHER_HOST, pid=7, clock=clock)
  mine.acquire()
  fake = types.SimpleNamespace(lease=mine, workdir=workdir, config=types.SimpleNamespace(
      train=types.SimpleNamespace(log_every=1)))
  loop_lib.LeaseCheck().after_step(fake, None, 1)  # Still ours: nothing happens.
  clock.now += TIMEOUT_S + 1
  lease_lib.Lease(workdir, TIMEOUT_S, clock=clock).acquire()
  assert not mine.renew()
  with pytest.raises(lease_lib.LeaseLostError, match=r'taken over by another trainer \(host .*stopped without saving'):
    loop_lib.LeaseCheck().after_step(fake, None, 2)
