"""What `import vaekit` gives: its submodules, and builders that are the functions of their modules."""

import ast
import inspect
import sys

import keras
import pytest

import vaekit
from tiny import ROOT

SUBMODULES = ["cvae", "data", "evaluate", "experiments", "explorer", "export", "guards", "models", "on_device",
              "plots", "runs", "training", "vae"]


def test_import_vaekit_alone_reaches_every_submodule(run_on_backend):
    # A fresh interpreter: in this one, the tests have imported the submodules already.
    code = (f"import vaekit\nfor name in {SUBMODULES!r}:\n    getattr(vaekit, name)\n"
            "assert callable(vaekit.data.load_mnist) and callable(vaekit.plots.plot_reconstructions)\nprint('ok')")
    completed = run_on_backend(None, code, cwd=ROOT, timeout=300)
    assert completed.stdout.strip() == "ok", completed.stderr[-2000:]


@pytest.mark.parametrize("name", ["conv_autoencoder", "conv_vae", "fc_autoencoder", "fc_vae", "fcn_autoencoder",
                                  "strided_conv_autoencoder", "deterministic_autoencoder", "conditional_conv_vae"])
def test_exported_builder_is_the_function_of_its_module_and_no_wrapper(name):
    builder = getattr(vaekit, name)
    module = vaekit.cvae if name == "conditional_conv_vae" else vaekit.models
    assert builder is getattr(module, name) and inspect.unwrap(builder) is builder
    assert inspect.getsource(builder).startswith(f"def {name}(")


def test_checks_run_before_any_layer_is_built(monkeypatch):
    inputs_made = []
    real_input = keras.Input
    monkeypatch.setattr(keras, "Input", lambda *args, **kwargs: inputs_made.append(1) or real_input(*args, **kwargs))
    with pytest.raises(ValueError, match="`latent_dim` must be a positive integer"):
        vaekit.conv_vae(latent_dim=0)
    assert inputs_made == []
    vaekit.conv_vae(latent_dim=1, hidden_units=2, input_shape=(4, 4, 1), filters=(2,))
    assert len(inputs_made) == 2  # the encoder's input and the decoder's


def test_unknown_builder_argument_names_the_builder_and_the_argument():
    with pytest.raises(TypeError, match=r"conv_vae\(\) got an unexpected keyword argument 'latent'"):
        vaekit.conv_vae(latent=2)


def test_checked_builder_passes_normalised_arguments():
    model = vaekit.fc_autoencoder(input_shape=[4, 4, 1], hidden_units=8, latent_dim=2)
    assert model.output_shape == (None, 4, 4, 1)


# What a copy of a builder needs: each file may import from vaekit only the files pasted above it.
PASTED_ABOVE = {"guards.py": set(), "vae.py": {"vaekit.guards"}, "models.py": {"vaekit.guards", "vaekit.vae"},
                "cvae.py": {"vaekit.guards", "vaekit.vae"}}


@pytest.mark.parametrize("file, allowed", sorted(PASTED_ABOVE.items()))
def test_files_to_copy_import_only_keras_numpy_the_standard_library_and_each_other(file, allowed):
    tree = ast.parse((ROOT / "vaekit" / file).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    third_party = {name for name in imported if name.split(".")[0] not in {*sys.stdlib_module_names, "__future__"}}
    assert third_party - {"keras", "numpy"} == allowed, file


def test_no_module_of_the_package_is_over_450_lines():
    lengths = {path.name: len(path.read_text().splitlines()) for path in (ROOT / "vaekit").glob("*.py")}
    assert max(lengths.values()) <= 450, {name: n for name, n in lengths.items() if n > 450}
