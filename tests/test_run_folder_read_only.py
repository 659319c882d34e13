"""A run folder never refuses its own process: a run whose folder turned read-only mid-run (a full
quota, a mount that went away) resumes in the same process once the folder is writable again.

The folder's failure is simulated where `chmod` would not stop the writer (as root, in CI
containers): the checkpoint's write and the removal of files in the run folder raise
PermissionError while the folder is "read-only". A real `chmod` runs the same story where it can.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

import tiny
import vaekit
from tiny import ROOT
from vaekit import _lock, training

EPOCHS = 3

# Tries to take the folder from another process (the lock module alone, no Keras: starts in a moment).
OTHER_PROCESS = textwrap.dedent("""
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("runlock", sys.argv[1])
    runlock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runlock)
    try:
        runlock.RunLock(sys.argv[2]).acquire()
    except runlock.RunFolderBusyError as error:
        print("REFUSED", error)
    else:
        print("TOOK IT")
""")


def tiny_run():
    keras.utils.set_random_seed(0)
    vae = vaekit.fc_vae(input_shape=(4, 4, 1), latent_dim=2, hidden_units=8, seed=1)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    return vae, np.random.default_rng(0).random((16, 4, 4, 1)).astype("float32")


class ReadOnlyFolder:
    """While `on`, writing the checkpoint into `folder` and deleting an existing file there raise
    PermissionError, as in a folder that turned read-only (root included, whom chmod does not stop)."""

    def __init__(self, folder: Path, monkeypatch):
        self.folder, self.on = folder, False
        real_savez, real_unlink = np.savez, Path.unlink

        def savez(file, *args, **kwargs):
            if self.on and Path(file).parent == self.folder:
                raise PermissionError(errno.EACCES, "Permission denied", str(file))
            return real_savez(file, *args, **kwargs)

        def unlink(path, missing_ok=False):
            if self.on and path.parent == self.folder and path.exists():
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_unlink(path, missing_ok=missing_ok)

        monkeypatch.setattr(np, "savez", savez)
        monkeypatch.setattr(Path, "unlink", unlink)

    def at_epoch_end(self, epoch: int) -> keras.callbacks.Callback:
        """A callback that turns the folder read-only at the end of `epoch` (0-based), before its save."""
        return keras.callbacks.LambdaCallback(on_epoch_end=lambda done, logs: setattr(self, "on", self.on or done == epoch))

    def after_training(self) -> keras.callbacks.Callback:
        """A callback that turns the folder read-only once `fit` has run every epoch (and saved it)."""
        return keras.callbacks.LambdaCallback(on_train_end=lambda logs: setattr(self, "on", True))


def other_process_tries(run_dir: Path) -> str:
    run = subprocess.run([sys.executable, "-c", OTHER_PROCESS, str(ROOT / "vaekit" / "_lock.py"), str(run_dir)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def test_a_run_whose_folder_turned_read_only_resumes_in_the_same_process_at_the_next_epoch(
        tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    folder = ReadOnlyFolder(run_dir, monkeypatch)
    vae, x = tiny_run()
    with pytest.raises(PermissionError, match=rf"cannot write {run_dir / 'checkpoint.npz'}"), \
            pytest.warns(RuntimeWarning, match=rf"could not remove the lock {run_dir / _lock.LOCK_NAME}"):
        training.fit_resumable(vae, x, run_dir=run_dir, epochs=EPOCHS, batch_size=8, verbose=0,
                               callbacks=[folder.at_epoch_end(1)])  # epoch 1 saved, epoch 2's save fails
    lock = json.loads((run_dir / _lock.LOCK_NAME).read_text())
    assert lock["pid"] == os.getpid()  # the lock could not be removed ...
    refused = other_process_tries(run_dir)  # ... and still keeps out another process while this one lives
    assert refused.startswith(f"REFUSED run folder {run_dir} is in use by process {os.getpid()}"), refused
    first_epoch = (run_dir / "history.csv").read_text()
    assert len(first_epoch.splitlines()) == 2  # the header and epoch 1

    folder.on = False  # writable again: the same process takes the folder back and loses no epoch
    capsys.readouterr()
    history = training.fit_resumable(vae, x, run_dir=run_dir, epochs=EPOCHS, batch_size=8, verbose=0)
    assert f"resuming at epoch 2 of {EPOCHS}" in capsys.readouterr().out
    assert len(history["loss"]) == EPOCHS
    assert (run_dir / "history.csv").read_text().startswith(first_epoch.strip())  # epoch 1 as it was saved
    assert not (run_dir / _lock.LOCK_NAME).exists()


def test_a_lock_that_could_not_be_removed_after_a_finished_run_does_not_refuse_this_process(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    folder = ReadOnlyFolder(run_dir, monkeypatch)
    vae, x = tiny_run()
    with pytest.warns(RuntimeWarning, match="This process no longer holds the folder"):
        history = training.fit_resumable(vae, x, run_dir=run_dir, epochs=2, batch_size=8, verbose=0,
                                         callbacks=[tiny.StopAfter(1), folder.after_training()])  # read-only then
    assert len(history["loss"]) == 1 and (run_dir / _lock.LOCK_NAME).exists()  # the run itself stopped as asked
    assert other_process_tries(run_dir).startswith("REFUSED")
    folder.on = False
    assert len(training.fit_resumable(vae, x, run_dir=run_dir, epochs=2, batch_size=8, verbose=0)["loss"]) == 2
    assert not (run_dir / _lock.LOCK_NAME).exists()


def test_a_hold_still_open_in_this_process_refuses_while_a_forgotten_one_does_not(tmp_path, monkeypatch):
    open_hold = _lock.RunLock(tmp_path)
    open_hold.acquire()
    with pytest.raises(training.RunFolderBusyError, match="That process is this one"):
        _lock.RunLock(tmp_path).acquire()
    folder = ReadOnlyFolder(tmp_path, monkeypatch)
    folder.on = True
    with pytest.warns(RuntimeWarning, match="could not remove the lock"):
        open_hold.release()
    assert json.loads((tmp_path / _lock.LOCK_NAME).read_text())["token"] == open_hold.token
    folder.on = False
    with _lock.RunLock(tmp_path) as again:  # taken over: the file was this process's, its hold forgotten
        assert json.loads((tmp_path / _lock.LOCK_NAME).read_text())["token"] == again.token
    assert not (tmp_path / _lock.LOCK_NAME).exists()


def chmod_stops_writes(folder: Path) -> bool:
    """Whether a folder made read-only with chmod refuses this process (not root, nor a process with CAP_DAC_OVERRIDE)."""
    probe = folder / "probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        (probe / "file").touch()
    except PermissionError:
        return True
    finally:
        probe.chmod(0o755)
    return False


def test_a_folder_made_read_only_by_chmod_mid_run_resumes_once_writable(tmp_path, capsys):
    if os.name == "nt" or not chmod_stops_writes(tmp_path):
        pytest.skip("chmod does not stop this process (root); the simulated read-only folder above covers it")
    run_dir = tmp_path / "run"
    vae, x = tiny_run()

    def read_only(epoch, logs):
        if epoch == 1:
            run_dir.chmod(0o555)

    try:
        with pytest.raises(PermissionError), pytest.warns(RuntimeWarning, match="could not remove the lock"):
            training.fit_resumable(vae, x, run_dir=run_dir, epochs=EPOCHS, batch_size=8, verbose=0,
                                   callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=read_only)])
    finally:
        run_dir.chmod(0o755)
    capsys.readouterr()
    history = training.fit_resumable(vae, x, run_dir=run_dir, epochs=EPOCHS, batch_size=8, verbose=0)
    assert f"resuming at epoch 2 of {EPOCHS}" in capsys.readouterr().out and len(history["loss"]) == EPOCHS
