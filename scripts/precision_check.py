"""Train two reference configurations under a mixed-precision policy and compare with float32.

Keras trains in mixed precision with one line, `keras.mixed_precision.set_global_policy(...)`:
"mixed_bfloat16" on CPUs and GPUs with bfloat16 arithmetic, "mixed_float16" on GPUs. The
weights stay float32; the layers compute in 16 bits; vaekit's losses are float32. This script
measures what that does to the test numbers of two configurations whose float32 runs are
committed, each trained exactly as its float32 run was (same builder arguments, seed, epochs,
batch size, optimizer and validation data):

    03_conv_vae   notebook 03: conv_vae(latent_dim=2, seed=0), 20 epochs    (runs/03_conv_vae)
    05_VAE_d16    notebook 05: conv_vae(latent_dim=16, hidden_units=128, seed=42), 25 epochs
                  (runs/05_conv_vae_d16_beta1; six more float32 runs of the same configuration
                  with other seeds: runs/source_check_ablation-vae-d16_seed4*, runs/10_beta1_seed*)

Test numbers are `evaluate.elbo` on the 10,000 test images with the notebook's seed, in nats
per image. Each trained model is evaluated twice: as trained (its layers computing in 16 bits)
and with its weights copied into the same model built under float32, which separates the
effect on training from the effect on evaluation. The float32 rows are read from the committed
tables (figures/03_conv_vae_test_loss.csv, 05_ablation_results.csv, source_check_runs.csv,
10_beta_results.csv), so the comparison is with the numbers the repository reports.

Writes `figures/precision_check.csv` (and `.md`), one row per run, float32 and mixed, rewritten
after each run and keeping rows of runs not trained in this call. Each mixed run trains through
`training.fit_resumable` in `runs/precision_<run>_<policy>_seed<seed>/`, so a stopped run
resumes. Usage:

    python scripts/precision_check.py                            # both, mixed_bfloat16 (45 epochs)
    python scripts/precision_check.py --runs 05_VAE_d16 --seeds 42 43
    python scripts/precision_check.py --quick                    # 512 images, 1 epoch: a smoke test
    python scripts/precision_check.py --runs                     # train nothing: reread the float32 rows
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import pandas as pd

POLICIES = ("mixed_bfloat16", "mixed_float16", "float32")  # float32: more runs of the reference, for its spread
BATCH_SIZE = 128
LEARNING_RATE = 1e-3

# name -> the float32 run's settings: builder arguments, compile's jit_compile (notebook 05
# passes "auto", notebook 03 nothing), epochs, the seed for the weights and for evaluate.elbo.
RUNS = {
    "03_conv_vae": dict(build=dict(latent_dim=2), jit_compile=None, epochs=20, seed=0),
    "05_VAE_d16": dict(build=dict(latent_dim=16, hidden_units=128, beta=1.0), jit_compile="auto", epochs=25, seed=42),
}
COLUMNS = ["run", "precision", "seed", "epochs", "recon_nats", "kl_nats", "neg_elbo_nats", "recon_nats_f32_eval",
           "kl_nats_f32_eval", "neg_elbo_nats_f32_eval", "seconds_per_epoch", "source"]


def float32_rows(root: Path) -> pd.DataFrame:
    """The committed float32 test numbers of both configurations, one row per run."""
    figures = root / "figures"
    rows = []
    test = pd.read_csv(figures / "03_conv_vae_test_loss.csv", index_col=0)["vaekit (this run)"]
    rows.append(dict(run="03_conv_vae", seed=0, recon_nats=test["reconstruction_loss"], kl_nats=test["kl_loss"],
                     neg_elbo_nats=test["negative_elbo"], source="figures/03_conv_vae_test_loss.csv (runs/03_conv_vae)"))
    ablation = pd.read_csv(figures / "05_ablation_results.csv", index_col=0).loc["VAE d=16, β=1"]
    rows.append(dict(run="05_VAE_d16", seed=42, recon_nats=ablation["recon_nats"], kl_nats=ablation["kl_nats"],
                     neg_elbo_nats=ablation["neg_elbo_nats"],
                     source="figures/05_ablation_results.csv (runs/05_conv_vae_d16_beta1)"))
    source_check = pd.read_csv(figures / "source_check_runs.csv")
    for _, row in source_check[source_check["run"] == "ablation-vae-d16"].iterrows():
        rows.append(dict(run="05_VAE_d16", seed=int(row["seed"]), recon_nats=row["recon_nats"], kl_nats=row["kl_nats"],
                         neg_elbo_nats=row["neg_elbo_nats"], source=f"figures/source_check_runs.csv ({row['run_log']})"))
    beta = pd.read_csv(figures / "10_beta_results.csv")
    for _, row in beta[beta["beta"] == 1.0].iterrows():
        rows.append(dict(run="05_VAE_d16", seed=int(row["seed"]), recon_nats=row["recon_nats"], kl_nats=row["kl_nats"],
                         neg_elbo_nats=row["neg_elbo_nats"],
                         source=f"figures/10_beta_results.csv (runs/10_beta1_seed{int(row['seed'])})"))
    frame = pd.DataFrame(rows)
    frame["precision"] = "float32"
    frame["epochs"] = [RUNS[run]["epochs"] for run in frame["run"]]
    return frame


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and precision: runs, mean and range of the test numbers."""
    rows = []
    for (run, precision), group in table.groupby(["run", "precision"], sort=False):
        recon = group["recon_nats"]
        rows.append({"run": run, "precision": precision, "runs": len(group),
                     "recon_nats_mean": recon.mean(), "recon_nats_min": recon.min(), "recon_nats_max": recon.max(),
                     "recon_nats_range": recon.max() - recon.min(), "kl_nats_mean": group["kl_nats"].mean(),
                     "neg_elbo_nats_mean": group["neg_elbo_nats"].mean(),
                     "seconds_per_epoch": group["seconds_per_epoch"].mean()})
    return pd.DataFrame(rows)


class EpochTimer(keras.callbacks.Callback):
    """Wall-clock seconds of each epoch trained in this call (validation included)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def build(settings: dict, seed: int, input_shape) -> keras.Model:
    import vaekit

    return vaekit.conv_vae(**settings["build"], seed=seed, input_shape=input_shape)


def train_and_measure(name: str, policy: str, seed: int, x_train, x_test, epochs: int, run_dir: Path | None) -> dict:
    """Train one run under `policy`; its test numbers, as trained and evaluated in float32."""
    from vaekit import evaluate, training

    settings = RUNS[name]
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(seed)
        vae = build(settings, seed, x_train.shape[1:])
        compile_kwargs = {} if settings["jit_compile"] is None else {"jit_compile": settings["jit_compile"]}
        vae.compile(optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE), **compile_kwargs)
        # The float32 run's config.json, plus the policy: a folder never resumes under another one.
        config = {key: value for key, value in settings["build"].items() if key != "beta"}
        config.update(seed=seed, epochs=epochs, batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE,
                      train_images=len(x_train), precision=policy)
        timer = EpochTimer()
        training.fit_resumable(vae, x_train, run_dir=run_dir, config=config, epochs=epochs, batch_size=BATCH_SIZE,
                               validation_data=(x_test,), verbose=2, callbacks=[timer])
        with warnings.catch_warnings():  # BCE on grey-level pixels is not a likelihood: true of the float32 runs too
            warnings.simplefilter("ignore", UserWarning)
            test = evaluate.elbo(vae, x_test, seed=settings["seed"])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    float32_model = build(settings, seed, x_train.shape[1:])
    float32_model.set_weights(vae.get_weights())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        test32 = evaluate.elbo(float32_model, x_test, seed=settings["seed"])
    return {"recon_nats": test["reconstruction_loss"], "kl_nats": test["kl_loss"], "neg_elbo_nats": test["negative_elbo"],
            "recon_nats_f32_eval": test32["reconstruction_loss"], "kl_nats_f32_eval": test32["kl_loss"],
            "neg_elbo_nats_f32_eval": test32["negative_elbo"],
            "seconds_per_epoch": float(np.median(timer.seconds)) if timer.seconds else np.nan}


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="*", choices=list(RUNS), default=list(RUNS),
                        help="which runs (default: both); none (`--runs` alone) trains nothing and rewrites the "
                             "tables with the committed float32 rows reread")
    parser.add_argument("--policy", choices=POLICIES, default="mixed_bfloat16",
                        help="the mixed-precision policy (default mixed_bfloat16); float32 trains more float32 "
                             "runs with --seeds")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="train each run with these seeds (default: the float32 run's own seed)")
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="where the run folders go (default: runs/ in the checkout; none with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="512 training and 256 test images, 1 epoch, tables in a temporary folder "
                             "(as VAEKIT_QUICK=1)")
    args = parser.parse_args(argv)
    if args.quick:
        os.environ["VAEKIT_QUICK"] = "1"

    from vaekit import data, experiments

    quick = experiments.quick_mode()
    limit = 512 if quick else None
    runs_dir = args.runs_dir or (None if quick else experiments.project_root() / "runs")
    table_path = experiments.output_dir("figures") / "precision_check"
    experiments.describe_run(None)
    (x_train, _), (x_test, _) = data.load_mnist(limit=limit)
    x_test = x_test[:256] if quick else x_test

    planned = [(name, seed) for name in args.runs for seed in (args.seeds or [RUNS[name]["seed"]])]
    previous = pd.read_csv(table_path.with_suffix(".csv")) if table_path.with_suffix(".csv").exists() else None
    if previous is not None:  # keep this script's runs that this call does not retrain; the committed ones are reread
        previous = previous[previous["source"].str.startswith("this script")]
        previous = previous[[(run, precision, seed) not in {(n, args.policy, s) for n, s in planned}
                             for run, precision, seed in zip(previous["run"], previous["precision"], previous["seed"])]]
    reference = float32_rows(_checkout_root())
    rows = []

    def save_tables() -> pd.DataFrame:
        table = pd.concat([frame for frame in (reference, previous, pd.DataFrame(rows)) if frame is not None],
                          ignore_index=True)[COLUMNS]
        order = {name: index for index, name in enumerate(RUNS)}
        table = table.sort_values(["run", "precision", "seed"], key=lambda column: column.map(order)
                                  if column.name == "run" else column, kind="stable")
        experiments.save_table(table.set_index("run"), table_path)
        summary = experiments.save_table(summarise(table).set_index("run"), table_path.with_name("precision_check_summary"))
        print(summary.to_string(), flush=True)
        return table

    table = save_tables() if not planned else None
    for name, seed in planned:
        epochs = experiments.epochs(RUNS[name]["epochs"])
        run_dir = None if runs_dir is None else runs_dir / f"precision_{name}_{args.policy}_seed{seed}"
        print(f"--- {name}, {args.policy}, seed {seed}, {epochs} epochs", flush=True)
        measured = train_and_measure(name, args.policy, seed, x_train, x_test, epochs, run_dir)
        rows.append({"run": name, "precision": args.policy, "seed": seed, "epochs": epochs, **measured,
                     "source": "this script" + ("" if run_dir is None else f" ({runs_dir.name}/{run_dir.name})")})
        table = save_tables()
    print(f"wrote {table_path}.csv, {table_path.with_name('precision_check_summary')}.csv and their .md")
    return table.set_index("run")


def _checkout_root() -> Path:
    """This script's checkout, whose committed float32 tables a quick run reads."""
    return Path(__file__).resolve().parents[1]


if __name__ == "__main__":
    main()
