"""The checks of `vaekit.guards`: the one image check, the label check and the argument checks."""

import numpy as np
import pytest

from vaekit import cvae, guards


def test_images_returns_numpy_and_accepts_integer_pixels_unless_training_needs_floats():
    x = guards.check_images("x", [[[0, 1], [1, 0]]])
    assert isinstance(x, np.ndarray) and x.shape == (1, 2, 2)
    with pytest.raises(TypeError, match=r"dtype int64; the model trains on floats in \[0, 1\]"):
        guards.check_images("x", np.ones((1, 2, 2), dtype=np.int64), floats_only=True)


def test_images_rejects_0_to_255_pixels_with_a_hint():
    with pytest.raises(ValueError, match="Divide 0-255 pixel values by 255"):
        guards.check_images("x", np.full((2, 28, 28), 255, dtype=np.uint8))


def test_images_rejects_minus_one_to_one_images_with_a_hint():
    with pytest.raises(ValueError, match=r"Map \[-1, 1\] images to \[0, 1\]"):
        guards.check_images("x", np.full((2, 4, 4), -0.5, dtype=np.float32))


def test_images_rejects_nan_and_counts_it():
    x = np.zeros((2, 4, 4), dtype=np.float32)
    x[0, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values \(1 of 32\)"):
        guards.check_images("x", x)


@pytest.mark.parametrize("bad", [np.array([["a", "b"]]), np.zeros((2, 3, 3), dtype=bool), np.zeros((2, 3, 3), dtype=complex)])
def test_images_rejects_non_real_dtypes(bad):
    with pytest.raises(TypeError, match="real numeric array"):
        guards.check_images("x", bad)


def test_images_rejects_empty_batch():
    with pytest.raises(ValueError, match="non-empty batch"):
        guards.check_images("x", np.zeros((0, 28, 28), dtype=np.float32))


def test_images_rejects_images_of_the_wrong_size_for_the_model():
    with pytest.raises(ValueError, match=r"`x` must hold images of shape \(28, 28, 1\), got batch shape \(2, 32, 32, 1\)"):
        guards.check_images("x", np.zeros((2, 32, 32, 1), dtype=np.float32), shape=(28, 28, 1))


def test_images_says_how_to_fix_a_missing_channel_axis_or_flat_vectors():
    with pytest.raises(ValueError, match=r"Add the channel axis with `x\[..., None\]`"):
        guards.check_images("x", np.zeros((2, 28, 28), dtype=np.float32), shape=(28, 28, 1))
    with pytest.raises(ValueError, match=r"Reshape with `x.reshape\(-1, 28, 28, 1\)`"):
        guards.check_images("x", np.zeros((2, 784), dtype=np.float32), shape=(28, 28, 1))


def test_images_names_the_argument_it_checks():
    with pytest.raises(ValueError, match="`originals` values must lie in"):
        guards.check_images("originals", np.full((1, 2, 2), 3.0))


def test_labels_reject_labels_not_matching_images():
    with pytest.raises(ValueError, match="3 labels but there are 2 images"):
        guards.check_labels("y", [1, 2, 3], length=2)


def test_labels_reject_fractional_labels_and_accept_whole_floats():
    with pytest.raises(TypeError, match="integer class labels"):
        guards.check_labels("y", [1.5, 2.0], length=2)
    assert guards.check_labels("y", [1.0, 2.0], length=2).tolist() == [1, 2]


def test_labels_accept_a_column_and_check_the_class_range():
    assert guards.check_labels("y", np.array([[3], [4]]), length=2).tolist() == [3, 4]
    with pytest.raises(ValueError, match=r"`y` must lie in 0..9, got \[3, 10\]"):
        guards.check_labels("y", [3, 10], length=2, num_classes=10)


def test_image_label_pair_splits_a_tuple_or_a_dict_and_names_the_parts():
    images, labels = np.zeros((2, 4, 4, 1)), np.array([0, 1])
    names, parts = cvae.image_label_pair("x", (images, labels), fix="")
    assert names == ("x[0]", "x[1]") and parts[0] is images and parts[1] is labels
    names, parts = cvae.image_label_pair("val", {"labels": labels, "images": images}, fix="")
    assert names == ("val['images']", "val['labels']") and parts[0] is images and parts[1] is labels


def test_image_label_pair_refuses_images_alone_or_a_dict_without_labels():
    with pytest.raises(TypeError, match=r"`x` of a ConditionalVAE must be \(images, labels\).*got ndarray: pass both"):
        cvae.image_label_pair("x", np.zeros((2, 4, 4, 1)), fix="pass both")
    with pytest.raises(TypeError, match=r"got tuple"):
        cvae.image_label_pair("x", (np.zeros((2, 4, 4, 1)),), fix="")
    with pytest.raises(ValueError, match=r"`x` must have the keys 'images' and 'labels'; it lacks \['labels'\]"):
        cvae.image_label_pair("x", {"images": np.zeros((2, 4, 4, 1))}, fix="")


def test_every_builder_is_one_function_reached_from_vaekit_and_its_module():
    import vaekit

    for name in ("conv_autoencoder", "conv_vae", "deterministic_autoencoder", "fc_autoencoder", "fc_vae",
                 "fcn_autoencoder", "strided_conv_autoencoder"):
        assert getattr(vaekit, name) is getattr(vaekit.models, name), name
    assert vaekit.conditional_conv_vae is vaekit.cvae.conditional_conv_vae
