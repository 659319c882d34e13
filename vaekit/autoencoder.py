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

import inspect

import keras

from vaekit.vae import check_batches


@keras.saving.register_keras_serializable(package="vaekit")
class Autoencoder(keras.Model):
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

    def check_data(self, x, y=None, validation_data=None):
        """Check inputs, targets and validation data as `fit` does; returns them, ready to pass on."""
        input_shape = tuple(self.input_shape[1:])
        output_shape = tuple(self.output_shape[1:])
        checked_x = check_batches(x, "x", input_shape, self.value_range)
        if y is not None and y is not x:  # fit(x, x), the usual call, is checked once
            y = check_batches(y, "y", output_shape, self.value_range)
        if isinstance(validation_data, (tuple, list)) and validation_data:
            x_val = check_batches(validation_data[0], "validation_data[0]", input_shape, self.value_range)
            rest = list(validation_data[1:])
            if rest and rest[0] is not None and rest[0] is not validation_data[0]:
                rest[0] = check_batches(rest[0], "validation_data[1]", output_shape, self.value_range)
            validation_data = (x_val, *rest)
        elif validation_data is not None:  # a dataset or generator
            validation_data = check_batches(validation_data, "validation_data", input_shape, self.value_range)
        return checked_x, y, validation_data

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, after checking `x`, `y` and `validation_data` (see `check_data`)."""
        bound = inspect.signature(super().fit).bind(*args, **kwargs)
        arguments = bound.arguments
        same = arguments.get("y") is arguments.get("x")
        arguments["x"], y, arguments["validation_data"] = self.check_data(
            arguments.get("x"), arguments.get("y"), arguments.get("validation_data"))
        arguments["y"] = arguments["x"] if same else y  # a generator checked on its first batch is a new object
        self._data_checked = True  # fit's own validation calls `evaluate`: checked already
        try:
            return super().fit(*bound.args, **bound.kwargs)
        finally:
            self._data_checked = False

    def evaluate(self, *args, **kwargs):
        """`keras.Model.evaluate`, after checking `x` and `y` as `fit` does."""
        bound = inspect.signature(super().evaluate).bind(*args, **kwargs)
        if not getattr(self, "_data_checked", False):
            arguments = bound.arguments
            same = arguments.get("y") is arguments.get("x")
            arguments["x"], y, _ = self.check_data(arguments.get("x"), arguments.get("y"))
            arguments["y"] = arguments["x"] if same else y
        return super().evaluate(*bound.args, **bound.kwargs)

    def predict(self, *args, **kwargs):
        """`keras.Model.predict`, after checking `x` as `fit` does."""
        bound = inspect.signature(super().predict).bind(*args, **kwargs)
        bound.arguments["x"], _, _ = self.check_data(bound.arguments.get("x"))
        return super().predict(*bound.args, **bound.kwargs)
