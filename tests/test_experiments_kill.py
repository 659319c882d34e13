"""`fit_resumable` under real kills: SIGKILL a training process mid-epoch and mid-save, resume.

Each run is a subprocess on the JAX backend (it starts fastest), training a small VAE
on random images with a short sleep after every batch, so that a kill lands inside an
epoch. For a kill mid-save the test watches the run folder and kills the moment the
temporary checkpoint file appears. After the kills one more run finishes the job; then
every epoch must be in the history exactly once, in order, and the weights must be
finite and load in this process (another backend) as they were saved.
"""

from __future__ import annotations

import json
import math
import signal
import textwrap
import time

import keras
import numpy as np
import pandas as pd
import pytest

from vaekit import _io, models, training

EPOCHS = 6
CONFIG = {"purpose": "kill test", "hidden_units": 512}

SCRIPT = textwrap.dedent("""
    import json, sys, time
    import keras, numpy as np
    from vaekit import models, training

    keras.utils.set_random_seed(0)
    # 512 hidden units: a checkpoint of about 10 MB, so that saving takes long enough to be caught.
    vae = models.fc_vae(input_shape=(28, 28, 1), latent_dim=2, hidden_units=512, seed=1)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = np.random.default_rng(0).random((96, 28, 28, 1)).astype("float32")
    slow = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: time.sleep(0.015))
    history = training.fit_resumable(vae, x, run_dir=sys.argv[1], epochs=int(sys.argv[2]),
                                     config=json.loads(sys.argv[3]), batch_size=8, verbose=0,
                                     callbacks=[slow])
    print("RESULTS" + json.dumps({"history": history,
                                  "weight_sums": [float(np.sum(np.asarray(w, "float64"))) for w in vae.get_weights()]}))
""")


@pytest.fixture(scope="module")
def start(run_on_backend):
    """start(run_dir): the training SCRIPT, started on JAX; the Popen, its output piped."""
    return lambda run_dir: run_on_backend.popen("jax", SCRIPT, run_dir, EPOCHS, json.dumps(CONFIG),
                                                env={"XLA_FLAGS": "--xla_force_host_platform_device_count=1"})


def epochs_saved(run_dir) -> int:
    try:
        return len(pd.read_csv(run_dir / "history.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


def temporary_files(run_dir) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir() if _io.TEMPORARY_MARK in p.name) if run_dir.exists() else []


def wait_until(process, condition, timeout=240.0) -> bool:
    """Poll `condition` about every millisecond; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.001)
    raise TimeoutError("the training process made no progress")


def kill(process) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory, start):
    run_dir = tmp_path_factory.mktemp("kill") / "run"
    kills = []
    # Kill inside an epoch, in the middle of writing the checkpoint (once more if the
    # rename won the race), and just after a save.
    for moment in ["mid-epoch", "mid-save", "mid-save", "just after a save"]:
        if moment == "mid-save" and any(kill["left_behind"] for kill in kills):
            continue
        saved_before = epochs_saved(run_dir)
        process = start(run_dir)
        if moment == "mid-save":
            reached = wait_until(process, lambda: any(n.startswith(".checkpoint") for n in temporary_files(run_dir)))
        else:
            reached = wait_until(process, lambda: epochs_saved(run_dir) > saved_before)
            if reached and moment == "mid-epoch":
                time.sleep(0.08)  # about half an epoch
        assert reached, f"the run finished before the {moment} kill:\n{process.stderr.read()[-2000:]}"
        kill(process)
        kills.append({"moment": moment, "epochs_saved": epochs_saved(run_dir),
                      "left_behind": temporary_files(run_dir)})
    process = start(run_dir)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    return run_dir, kills, json.loads(stdout.split("RESULTS", 1)[1])


def test_kills_landed_mid_save_and_mid_epoch(killed_and_resumed):
    _, kills, _ = killed_and_resumed
    # A kill mid-save leaves the temporary checkpoint behind (the proof it landed there).
    assert any(kill["left_behind"] for kill in kills if kill["moment"] == "mid-save"), kills
    assert all(0 < kill["epochs_saved"] < EPOCHS for kill in kills), kills
    assert {kill["moment"] for kill in kills} == {"mid-epoch", "mid-save", "just after a save"}


def test_every_epoch_is_in_the_history_exactly_once_in_order(killed_and_resumed):
    run_dir, _, results = killed_and_resumed
    log = pd.read_csv(run_dir / "history.csv")
    assert log["epoch"].tolist() == list(range(EPOCHS))
    assert set(results["history"]) == {"loss", "reconstruction_loss", "kl_loss"}
    for name, values in results["history"].items():
        assert len(values) == EPOCHS and all(math.isfinite(v) for v in values), name
        np.testing.assert_allclose(log[name], values, rtol=1e-6)
    assert temporary_files(run_dir) == []  # the leftovers of the kills were cleared


def test_finished_run_loads_in_another_process_with_finite_weights(killed_and_resumed):
    run_dir, _, results = killed_and_resumed
    keras.utils.set_random_seed(5)  # other initial weights than the killed runs'
    vae = models.fc_vae(input_shape=(28, 28, 1), latent_dim=2, hidden_units=512, seed=1)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = np.random.default_rng(0).random((96, 28, 28, 1)).astype("float32")  # the same run: data, batch size
    history = training.fit_resumable(vae, x, run_dir=run_dir, epochs=EPOCHS, config=CONFIG, batch_size=8, verbose=0)
    assert history == results["history"] and int(vae.optimizer.iterations) == EPOCHS * 96 // 8  # loaded
    assert [path.name for path in run_dir.parent.iterdir()] == [run_dir.name]
    weights = vae.get_weights()
    assert all(np.all(np.isfinite(w)) for w in weights)
    np.testing.assert_allclose([float(np.sum(w.astype("float64"))) for w in weights], results["weight_sums"],
                               rtol=1e-9)
