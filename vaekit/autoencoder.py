"""`Autoencoder`: the functional model vaekit's autoencoder builders return, checking its data as `VAE.fit` does.

A builder in `vaekit/models.py` is plain Keras and returns a plain `keras.Model`; called
through vaekit, its model is rebuilt from the same layers as an `Autoencoder`, whose
`fit`, `evaluate` and `predict` check `x` (and the targets `y`, and `validation_data`)
before Keras sees them: 0-255 pixels, NaN, a missing channel axis or images of another
size are refused with the message and fix `VAE.fit` gives, instead of a loss of -66,705
or Keras' generic input error. Everything else is Keras' own; the checks look at each
array once per call (a min and a max), nothing per step.

It is registered with Keras, so `keras.saving.load_model` brings it back, checks
included, without `custom_objects` (after `import vaekit`, as for the VAE).
"""

from __future__ import annotations

import functools

import keras

from vaekit import checks
from vaekit.training import ChecksItsData


@keras.saving.register_keras_serializable(package="vaekit")
class Autoencoder(ChecksItsData, keras.Model):
    """A functional autoencoder (inputs -> reconstruction) whose `fit`, `evaluate`, `predict` check their images.

    `value_range` is the pixel range the output layer covers and the data must lie in:
    (0, 1) for a sigmoid output, (-1, 1) for tanh; None checks shape and finiteness only.
    Build one from a functional model with `Autoencoder.from_model(model, value_range)`.
    """

    def __init__(self, *args, value_range: tuple[float, float] | None = (0.0, 1.0), **kwargs):
        super().__init__(*args, **kwargs)
        self.value_range = None if value_range is None else (float(value_range[0]), float(value_range[1]))

    @classmethod
    def from_model(cls, model: keras.Model, value_range: tuple[float, float] | None = (0.0, 1.0)) -> Autoencoder:
        """The same layers (shared, not copied) and name as the functional `model`, as an `Autoencoder`."""
        return cls(model.inputs, model.outputs, name=model.name, value_range=value_range)

    def get_config(self):
        return {**super().get_config(), "value_range": self.value_range}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        value_range = config.pop("value_range", (0.0, 1.0))
        model = super().from_config(config, custom_objects=custom_objects)  # Keras' functional rebuild
        model.value_range = None if value_range is None else tuple(value_range)
        return model

    def check_data(self, x, validation_data=None):
        """Check inputs and validation data as `fit` does; returns (x, validation_data), ready to pass on.

        The same contract as `VAE.check_data`, so `fit_resumable` and `fit_on_device` check an
        autoencoder's data before anything is written or compiled; `check_targets` checks `y`.
        """
        input_shape = tuple(self.input_shape[1:])
        checked_x = checks.batches("x", x, self.value_range, input_shape)
        if isinstance(validation_data, (tuple, list)) and validation_data:
            x_val = checks.batches("validation_data[0]", validation_data[0], self.value_range, input_shape)
            rest = list(validation_data[1:])
            if rest and rest[0] is not validation_data[0]:  # (x_val, x_val), the usual form, is checked once
                rest[0] = self.check_targets(rest[0], "validation_data[1]")
            validation_data = (x_val, *rest)
        elif validation_data is not None:  # a dataset or generator
            validation_data = checks.batches("validation_data", validation_data, self.value_range, input_shape)
        return checked_x, validation_data

    def check_targets(self, y, name: str = "y"):
        """Check reconstruction targets: images of the output's shape in the model's range; None passes."""
        if y is None:
            return None
        return checks.batches(name, y, self.value_range, tuple(self.output_shape[1:]))


def checking_data(builder, value_range: tuple[float, float] | None):
    """`builder` whose plain Keras model comes back as an `Autoencoder` (the same layers), which checks its
    data in `fit`, `evaluate` and `predict`; `value_range` is its output layer's: sigmoid (0, 1), tanh (-1, 1)."""

    @functools.wraps(builder)
    def build(*args, **kwargs):
        return Autoencoder.from_model(builder(*args, **kwargs), value_range)

    return build
