"""Test-set numbers for VAEs, in nats per image.

`elbo` gives the negative ELBO (one posterior sample, as in training); `iwae_nll`
gives the tighter importance-weighted estimate of -log p(x) that papers report;
`active_units` counts the latent dimensions the encoder uses. For any autoencoder,
`reconstruction_metrics` scores reconstructions on comparable scales, `roc_curve`
and `roc_auc` measure how well a score (e.g. reconstruction error) ranks anomalies,
and `bootstrap_roc_auc` how much that AUC depends on the draw of test images.

Both likelihood numbers are nats of a density for reconstruction="continuous_bernoulli"
and "gaussian" (any pixels in [0, 1]) and for "bce" on binary pixels. For "bce" on
grey-level pixels and for "mse" they are not log-likelihoods; both functions still
compute them (they are what training minimised) and warn once per call.
"""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np
from keras import ops

from vaekit._checks import check_switch
from vaekit.cvae import ConditionalVAE, image_label_pair
from vaekit.guards import PIXEL_RANGE, check_images, check_labels, check_non_negative, check_positive_int, check_seed
from vaekit.vae import LOG_VAR_MAX, LOG_VAR_MIN, VAE, Sampling, kl_divergence, log_normal_diag


def warn_if_not_a_likelihood(kind: str, x: np.ndarray, stacklevel: int = 3) -> bool:
    """Warn (once) when the reconstruction loss of `kind` on `x` is not -log of a density.

    "bce" is a Bernoulli log-likelihood only on binary pixels: on grey levels it is
    not normalised (Loaiza-Ganem & Cunningham 2019), which is what the continuous
    Bernoulli fixes. "mse" omits the Gaussian's normalising constant. Returns True if
    it warned.
    """
    if kind == "mse":
        message = ("reconstruction='mse' is not a log-likelihood: the summed squared error is "
                   "-log N(x; x_hat, I/2) less its normalising constant, so these are not nats of a density. "
                   "Use reconstruction='gaussian' (learned variance) for a likelihood.")
    elif kind == "bce" and not np.all((x == 0) | (x == 1)):
        message = ("`x` is not binary, so the Bernoulli log-likelihood (reconstruction='bce') is not normalised "
                   "and the result is not a true -log p(x). Binarise the images first (vaekit.data.binarize), "
                   "or use reconstruction='continuous_bernoulli' for grey-level pixels.")
    else:
        return False
    warnings.warn(message, UserWarning, stacklevel=stacklevel)
    return True


def _vae_images(vae, x) -> np.ndarray:
    """`x` checked for `vae` as `VAE.fit` checks it: the encoder's image shape, the loss's pixel range."""
    if not isinstance(vae, VAE):
        raise TypeError(f"`vae` must be a vaekit.VAE (from conv_vae, fc_vae or VAE(encoder, decoder)), "
                        f"got {type(vae).__name__}.")
    if isinstance(vae, ConditionalVAE):
        raise TypeError("`vae` is a ConditionalVAE: only `elbo` and `elbo_terms` evaluate one, "
                        "given `x=(images, labels)`.")
    return check_images("x", x, value_range=PIXEL_RANGE, shape=vae.data_shape())


def _conditional_inputs(vae: ConditionalVAE, x) -> tuple[np.ndarray, np.ndarray]:
    """`x` = (images, labels) or {"images": ..., "labels": ...} checked for the conditional `vae`."""
    names, (images, labels) = image_label_pair(
        "x", x, fix="its ELBO is that of log p(x | y), so it needs each image's label, "
                    "e.g. `evaluate.elbo(model, (x_test, y_test))`.")
    images = check_images(names[0], images, value_range=PIXEL_RANGE, shape=vae.data_shape())
    return images, check_labels(names[1], labels, vae.num_classes, length=len(images))


def elbo_terms(vae: VAE, x, batch_size: int = 500, seed: int | None = None) -> dict[str, np.ndarray]:
    """Per-image reconstruction loss, KL and their sum, the negative ELBO (beta = 1 whatever the VAE's beta).

    Keys: "reconstruction_loss", "kl_loss" and "negative_elbo" (not "loss": that is what `fit` logs,
    reconstruction + beta * KL).

    For a `ConditionalVAE`, `x` is `(images, labels)` (or `{"images": ..., "labels": ...}`)
    and the terms are those of the conditional bound on log p(x|y): -log p(x|z, y) with
    z ~ q(z|x, y), and KL(q(z|x, y) || N(0, I)).

    One posterior sample per image, as in training. Returns arrays of length n. The
    reconstruction term is -log p(x|z) in nats of a density except for "bce" on grey-level
    `x` and for "mse" (see the module's notes and `warn_if_not_a_likelihood`).

    With `seed=None` the sample comes from the VAE's own sampling layer, whose random
    state moves on with every call (and with training), so two calls differ slightly.
    An integer `seed` draws the samples from a fresh generator seeded with it: the same
    weights, data and seed then give the same numbers on every call.
    """
    return _elbo_terms(vae, x, batch_size, seed)


def _elbo_terms(vae, x, batch_size, seed):
    batch_size, seed = check_positive_int("batch_size", batch_size), check_seed("seed", seed)
    if isinstance(vae, ConditionalVAE):
        x, labels = _conditional_inputs(vae, x)
    else:
        x, labels = _vae_images(vae, x), None
    warn_if_not_a_likelihood(vae.reconstruction, x, stacklevel=4)  # the caller of elbo / elbo_terms
    sampling = None if seed is None else Sampling(seed)
    reconstruction, kl = [], []
    for start in range(0, len(x), batch_size):
        batch = ops.convert_to_tensor(x[start:start + batch_size])
        # A ConditionalVAE's two networks both take the one-hot label: q(z|x, y) and p(x|z, y).
        condition = [] if labels is None else [vae.one_hot(labels[start:start + batch_size])]
        z_mean, z_log_var, z = vae.encoder([batch, *condition] if condition else batch, training=False)
        if sampling is not None:
            z = sampling([z_mean, z_log_var])
        decoded = vae.decoder([z, *condition] if condition else z, training=False)
        reconstruction.append(ops.convert_to_numpy(vae.reconstruction_term(batch, decoded)))
        kl.append(ops.convert_to_numpy(kl_divergence(z_mean, z_log_var)))
    reconstruction, kl = np.concatenate(reconstruction), np.concatenate(kl)
    negative_elbo = reconstruction + kl
    return {"reconstruction_loss": reconstruction, "kl_loss": kl, "negative_elbo": negative_elbo}


def elbo(vae: VAE, x, batch_size: int = 500, seed: int | None = None) -> dict[str, float]:
    """Mean per-image reconstruction loss, KL and negative ELBO over `x`, in nats.

    Nats of a density except for "bce" on grey-level `x` and for "mse"; `seed` makes the
    posterior samples reproducible; see `elbo_terms`.
    """
    return {name: float(values.mean()) for name, values in _elbo_terms(vae, x, batch_size, seed).items()}


def latent_means(vae: VAE, x, batch_size: int = 500) -> np.ndarray:
    """The encoder's means μ(x) for a batch of images, shape (n, latent_dim), as a NumPy array.

    The encoder is called batch by batch rather than through `predict`, which compiles a
    function per model: a notebook that encodes with many models would retrace.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    x = _vae_images(vae, x)
    return np.concatenate([ops.convert_to_numpy(vae.encoder(x[start:start + batch_size], training=False)[0])
                           for start in range(0, len(x), batch_size)])


def active_units(vae: VAE, x, threshold: float = 0.01, batch_size: int = 500) -> int:
    """How many latent dimensions the encoder actually uses on `x`.

    A dimension is active when its posterior mean varies across images,
    Var_x(E_q[z_i | x]) > `threshold` (Burda et al., 2016). An unused dimension
    copies the prior for every image: it costs no KL and carries no information,
    which is why a larger `latent_dim` can leave the ELBO where it was.
    """
    threshold = check_non_negative("threshold", threshold)
    # float64: under mixed precision the encoder gives bfloat16 or float16 arrays, too coarse for a variance.
    z_mean = latent_means(vae, x, batch_size).astype(np.float64)
    return int(np.sum(np.var(z_mean, axis=0) > threshold))


# --- Importance-weighted log-likelihood (the IWAE bound) --------------------------------

def log_mean_exp(values, axis: int = -1):
    """log(mean(exp(values))) along `axis`, without overflow or underflow.

    Log-weights of a 784-pixel image lie hundreds or thousands of nats from 0 (around
    -100 to -500 for a Bernoulli decoder, often positive for a density on grey pixels),
    where exp() under- or overflows float32; `logsumexp` subtracts the maximum first.
    """
    values = ops.convert_to_tensor(values)
    return ops.logsumexp(values, axis=axis) - math.log(ops.shape(values)[axis])


def log_importance_weights(log_px_given_z, z, z_mean, z_log_var):
    """log w = log p(x|z) + log N(z; 0, I) - log N(z; z_mean, exp(z_log_var)).

    Shapes: `log_px_given_z` (n, k), `z` (n, k, d) drawn from q(z|x), `z_mean` and
    `z_log_var` (n, d). Returns (n, k). The log-variance is clipped as in `Sampling`,
    so the density is that of the distribution the samples came from.
    """
    # In float32 whatever the model's dtype: under mixed precision z and the encoder's outputs are
    # 16-bit, and log-weights of several hundred nats would keep only two or three digits there.
    log_px_given_z, z, z_mean, z_log_var = (ops.cast(ops.convert_to_tensor(a), "float32")
                                            for a in (log_px_given_z, z, z_mean, z_log_var))
    z_mean = ops.expand_dims(z_mean, 1)
    z_log_var = ops.expand_dims(ops.clip(z_log_var, LOG_VAR_MIN, LOG_VAR_MAX), 1)
    log_prior = log_normal_diag(z, ops.zeros_like(z), ops.zeros_like(z))
    return log_px_given_z + log_prior - log_normal_diag(z, z_mean, z_log_var)


def iwae_nll_terms(vae: VAE, x, k: int = 5000, batch_size: int = 100, chunk_size: int = 10_000,
                   seed: int | None = None) -> np.ndarray:
    """Per-image importance-weighted estimate of -log p(x), in nats (Burda et al. 2016).

    Slow by design: each image is decoded `k` times (k = 5000 is the literature's
    standard, so 10,000 test images cost 5e7 decoder passes, minutes on a GPU and
    hours on a CPU). Work is vectorised over images x samples: `batch_size` images are
    encoded at once, and each decoder call takes at most `chunk_size` (image, sample)
    pairs, which bounds memory; lower `chunk_size` if memory runs out. Each call is
    compiled once (Keras' `predict_on_batch`) and runs at one fixed shape.

    Works for every reconstruction kind; the result is -log p(x) in nats of a density where
    `elbo_terms`' is (for "bce", binarise the images: `vaekit.data.binarize`); elsewhere a warning says so.
    The estimate is an upper bound on -log p(x) in expectation and never above the
    negative ELBO on average; `seed` makes the draws reproducible.
    """
    return _iwae_nll_terms(vae, x, k, batch_size, chunk_size, seed)


def _iwae_nll_terms(vae, x, k, batch_size, chunk_size, seed):
    k, chunk_size = check_positive_int("k", k), check_positive_int("chunk_size", chunk_size)
    batch_size, seed = check_positive_int("batch_size", batch_size), check_seed("seed", seed)
    x = _vae_images(vae, x).astype(keras.backend.floatx())
    batch_size = min(batch_size, len(x))
    warn_if_not_a_likelihood(vae.reconstruction, x, stacklevel=4)  # the caller of iwae_nll / iwae_nll_terms
    samples = min(k, max(1, chunk_size // batch_size))
    weigher = _ImportanceWeights(vae, samples, seed)
    return np.concatenate([_iwae_nll_batch(weigher, x[start:start + batch_size], batch_size, k)
                           for start in range(0, len(x), batch_size)])


def iwae_nll(vae: VAE, x, k: int = 5000, batch_size: int = 100, chunk_size: int = 10_000,
             seed: int | None = None) -> float:
    """Mean importance-weighted -log p(x) over `x`, in nats per image. See `iwae_nll_terms`."""
    return float(_iwae_nll_terms(vae, x, k, batch_size, chunk_size, seed).mean())


class _ImportanceWeights(keras.Model):
    """x -> log w for `samples` fresh draws z ~ q(z|x) per image, shape (n, samples)."""

    def __init__(self, vae: VAE, samples: int, seed: int | None):
        super().__init__(name="importance_weights")
        self.vae = vae
        self.samples = samples
        self.sampling = Sampling(seed)  # the training step's reparameterisation, `samples` draws per image
        self.built = True  # no weights of its own; the encoder and decoder are built already

    def call(self, x):
        z_mean, z_log_var, _ = self.vae.encoder(x, training=False)
        n, latent_dim = ops.shape(z_mean)
        # Row i * samples + j of the flat batch is sample j of image i, for z and x alike.
        z = self.sampling([ops.repeat(z_mean, self.samples, axis=0), ops.repeat(z_log_var, self.samples, axis=0)])
        reconstruction = self.vae.decoder(z, training=False)
        log_px_given_z = -self.vae.reconstruction_term(ops.repeat(x, self.samples, axis=0), reconstruction)
        return log_importance_weights(ops.reshape(log_px_given_z, (n, self.samples)),
                                      ops.reshape(z, (n, self.samples, latent_dim)), z_mean, z_log_var)


def _iwae_nll_batch(weigher: _ImportanceWeights, x: np.ndarray, batch_size: int, k: int) -> np.ndarray:
    """-log p(x) for one batch of images, from ceil(k / samples) compiled calls."""
    n = len(x)
    # Padding the last batch keeps every call at one shape, so it is compiled only once.
    padded = np.concatenate([x, np.repeat(x[-1:], batch_size - n, axis=0)])
    log_weights = []
    for _ in range(0, k, weigher.samples):
        log_weights.append(np.asarray(weigher.predict_on_batch(padded))[:n])
    # Surplus draws of the last call are dropped, so exactly k enter the mean.
    log_weights = np.concatenate(log_weights, axis=1)[:, :k]
    return -ops.convert_to_numpy(log_mean_exp(log_weights, axis=1))


# --- Reconstruction error and anomaly ranking (any autoencoder; NumPy only) --------------

def reconstruction_metrics(x, reconstruction) -> dict[str, float]:
    """Test reconstruction error on scales that compare across models.

    Per-pixel BCE and MSE (means over pixels and images) and BCE summed over the
    pixels of an image (nats per image, the VAE's reconstruction term). Both arguments
    are image batches of one shape with values in [0, 1] (BCE is defined there only),
    checked as `VAE.fit` checks its data; [-1, 1] images (tanh models) map with `(x + 1) / 2`.
    """
    x = check_images("x", x)
    reconstruction = check_images("reconstruction", reconstruction)
    if x.shape != reconstruction.shape:
        raise ValueError(f"`x` and `reconstruction` must have the same shape, got {x.shape} and {reconstruction.shape}.")
    x = x.astype(np.float64).reshape(len(x), -1)
    r = np.clip(reconstruction.astype(np.float64).reshape(len(x), -1), 1e-7, 1 - 1e-7)
    bce = -(x * np.log(r) + (1 - x) * np.log(1 - r))
    return {
        "bce_per_pixel": float(bce.mean()),
        "mse_per_pixel": float(np.mean((x - r) ** 2)),
        "bce_nats_per_image": float(bce.sum(axis=1).mean()),
    }


def roc_curve(scores, is_anomaly) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of "score above threshold means anomaly", every threshold.

    `scores` are anomaly scores (higher = more anomalous, e.g. reconstruction error), one
    per example, and `is_anomaly` the true labels (1/True = anomaly, 0/False = normal; class
    labels such as digits are refused: pass `labels != normal_class`). Thresholds run over the distinct scores
    from the highest down, so tied scores move the curve diagonally. Returns (fpr, tpr),
    both starting at 0 and ending at 1. NumPy only.
    """
    scores, is_anomaly = _roc_inputs(scores, is_anomaly)
    positives, negatives = int(is_anomaly.sum()), int((~is_anomaly).sum())
    order = np.argsort(-scores, kind="mergesort")
    scores, is_anomaly = scores[order], is_anomaly[order]
    # The last index of each run of equal scores: a threshold admits a tie all at once.
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(is_anomaly)[last_of_tie]
    false_positives = (last_of_tie + 1) - true_positives
    fpr = np.r_[0.0, false_positives / negatives]
    tpr = np.r_[0.0, true_positives / positives]
    return fpr, tpr


def roc_auc(scores, is_anomaly) -> float:
    """Area under the ROC curve: the probability that a random anomaly scores above a random
    normal example, ties counting one half (the Mann-Whitney U statistic / (n_pos * n_neg)).

    0.5 is chance, 1.0 a perfect ranking. Arguments as in `roc_curve`. NumPy only.
    """
    fpr, tpr = roc_curve(scores, is_anomaly)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids: exact for a step curve with ties


def bootstrap_roc_auc(scores, is_anomaly, resamples: int = 2000, seed: int = 0,
                      stratify: bool = True) -> np.ndarray:
    """ROC AUCs of `resamples` bootstrap resamples of a test set: how much the AUC would move
    with another draw of test images.

    A 95 % percentile interval is `np.percentile(bootstrap_roc_auc(...), [2.5, 97.5])`.
    With `stratify=True` normal and anomalous examples are resampled separately, in their
    original numbers, so every resample has both. With `stratify=False` whole examples are
    drawn, `np.random.default_rng(seed).integers(0, n, size=(resamples, n))`, indices that
    depend only on `seed` and the number of examples n: for several scorings of one test set
    (e.g. each class in turn as the normal one), averaging their arrays element-wise gives
    the bootstrap of the mean AUC, each resample the same draw of test examples. A resample
    that happens to miss a class gives NaN. Arguments as in `roc_curve`. NumPy and SciPy only.

    Returns:
        An array of `resamples` AUCs.
    """
    from scipy.stats import rankdata

    resamples, seed = check_positive_int("resamples", resamples), check_seed("seed", seed)
    stratify = check_switch("stratify", stratify)
    scores, is_anomaly = _roc_inputs(scores, is_anomaly)  # the checks of `roc_curve`, the same errors
    anomalous, normal = scores[is_anomaly], scores[~is_anomaly]
    rng = np.random.default_rng(seed)
    aucs = np.empty(resamples)
    for start in range(0, resamples, 100):  # 100 resamples at a time bounds the memory
        count = min(100, resamples - start)
        if stratify:
            drawn = np.concatenate([rng.choice(anomalous, (count, len(anomalous))),
                                    rng.choice(normal, (count, len(normal)))], axis=1)
            labels = np.arange(len(scores)) < len(anomalous)
        else:
            indices = rng.integers(0, len(scores), size=(count, len(scores)))
            drawn, labels = scores[indices], is_anomaly[indices]
        # Mann-Whitney: the anomalies' rank sum (ties get their mean rank) gives the AUC with ties as 1/2.
        n_anomalous = labels.sum(axis=-1)
        n_normal = len(scores) - n_anomalous
        rank_sum = np.sum(rankdata(drawn, axis=1) * labels, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            aucs[start:start + count] = (rank_sum - n_anomalous * (n_anomalous + 1) / 2) / (n_anomalous * n_normal)
    return aucs


# --- checks of the anomaly scores and their labels ---------------------------------------

def _roc_inputs(scores, is_anomaly) -> tuple[np.ndarray, np.ndarray]:
    """(scores, is_anomaly) checked for a ROC curve: one finite score and one 0/1 label per example, both classes."""
    scores = check_scores("scores", scores)
    is_anomaly = check_binary_labels("is_anomaly", is_anomaly, len(scores))
    if is_anomaly.all() or not is_anomaly.any():
        raise ValueError("ROC needs at least one anomaly and one normal example.")
    return scores, is_anomaly


def _one_per_item(name: str, values: np.ndarray, what: str = "", fix: str = "") -> np.ndarray:
    """`values` of shape (n,) or (n, 1) as (n,); any other shape refused (`what` and `fix` extend the message)."""
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"`{name}` must have shape (n,) or (n, 1){what}, got {values.shape}.{fix}")
    return values


def check_scores(name: str, values) -> np.ndarray:
    """Check per-example scores (e.g. anomaly scores): a non-empty real 1-D array, (n,) or (n, 1), all finite; as float64."""
    if isinstance(values, (str, bytes)) or values is None:
        raise TypeError(f"`{name}` must be a 1-D array of numbers, one per example, got {type(values).__name__}.")
    values = np.asarray(values)
    if values.dtype == bool or not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise TypeError(f"`{name}` must hold real numbers (one score per example), got dtype {values.dtype}.")
    values = _one_per_item(name, values, what=", one score per example",
                           fix=" Per-image errors come from averaging over the pixels, e.g. `((x - r) ** 2).mean(axis=(1, 2, 3))`.")
    if values.size == 0:
        raise ValueError(f"`{name}` is empty; it needs one score per example.")
    values = values.astype(np.float64)
    bad = int(np.sum(~np.isfinite(values)))
    if bad:
        raise ValueError(f"`{name}` contains NaN or infinite values ({bad} of {values.size}); every score must be finite.")
    return values


def check_binary_labels(name: str, y, num_items: int, meaning: str = "1/True = anomaly, 0/False = normal") -> np.ndarray:
    """Check two-class labels, one per item: booleans, or numbers that are all 0 or 1; as a bool array.

    Class labels (digits 0-9) are refused with the fix, since reading every non-zero label
    as True would silently give another number than the one asked for.
    """
    if isinstance(y, (str, bytes)) or y is None:
        raise TypeError(f"`{name}` must be an array of 0/1 or True/False labels ({meaning}), got {type(y).__name__}.")
    y = np.asarray(y)
    if y.dtype != bool and not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise TypeError(f"`{name}` must hold 0/1 or True/False labels ({meaning}), got dtype {y.dtype}.")
    y = _one_per_item(name, y)
    if len(y) != num_items:
        raise ValueError(f"`{name}` has {len(y)} labels for {num_items} scores: they must have the same length, "
                         "one label per score.")
    if y.dtype != bool:
        found = np.unique(y[~np.isnan(y)] if np.issubdtype(y.dtype, np.floating) else y)
        if np.issubdtype(y.dtype, np.floating) and np.isnan(y).any():
            raise ValueError(f"`{name}` contains NaN; every label must be 0 or 1 ({meaning}).")
        if not np.all(np.isin(found, (0, 1))):
            shown = ", ".join(f"{v:g}" for v in found[:10]) + (", ..." if len(found) > 10 else "")
            raise ValueError(f"`{name}` must be binary ({meaning}), got {len(found)} distinct values: {shown}. "
                             "For class labels, mark which are anomalies, e.g. `labels != normal_class`.")
    return y.astype(bool)
