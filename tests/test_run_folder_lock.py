"""One writer per run folder, tested with real processes: two started together, one started
mid-run, a holder killed with SIGKILL, a holder stopped with Ctrl-C (SIGINT).

Each run is a subprocess on the JAX backend (as in test_experiments_kill.py) training a small
VAE with a short sleep after every batch, so that a run lasts seconds. Processes that must
start together build their model first, say READY, and wait for a "go" file, so that their
calls to `fit_resumable` meet within milliseconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pandas as pd
import pytest

from tiny import ROOT
import tiny
import vaekit
from vaekit import _io, _lock, training

EPOCHS = 5
CONFIG = {"purpose": "lock test"}

SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import keras, numpy as np
    import vaekit
    from vaekit import training

    run_dir, epochs, go_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    keras.utils.set_random_seed(0)
    vae = vaekit.fc_vae(input_shape=(28, 28, 1), latent_dim=2, hidden_units=64, seed=1)
    # One step per call, so that the per-batch pause below runs after every batch and paces every epoch
    # (with TensorFlow's default of 32 steps per call it ran once an epoch, and a run could end before a signal).
    vae.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=1)
    x = np.random.default_rng(0).random((96, 28, 28, 1)).astype("float32")
    slow = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: time.sleep(0.05))
    print("READY", flush=True)
    while go_file != "-" and not os.path.exists(go_file):
        time.sleep(0.001)
    history = training.fit_resumable(vae, x, run_dir=run_dir, epochs=epochs, config={"purpose": "lock test"},
                                     batch_size=8, verbose=0, callbacks=[slow])
    print("RESULTS" + json.dumps(history), flush=True)
""")


@pytest.fixture
def start(run_on_backend):
    """start(run_dir, go_file="-", epochs=EPOCHS): the training SCRIPT, started on JAX; the Popen, its output piped."""
    return lambda run_dir, go_file="-", epochs=EPOCHS: run_on_backend.popen(
        "jax", SCRIPT, run_dir, epochs, go_file, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=1"})


def wait_for_line(process, text: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if text in line:
            return
        if not line and process.poll() is not None:
            raise AssertionError(f"process ended before {text!r}:\n{process.stderr.read()[-3000:]}")
    raise TimeoutError(f"no {text!r} from the process")


def wait_until(process, condition, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            raise AssertionError(f"the process ended first:\n{process.stderr.read()[-3000:]}")
        time.sleep(0.005)
    raise TimeoutError("the training process made no progress")


def finish(process, timeout: float = 600.0) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def epochs_saved(run_dir) -> int:
    try:
        return len(pd.read_csv(run_dir / "history.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


def folder_history(run_dir) -> dict[str, list[float]]:
    log = pd.read_csv(run_dir / "history.csv")
    assert log["epoch"].tolist() == list(range(len(log)))
    return {name: log[name].tolist() for name in log.columns if name != "epoch"}


def assert_same_history(returned: dict, run_dir) -> None:
    saved = folder_history(run_dir)
    assert set(saved) == set(returned)
    for name in saved:
        np.testing.assert_allclose(saved[name], returned[name], rtol=1e-6, err_msg=name)


def leftovers(run_dir) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir() if _io.TEMPORARY_MARK in p.name or p.name.endswith(".removing"))


def test_two_processes_started_together_one_trains_the_other_is_refused_naming_folder_and_holder(tmp_path, start):
    run_dir, go = tmp_path / "run", tmp_path / "go"
    processes = [start(run_dir, go), start(run_dir, go)]
    for process in processes:
        wait_for_line(process, "READY")
    go.touch()
    results = [finish(process) for process in processes]
    winners = [i for i, (code, _, _) in enumerate(results) if code == 0]
    assert len(winners) == 1, [(code, err[-1500:]) for code, _, err in results]
    winner, loser = winners[0], 1 - winners[0]
    error = results[loser][2]
    assert "RunFolderBusyError" in error and f"run folder {run_dir} is in use by process {processes[winner].pid}" in error
    assert socket.gethostname() in error
    history = json.loads(results[winner][1].split("RESULTS", 1)[1])
    assert len(history["loss"]) == EPOCHS
    assert_same_history(history, run_dir)
    assert not (run_dir / _lock.LOCK_NAME).exists() and leftovers(run_dir) == []


def test_a_process_started_mid_run_is_refused_and_the_first_loses_nothing(tmp_path, start):
    run_dir = tmp_path / "run"
    first, second = start(run_dir, tmp_path / "go first"), start(run_dir, tmp_path / "go second")
    for process in (first, second):
        wait_for_line(process, "READY")
    (tmp_path / "go first").touch()
    wait_until(first, lambda: epochs_saved(run_dir) >= 1)
    (tmp_path / "go second").touch()  # while the first trains, between and during its saves
    code, _, error = finish(second)
    assert code != 0 and f"run folder {run_dir} is in use by process {first.pid}" in error
    code, out, error = finish(first)
    assert code == 0, error[-3000:]
    history = json.loads(out.split("RESULTS", 1)[1])
    assert len(history["loss"]) == EPOCHS  # every epoch, none lost to the second process
    assert_same_history(history, run_dir)
    assert leftovers(run_dir) == []


def test_the_lock_of_a_killed_process_is_taken_over_and_the_run_resumes(tmp_path, start):
    run_dir = tmp_path / "run"
    first = start(run_dir)
    wait_until(first, lambda: epochs_saved(run_dir) >= 1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    lock = json.loads((run_dir / _lock.LOCK_NAME).read_text())
    assert lock["pid"] == first.pid  # SIGKILL runs no `finally`: the lock stays behind
    saved = epochs_saved(run_dir)
    assert 1 <= saved < EPOCHS
    code, out, error = finish(start(run_dir))
    assert code == 0, error[-3000:]
    assert f"resuming at epoch {saved + 1} of {EPOCHS}" in out
    history = json.loads(out.split("RESULTS", 1)[1])
    assert len(history["loss"]) == EPOCHS
    assert_same_history(history, run_dir)
    assert not (run_dir / _lock.LOCK_NAME).exists()


def test_ctrl_c_releases_the_lock(tmp_path, start):
    run_dir, epochs = tmp_path / "run", 4 * EPOCHS
    process = start(run_dir, epochs=epochs)
    wait_until(process, lambda: epochs_saved(run_dir) >= 1)
    # Python can swallow a KeyboardInterrupt that lands inside a finaliser ("Exception ignored in ..."),
    # as it would for a user, who then presses Ctrl-C again: so does the test, until the process stops.
    while process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
    code, _, error = finish(process)
    assert code != 0 and "KeyboardInterrupt" in error
    assert not (run_dir / _lock.LOCK_NAME).exists()
    assert 1 <= epochs_saved(run_dir) < epochs


# --- The lock in this process: holders alive, gone, elsewhere; a lock taken away mid-run ----------

def write_lock(run_dir, **record) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"host": socket.gethostname(), "started": time.time(), "started_utc": "now", "token": "x", **record}
    (run_dir / _lock.LOCK_NAME).write_text(json.dumps(record))


def tiny_run():
    keras.utils.set_random_seed(0)
    vae = vaekit.fc_vae(input_shape=(4, 4, 1), latent_dim=2, hidden_units=8, seed=1)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    return vae, np.random.default_rng(0).random((16, 4, 4, 1)).astype("float32")


def test_a_lock_held_by_a_live_process_refuses_and_says_who_holds_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        write_lock(tmp_path / "run", pid=holder.pid, command="python train.py")
        vae, x = tiny_run()
        with pytest.raises(training.RunFolderBusyError, match=rf"in use by process {holder.pid} .*python train\.py"):
            training.fit_resumable(vae, x, run_dir=tmp_path / "run", epochs=1, verbose=0)
        assert not (tmp_path / "run" / "checkpoint.npz").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_process_that_has_ended_is_taken_over(tmp_path):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    write_lock(tmp_path / "run", pid=ended.pid)
    vae, x = tiny_run()
    history = training.fit_resumable(vae, x, run_dir=tmp_path / "run", epochs=1, verbose=0)
    assert len(history["loss"]) == 1
    assert not (tmp_path / "run" / _lock.LOCK_NAME).exists()


def test_a_lock_whose_pid_now_belongs_to_a_newer_process_is_stale(tmp_path):
    # The lock's pid runs (it is this process) but started long after the lock was written: pid reuse.
    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("process start times come from /proc")
    write_lock(tmp_path / "run", pid=os.getpid(), started=time.time() - 10 * 24 * 3600)
    vae, x = tiny_run()
    assert len(training.fit_resumable(vae, x, run_dir=tmp_path / "run", epochs=1, verbose=0)["loss"]) == 1


def test_a_lock_from_another_host_is_refused_with_how_to_clear_it(tmp_path):
    write_lock(tmp_path / "run", pid=12345, host="other-machine")
    vae, x = tiny_run()
    lock = tmp_path / "run" / _lock.LOCK_NAME
    with pytest.raises(training.RunFolderBusyError, match=rf"'other-machine'.*delete {lock}"):
        training.fit_resumable(vae, x, run_dir=tmp_path / "run", epochs=1, verbose=0)


def test_a_lock_file_that_was_never_written_blocks_only_briefly(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    lock = tmp_path / "run" / _lock.LOCK_NAME
    lock.touch()  # a holder killed between creating the file and writing it
    old = time.time() - 60
    os.utime(lock, (old, old))
    vae, x = tiny_run()
    assert len(training.fit_resumable(vae, x, run_dir=tmp_path / "run", epochs=1, verbose=0)["loss"]) == 1


def test_a_run_whose_lock_was_taken_writes_nothing_more(tmp_path):
    run_dir = tmp_path / "run"
    vae, x = tiny_run()
    training.fit_resumable(vae, x, run_dir=run_dir, epochs=3, verbose=0, batch_size=8, callbacks=[tiny.StopAfter(1)])
    before = (run_dir / "checkpoint.npz").read_bytes()

    def take_lock(epoch, logs):  # as if the file were deleted by hand and another process took the folder
        write_lock(run_dir, pid=os.getpid(), token="another holder")

    with pytest.raises(training.RunFolderBusyError, match="no longer this process's"):
        training.fit_resumable(vae, x, run_dir=run_dir, epochs=3, verbose=0, batch_size=8,
                               callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=take_lock)])
    assert (run_dir / "checkpoint.npz").read_bytes() == before
    assert json.loads((run_dir / _lock.LOCK_NAME).read_text())["token"] == "another holder"  # not removed


def test_the_same_process_cannot_open_a_folder_twice(tmp_path):
    with _lock.RunLock(tmp_path):
        with pytest.raises(training.RunFolderBusyError, match="this one"):
            _lock.RunLock(tmp_path).acquire()
    with _lock.RunLock(tmp_path):  # released on exit
        assert json.loads((tmp_path / _lock.LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / _lock.LOCK_NAME).exists()


# --- Races on a stale lock ------------------------------------------------------------------------

def test_a_stale_lock_found_by_two_processes_is_removed_once(tmp_path):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    write_lock(tmp_path, pid=ended.pid)
    stale = json.loads((tmp_path / _lock.LOCK_NAME).read_text())
    first = _lock.RunLock(tmp_path)
    first.acquire()  # removed the stale lock and wrote its own
    _lock.RunLock(tmp_path)._remove_stale(stale)  # the second, late, with the record it read before
    assert json.loads((tmp_path / _lock.LOCK_NAME).read_text())["token"] == first.token
    first.release()


def test_a_lock_file_being_created_is_not_taken_for_stale(tmp_path):
    (tmp_path / _lock.LOCK_NAME).touch()  # created a moment ago, its record not yet written
    _lock.RunLock(tmp_path)._remove_stale(None)
    assert (tmp_path / _lock.LOCK_NAME).exists()
    with pytest.raises(training.RunFolderBusyError, match="moments ago"):
        _lock.RunLock(tmp_path).acquire()


RACER = textwrap.dedent("""
    import importlib.util, os, sys, time
    spec = importlib.util.spec_from_file_location("runfolder", sys.argv[1])
    runfolder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runfolder)
    lock = runfolder.RunLock(sys.argv[2])
    print("READY", flush=True)
    while not os.path.exists(sys.argv[3]):
        time.sleep(0.0005)
    try:
        lock.acquire()
    except runfolder.RunFolderBusyError:
        print("REFUSED", flush=True)
    else:
        time.sleep(2.0)
        lock.release()
        print("HELD", flush=True)
""")


def test_eight_processes_on_a_stale_lock_exactly_one_takes_it(tmp_path):
    """The lock module alone (no Keras), so that eight processes start in seconds and meet within a millisecond."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    write_lock(tmp_path / "run", pid=ended.pid)
    module = ROOT / "vaekit" / "_lock.py"
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(module), str(tmp_path / "run"), str(tmp_path / "go")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    for racer in racers:
        wait_for_line(racer, "READY", timeout=60)
    (tmp_path / "go").touch()
    outcomes = []
    for racer in racers:
        out, err = racer.communicate(timeout=60)
        assert racer.returncode == 0, err[-2000:]
        outcomes.append(out.strip())
    assert sorted(outcomes) == ["HELD"] + ["REFUSED"] * 7
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == []
