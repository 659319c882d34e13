"""Which folder holds a run, and whether it is a finished run: run records, sibling folders, shipped runs.

A run folder keeps what its run trains in `run.json` (`run_record`: the model's own config
from `model_record`, with Keras' automatic layer names replaced by their order, the loss, the
optimizer, the batch size, the epochs, the data's SHA-256) and the run's config in
`config.json` (by default `run_settings`). A run with other settings trains in a sibling
folder of its own (`find_run_folder`), so `vaekit.training.fit_resumable` never resumes or
loads a folder with settings not its own.

A finished run folder in `runs/` keeps `run.json`, `history.csv` and `model.weights.h5`
(weights only, no optimizer state: `write_finished_run`); `fit_resumable` loads such a run
instead of training it (`load_finished_run`). `shipped_runs.json`, beside this module, lists
each shipped run's files with their SHA-256 and size (`scripts/ship_runs.py` writes it).
Outside a checkout (Colab, a copied notebook) a run named there is fetched from the repository's
`Runs` address (`[project.urls]` in pyproject.toml; `$VAEKIT_RUNS_URL` overrides it)
with `keras.utils.get_file`, which checks each file's SHA-256 before anything is loaded
and caches it where Keras caches downloads. A failed or mismatched download is said in
one line, and the run trains instead. A run file that cannot be read back raises
`DamagedRunFileError`, naming it and the way out.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import json
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from vaekit import _io

# The files of a finished run that a checkout keeps (docs/training.md): what it trains and its weights.
RUN_RECORD = "run.json"
WEIGHTS_FILE = "model.weights.h5"
MANIFEST = Path(__file__).with_name("shipped_runs.json")
URL_VARIABLE = "VAEKIT_RUNS_URL"
FILES = (RUN_RECORD, "history.csv", WEIGHTS_FILE)


class DamagedRunFileError(ValueError):
    """A run folder's file cannot be read back: cut short, emptied or altered."""


def damaged(path: Path, error: BaseException, way_out: str) -> DamagedRunFileError:
    """The error for a run file that failed to read with `error`; `way_out` says what the user can do."""
    return DamagedRunFileError(f"{path} is damaged and cannot be read ({type(error).__name__}: {error}); "
                               f"it was cut short, emptied or altered after it was written. {way_out}")


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
# Keys of a layer's config that do not change what the model computes or which weights fit it: seeds, and
# where Keras keeps a class (moved between Keras versions; the class name itself is compared).
_IGNORED_KEYS = frozenset({"seed", "module", "registered_name"})


def model_record(model) -> dict | None:
    """The model's config with automatic layer names replaced by "<layer k>", as JSON data; None if it has none."""
    try:
        config = json.loads(json.dumps(model.get_config(), default=repr))
    except Exception:  # a subclassed model without get_config: nothing to compare
        return None
    if isinstance(config, dict):
        config.pop("name", None)  # the model's own name: Keras numbers unnamed ones ("functional_3"); not its shape
    names: dict[str, str] = {}

    def collect(value):
        if isinstance(value, dict):
            inner = value.get("config")
            if "class_name" in value and isinstance(inner, dict) and isinstance(inner.get("name"), str):
                names.setdefault(inner["name"], f"<layer {len(names)}>")
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    def rename(value):
        if isinstance(value, dict):
            return {key: rename(item) for key, item in value.items() if key not in _IGNORED_KEYS}
        if isinstance(value, list):
            return [rename(item) for item in value]
        if not isinstance(value, str):
            return value
        return _ADDRESS.sub("", names.get(value, value))  # repr()s of objects differ by address only

    collect(config)
    for fixed in ("encoder", "decoder"):  # names vaekit gives itself: kept, they are part of the contract
        names.pop(fixed, None)
    return rename(config)


def model_differences(saved, given, where: str = "", limit: int = 6) -> list[str]:
    """Where two `model_record`s differ, as "path: saved X, given Y" lines (keys only one has are skipped:
    a newer Keras may add options with their defaults)."""
    return [f"{path or 'model'}: {saved_value}" if given_value is _COUNT else
            f"{path or 'model'}: saved {saved_value!r}, given {given_value!r}"
            for path, saved_value, given_value in _differences(saved, given, where)][:limit]


_COUNT = object()  # marks a difference in the number of entries of a list


def _differences(saved, given, where: str = "") -> list[tuple[str, object, object]]:
    """Where two JSON records differ, as (path, saved, given) triples; keys only one of them has are skipped."""
    if isinstance(saved, (dict, list)) != isinstance(given, (dict, list)) or (
            isinstance(saved, dict) != isinstance(given, dict)):
        return []  # one value written in two formats (a Keras upgrade changed how it saves it): not comparable
    if isinstance(saved, dict) and isinstance(given, dict):
        found = []
        for key in [key for key in saved if key in given]:  # in the saved order, so messages read the same each time
            found += _differences(saved[key], given[key], f"{where}.{key}" if where else str(key))
        return found
    if isinstance(saved, list) and isinstance(given, list):
        if len(saved) != len(given):
            return [(where, f"{len(saved)} entries saved, {len(given)} given", _COUNT)]
        return [found for index, (a, b) in enumerate(zip(saved, given))
                for found in _differences(a, b, f"{where}[{index}]")]
    if saved != given and not (_is_number(saved) and _is_number(given) and float(saved) == float(given)):
        return [(where, saved, given)]
    return []


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def run_record(model: keras.Model, x, y, epochs: int, fit_kwargs: Mapping) -> dict:
    """What a run trains, as JSON data: the model's record, its loss and optimizer, the batch size, the epochs, the data.

    Two runs with equal records train the same thing; `fit_resumable` keeps each record in its
    folder's `run.json` and gives a run whose record differs a folder of its own. The data are
    recorded by a SHA-256 of their bytes (arrays) or not at all (a `tf.data.Dataset`, a
    generator: say what they hold in `config`).
    """
    optimizer = getattr(model, "optimizer", None)
    optimizer_config = None
    if optimizer is not None:
        optimizer_config = {key: value for key, value in optimizer.get_config().items() if key != "name"}
        optimizer_config = {"class": type(optimizer).__name__, **optimizer_config}
    loss = getattr(model, "loss", None)
    if isinstance(loss, keras.losses.Loss):
        loss = keras.losses.serialize(loss)
    record = {"model": model_record(model), "loss": loss, "optimizer": optimizer_config,
              "batch_size": fit_kwargs.get("batch_size"), "epochs": epochs,
              "data": {name: data_fingerprint(value) for name, value in (("x", x), ("y", y)) if value is not None}}
    return json.loads(_ADDRESS.sub("", json.dumps(_rounded(record), default=repr)))


def _rounded(value):
    """Floats as float32 stores them, written short: 1e-3 is 0.001, not 0.0010000000474974513."""
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return float(str(np.float32(value))) if isinstance(value, float) else value


def data_fingerprint(data) -> str | None:
    """"sha256:<hex>" of an array's shape, dtype and bytes; None for data that is not an array."""
    if not hasattr(data, "shape") or not hasattr(data, "dtype") or hasattr(data, "element_spec"):
        return None
    array = np.ascontiguousarray(keras.ops.convert_to_numpy(data))
    digest = hashlib.sha256(f"{array.shape} {array.dtype}".encode())
    digest.update(memoryview(array).cast("B"))
    return f"sha256:{digest.hexdigest()}"


def find_run_folder(run_dir: Path, config: Mapping, trains: dict) -> Path:
    """The folder a run with this `config` and `run_record` trains in: `run_dir`, or a sibling of its own.

    `run_dir` itself when it is new, empty, or holds this very run; otherwise the sibling
    `<run_dir>-<what differs>-<hash>` that holds it or will. So a changed setting (another
    size, loss, learning rate, number of epochs, data) trains a run of its own, and the
    unchanged one finds and loads its run.
    """
    differences = _folder_differences(run_dir, config, trains)
    if differences is None:
        return run_dir
    for sibling in sorted(run_dir.parent.glob(f"{glob.escape(run_dir.name)}-*")):
        if sibling.is_dir() and _folder_differences(sibling, config, trains) is None:
            return sibling
    digest = hashlib.sha256(json.dumps([config, trains], sort_keys=True).encode()).hexdigest()[:8]
    differences = [difference for difference in differences if difference[2] is not _COUNT] or differences
    labels = [_label(path, given) for path, _, given in differences]
    label = "-".join(list(dict.fromkeys(labels))[:2])  # a setting both in `config` and the record, named once
    sibling = run_dir.with_name(f"{run_dir.name}-{label}-{digest}" if label else f"{run_dir.name}-{digest}")
    shown = "; ".join("other data" if label == "data" else f"{path}: {_short(saved)} there, {_short(given)} here"
                      for label, (path, saved, given) in dict(zip(labels, differences)).items()) or "another model"
    print(f"{_io.shown(run_dir)} holds a run with other settings ({shown}): this run's folder is {_io.shown(sibling)}")
    return sibling


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _label(path: str, given) -> str:
    """A short name for one changed setting, for a folder name: "units16", "loss-mse", "data"."""
    leaf = path.split(".")[-1].split("[")[0]
    if leaf in ("x", "y") or path.startswith("data"):
        return "data"
    text = f"{leaf}{given}" if _is_number(given) else f"{leaf}-{given}" if isinstance(given, str) and len(given) <= 24 else leaf
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:32]


def _folder_differences(folder: Path, config: Mapping, trains: dict) -> list | None:
    """How the run in `folder` differs from the one given ((path, there, here) triples); None if it is this run or none."""
    config = json.loads(json.dumps(dict(config)))
    saved_config = _read_json(folder / "config.json", f"It should hold this run's `config`; delete it and run again "
                              f"to write it anew from the config given ({config}), if that is the run's.")
    saved = _read_json(folder / RUN_RECORD, "Delete it and run again to write it anew, if the folder holds this run.")
    differences = []
    if saved_config is not None and saved_config != config:
        differences += _differences(saved_config, config, "config") or [("config", saved_config, config)]
    if saved is not None:
        differences += _differences({key: saved[key] for key in trains if key in saved}, trains)
    return differences or None


def _read_json(path: Path, way_out: str):
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise damaged(path, error, way_out) from error


def run_settings(model: keras.Model, x, fit_kwargs: Mapping) -> dict:
    """A run's training settings, read from the model and `fit`'s arguments: `fit_resumable`'s default config.

    The optimizer's class and learning rate (a schedule as its config), the batch size and,
    for an array, the number of training examples. The model's own config (sizes, β, the
    sampling seed) is not repeated: the checkpoint records it and refuses another model.
    """
    optimizer = getattr(model, "optimizer", None)
    learning_rate = None if optimizer is None else optimizer.get_config().get("learning_rate")
    if isinstance(learning_rate, float):  # a schedule's config is kept as Keras writes it
        learning_rate = _rounded(learning_rate)
    settings = {"optimizer": None if optimizer is None else type(optimizer).__name__,
                "learning_rate": learning_rate,
                "batch_size": fit_kwargs.get("batch_size")}
    if hasattr(x, "shape"):
        settings["train_examples"] = int(x.shape[0])
    return json.loads(json.dumps(settings, default=repr))


def seed_states(model: keras.Model) -> list:
    """The state of each `keras.random.SeedGenerator` in `model`: the variables that are not weights."""
    weights = {id(variable) for variable in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


def write_finished_run(model: keras.Model, run_dir: Path) -> None:
    """Save a finished run's weights (no optimizer state) and where its random streams stand, for a checkout to keep."""
    optimizer = model.optimizer
    model.optimizer = None  # weights only: the optimizer's state is the checkpoint's business
    try:
        with _io.replacing(run_dir / WEIGHTS_FILE) as temporary:
            model.save_weights(temporary.with_suffix(".weights.h5"))  # Keras chooses the format by this ending
            os.replace(temporary.with_suffix(".weights.h5"), temporary)
    finally:
        model.optimizer = optimizer
    record = json.loads((run_dir / RUN_RECORD).read_text())
    record["seed_states"] = [keras.ops.convert_to_numpy(v).tolist() for v in seed_states(model)]
    _io.write_text(run_dir / RUN_RECORD, json.dumps(record, indent=1) + "\n")


def load_finished_run(model: keras.Model, run_dir: Path, trains: dict) -> Path | None:
    """Load a finished run kept without its checkpoint (a checkout's weights, or fetched); its history, or None."""
    files = finished_run_files(run_dir, trains)
    if files is None:
        return None
    weights, record, history = files
    with warnings.catch_warnings():  # the file has no optimizer state, by design
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(weights)
    variables = seed_states(model)
    for variable, value in zip(variables, record.get("seed_states") or []):
        variable.assign(np.asarray(value, dtype=keras.backend.standardize_dtype(variable.dtype)))
    return history


def manifest() -> dict:
    """The shipped runs by name: {"epochs", "batch_size", "data", "files": {file: {"sha256", "bytes"}}}."""
    return json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}


def runs_url() -> str | None:
    """Where the shipped runs are fetched from: `$VAEKIT_RUNS_URL`, else pyproject.toml's `Runs` address."""
    if os.environ.get(URL_VARIABLE):
        return os.environ[URL_VARIABLE].rstrip("/")
    try:
        addresses = importlib.metadata.metadata("vaekit").get_all("Project-URL") or []
    except importlib.metadata.PackageNotFoundError:  # a copied vaekit folder, not installed
        return None
    return next((url.strip().rstrip("/") for label, _, url in (a.partition(",") for a in addresses)
                 if label.strip() == "Runs"), None)


def finished_run_files(run_dir: Path, trains: dict) -> tuple[Path, dict, Path] | None:
    """The weights file, run record and history of the finished run `trains` for `run_dir`; None if there is none.

    First the folder itself (a checkout's shipped run); then, for a run that `shipped_runs.json`
    lists under the folder's name with the same epochs, batch size and data, the files fetched
    from `runs_url()` and checked against their SHA-256.
    """
    weights, history = run_dir / WEIGHTS_FILE, run_dir / "history.csv"
    if weights.exists() and history.exists():
        return weights, json.loads((run_dir / RUN_RECORD).read_text()), history
    entry = manifest().get(run_dir.name)
    url = runs_url()
    if entry is None or url is None or any(entry.get(key) != trains[key] for key in ("epochs", "batch_size", "data")):
        return None
    fetched = {}
    for name in FILES:
        try:
            fetched[name] = Path(keras.utils.get_file(
                fname=name, origin=f"{url}/{run_dir.name}/{name}", file_hash=entry["files"][name]["sha256"],
                hash_algorithm="sha256", cache_subdir=f"vaekit/runs/{run_dir.name}",
                cache_dir=os.environ.get("KERAS_HOME")))
        except Exception as error:  # offline, a server down, a cut or altered file: say so, and train
            print(f"{run_dir.name}: not fetched, training it instead: {url}/{run_dir.name}/{name}: "
                  f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
            return None
    record = json.loads(fetched[RUN_RECORD].read_text())
    if _differences({key: record[key] for key in trains if key in record}, trains):
        print(f"{run_dir.name}: the shipped run trains other settings than this one; training it instead")
        return None
    if len(pd.read_csv(fetched["history.csv"])) != trains["epochs"]:
        return None
    return fetched[WEIGHTS_FILE], record, fetched["history.csv"]
