"""Copying a builder into coursework: its source below guards.py and vae.py builds, checks and trains without vaekit.

For every builder, the test writes the file a student would write (`vaekit/guards.py` and `vaekit/vae.py`, then
the builder's `inspect.getsource`, then a few lines that build it small and train two
steps) and runs it in a fresh Python where `import vaekit` fails.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import vaekit.models
from tiny import ROOT, TINY_BUILDERS, tiny_images, tiny_model



def pasted(*files: str) -> str:
    """vaekit's `files` as a student pastes them, below each other, without their `from vaekit` imports."""
    return "\n\n".join(re.sub(r"^from vaekit[^(\n]*(\([^)]*\))?[^\n]*\n", "", (ROOT / "vaekit" / file).read_text(),
                               flags=re.MULTILINE) for file in files)


VAE_SOURCE = pasted("guards.py", "vae.py")

# What the student's file does after the pasted code: build small, train two steps,
# print the losses. VAEs train on x alone; autoencoders on (x, x).
TRAIN_VAE = """
model = {call}
model.compile(optimizer="adam")
history = model.fit(x, epochs=1, batch_size=2, verbose=0)
"""
TRAIN_AUTOENCODER = """
model = {call}
model.compile(optimizer="adam", loss="mse")
history = model.fit(x, x, epochs=1, batch_size=2, verbose=0)
"""
DATA = "import numpy as np\nx = np.random.default_rng(0).random((4, *{shape})).astype('float32')\n"
RESULT = "import json\nprint('LOSSES' + json.dumps(history.history['loss']))\n"


def builder_call(name: str) -> str:
    arguments = ", ".join(f"{key}={value!r}" for key, value in TINY_BUILDERS[name].items())
    return f"{name}({arguments})"


def pasted_file(name: str) -> str:
    """The file a student writes for builder `name`."""
    source = inspect.getsource(getattr(vaekit.models, name))
    if name == "deterministic_autoencoder":  # it takes a VAE: paste one VAE builder with it
        code = [VAE_SOURCE, inspect.getsource(vaekit.models.fc_vae), source]
        shape, call = TINY_BUILDERS["fc_vae"]["input_shape"], f"deterministic_autoencoder({builder_call('fc_vae')})"
        train = TRAIN_AUTOENCODER
    elif name.endswith("_vae"):
        code, shape, call, train = [VAE_SOURCE, source], TINY_BUILDERS[name]["input_shape"], builder_call(name), TRAIN_VAE
    else:
        code = [VAE_SOURCE, source]
        shape, call, train = TINY_BUILDERS[name]["input_shape"], builder_call(name), TRAIN_AUTOENCODER
    return "\n\n".join(code) + "\n\n" + DATA.format(shape=shape) + train.format(call=call) + RESULT


def public_builders() -> list[str]:
    return sorted(name for name, value in vars(vaekit.models).items()
                  if inspect.isfunction(value) and not name.startswith("_") and value.__module__ == "vaekit.models")


# Each file runs in a fresh namespace of one fresh interpreter (one TensorFlow start-up
# for all of them); `sys.modules["vaekit"] = None` makes any `import vaekit` fail.
RUNNER = textwrap.dedent("""
    import contextlib, io, json, runpy, sys, traceback
    sys.modules["vaekit"] = None
    results = {}
    for path in sys.argv[1:]:
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                runpy.run_path(path, run_name="__main__")
            results[path] = {"ok": True, "stdout": out.getvalue()}
        except BaseException:
            results[path] = {"ok": False, "stdout": out.getvalue(), "error": traceback.format_exc()}
    print("RESULTS" + json.dumps(results))
""")


@pytest.fixture(scope="module")
def pasted_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("coursework")
    paths = {}
    for name in public_builders():
        paths[name] = folder / f"{name}_copy.py"
        paths[name].write_text(pasted_file(name))
    completed = subprocess.run([sys.executable, "-c", RUNNER, *map(str, paths.values())], cwd=folder,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(completed.stdout.split("RESULTS", 1)[1])
    return {name: results[str(path)] for name, path in paths.items()}


def test_every_builder_has_a_copy_recipe():
    # A new builder must get TINY_BUILDERS settings, and with them this test.
    assert set(public_builders()) - {"deterministic_autoencoder"} == set(TINY_BUILDERS)


@pytest.mark.parametrize("name", public_builders())
def test_pasted_builder_trains_without_vaekit(name, pasted_runs):
    run = pasted_runs[name]
    assert run["ok"], run.get("error")
    losses = json.loads(run["stdout"].split("LOSSES", 1)[1])
    assert len(losses) == 1 and math.isfinite(losses[0])


def test_pasted_file_really_cannot_import_vaekit(tmp_path):
    script = tmp_path / "uses_vaekit.py"
    script.write_text("import vaekit\n")
    completed = subprocess.run([sys.executable, "-c", RUNNER, str(script)], cwd=tmp_path,
                               capture_output=True, text=True, timeout=120)
    result = json.loads(completed.stdout.split("RESULTS", 1)[1])[str(script)]
    assert not result["ok"] and "import of vaekit halted" in result["error"]


def test_builder_code_below_its_docstring_never_mentions_vaekit():
    for name in public_builders():
        source = inspect.getsource(getattr(vaekit.models, name))
        assert "checks." not in source and "vaekit" not in source.split('"""')[-1], name


def run_pasted(tmp_path, name: str, lines: str) -> dict:
    """Run guards.py, vae.py, builder `name` and `lines` as one file without vaekit; the RUNNER's result."""
    script = tmp_path / f"{name}_mistake.py"
    script.write_text("\n\n".join([VAE_SOURCE, inspect.getsource(getattr(vaekit.models, name)), lines]))
    completed = subprocess.run([sys.executable, "-c", RUNNER, str(script)], cwd=tmp_path,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.split("RESULTS", 1)[1])[str(script)]


@pytest.mark.parametrize("name, lines, message", [
    ("conv_vae", "conv_vae(input_shape=(30, 30, 1))",
     "ValueError: `input_shape` height and width must be divisible by 4"),
    ("conv_vae", "conv_vae(latent_dim=-3)", "ValueError: `latent_dim` must be a positive integer (>= 1), got -3."),
    ("strided_conv_autoencoder", "strided_conv_autoencoder(input_shape=(63, 63, 3))",
     "ValueError: `input_shape` height and width must be divisible by 8"),
    ("fc_autoencoder", "import numpy as np\nfc_autoencoder().fit(np.full((2, 28, 28, 1), 255.0), np.zeros((2, 28, 28, 1)))",
     "Divide 0-255 pixel values by 255"),
])
def test_pasted_builder_names_a_wrong_argument_or_bad_data_as_vaekit_does(tmp_path, name, lines, message):
    result = run_pasted(tmp_path, name, lines)
    assert not result["ok"] and message in result["error"], result.get("error")


def test_copied_vae_refuses_a_decoder_whose_images_differ_from_the_encoders(tmp_path):
    # A hand-written decoder of 3x3 images for 4x4 inputs: the pasted VAE must refuse the pair, naming both shapes.
    result = run_pasted(tmp_path, "fc_vae", textwrap.dedent("""
        encoder = fc_vae(latent_dim=2, hidden_units=8, input_shape=(4, 4, 1)).encoder
        z = keras.Input(shape=(2,))
        decoder = keras.Model(z, keras.layers.Reshape((3, 3, 1))(keras.layers.Dense(9, activation="sigmoid")(z)))
        VAE(encoder, decoder)
    """))
    assert not result["ok"]
    assert ("ValueError: `decoder` outputs images of shape (3, 3, 1) but the encoder takes (4, 4, 1)"
            in result["error"]), result["error"]


# A model saved by vaekit, reloaded in a file of guards.py and vae.py (and cvae.py) pasted without vaekit:
# the output compared, with no sampled z in it.
SAVED_OUTPUTS = {
    "fc_vae": "model.decode(model(x)['z_mean'])",
    "fc_autoencoder": "model.predict(x, verbose=0)",
    "conditional_conv_vae": "model.decode(model((x, labels))['z_mean'], labels)",
}
RELOAD = """
import json
model = keras.saving.load_model({model!r})
x, labels = np.load({x!r}), np.array([0, 1, 2])
print("RELOADED" + json.dumps({{"class": type(model).__module__ + "." + type(model).__name__,
                               "output": keras.ops.convert_to_numpy({output}).tolist()}}))
"""


def test_models_saved_by_vaekit_load_and_predict_the_same_in_a_pasted_file(tmp_path):
    from test_cvae import CVAE_SOURCE, TINY as CVAE_TINY  # here, not at the top: test_cvae imports this module

    labels, expected, scripts = np.array([0, 1, 2]), {}, {}
    for name, output in SAVED_OUTPUTS.items():
        model = vaekit.conditional_conv_vae(**CVAE_TINY) if name == "conditional_conv_vae" else tiny_model(name)
        x = tiny_images(model.data_shape(), n=3)
        model.save(tmp_path / f"{name}.keras")
        np.save(tmp_path / f"{name}.npy", x)
        expected[name] = (type(model).__name__,
                          keras.ops.convert_to_numpy(eval(output, {"model": model, "x": x, "labels": labels})))
        sources = [VAE_SOURCE, CVAE_SOURCE] if name == "conditional_conv_vae" else [VAE_SOURCE]
        scripts[name] = tmp_path / f"{name}_reload.py"
        scripts[name].write_text("\n\n".join([*sources, RELOAD.format(
            model=str(tmp_path / f"{name}.keras"), x=str(tmp_path / f"{name}.npy"), output=output)]))
    completed = subprocess.run([sys.executable, "-c", RUNNER, *map(str, scripts.values())], cwd=tmp_path,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(completed.stdout.split("RESULTS", 1)[1])
    for name, script in scripts.items():
        run = results[str(script)]
        assert run["ok"], run.get("error")
        reloaded = json.loads(run["stdout"].split("RELOADED", 1)[1])
        assert reloaded["class"] == "__main__." + expected[name][0]  # the pasted class, not vaekit's
        np.testing.assert_allclose(reloaded["output"], expected[name][1], rtol=0, atol=1e-6, err_msg=name)
