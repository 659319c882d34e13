"""Training callbacks that turn silent numerical failures into clear errors.

`keras.callbacks.TerminateOnNaN` stops at a NaN loss but says little about why
and leaves the model with the weights of the failed step, often NaN themselves.
`StopOnNonFiniteLoss` stops, puts back the last good weights and says where it
happened and what usually causes it.
"""

from __future__ import annotations

import math
import warnings

import keras

LIKELY_CAUSES = (
    "Likely causes: the learning rate is too high (try 10x smaller); inputs are not "
    "scaled to [0, 1] (divide 0-255 pixel values by 255); the data contain NaN or "
    "infinite values (check with vaekit.data.check_images)."
)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the message says where and why."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training at the first NaN or infinite loss and say why.

    The weights from the start of the failing epoch are put back (they are copied
    once per epoch, so the cost is one copy of the weights per epoch), so the model
    is usable afterwards instead of holding NaN. Then, with `raise_error=True` (the
    default), `fit` raises `NonFiniteLossError`; with `raise_error=False` training
    stops with a warning and `fit` returns normally, with `self.message` set.

        model.fit(x, x, callbacks=[StopOnNonFiniteLoss()])
    """

    def __init__(self, monitor: str = "loss", raise_error: bool = True, restore_weights: bool = True):
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"`monitor` must be a metric name such as 'loss', got {monitor!r}.")
        self.monitor = monitor
        self.raise_error = bool(raise_error)
        self.restore_weights = bool(restore_weights)
        self.message: str | None = None
        self._good_weights = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self.restore_weights:
            self._good_weights = self.model.get_weights()

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution = n > 1 (vaekit.VAE's default on TensorFlow), Keras calls
        # this once every n batches, with the index of the group's last batch, which for the
        # last group can lie past the end of the epoch.
        steps_per_execution = getattr(self.model, "steps_per_execution", 1)
        last = min(batch + 1, (self.params or {}).get("steps") or batch + 1)
        note = f" (checked every {steps_per_execution} batches)" if steps_per_execution > 1 else ""
        self._check(logs, f"epoch {self._epoch + 1}, batch {last}{note}")

    def on_epoch_end(self, epoch, logs=None):
        # Catches `val_loss` too when monitor="val_loss".
        self._check(logs, f"the end of epoch {epoch + 1}")

    def _check(self, logs, where: str) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        value = float(value)
        if math.isfinite(value):
            return
        restored = ""
        if self.restore_weights and self._good_weights is not None:
            self.model.set_weights(self._good_weights)
            restored = f" The weights from the start of epoch {self._epoch + 1} have been restored."
        self.message = f"`{self.monitor}` became {value} at {where}; training stopped.{restored} {LIKELY_CAUSES}"
        self.model.stop_training = True
        if self.raise_error:
            raise NonFiniteLossError(self.message)
        warnings.warn(self.message, RuntimeWarning, stacklevel=2)
