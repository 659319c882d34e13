"""Training callbacks that turn silent numerical failures into clear errors.

`keras.callbacks.TerminateOnNaN` stops at a NaN loss but says little about why
and leaves the model with the weights of the failed step, often NaN themselves.
`StopOnNonFiniteLoss` stops, puts back the last good weights and says where it
happened and what usually causes it. It lives in `vaekit.vae` (whose `VAE.fit`
uses it by default, and which must stay usable on its own); it is importable from
here for any Keras model.
"""

from vaekit.vae import LIKELY_CAUSES, NonFiniteLossError, StopOnNonFiniteLoss

__all__ = ["LIKELY_CAUSES", "NonFiniteLossError", "StopOnNonFiniteLoss"]
