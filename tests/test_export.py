"""prediction.csv: column format, round trip, and refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vaekit.export import prediction_columns, read_prediction_csv, write_prediction_csv

pytestmark = pytest.mark.oldest_versions  # .ci/run's stage on the oldest Keras and TensorFlow


def images(n=3, shape=(28, 28, 1), seed=0):
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


def test_header_is_row_id_then_orig_and_recon_interleaved():
    assert prediction_columns(2) == ["row_id", "orig_px0", "recon_px0", "orig_px1", "recon_px1"]


def test_written_file_has_one_row_per_image_and_1569_columns(tmp_path):
    path = tmp_path / "prediction.csv"
    write_prediction_csv(path, images(4), images(4, seed=1))
    frame = pd.read_csv(path)
    assert frame.shape == (4, 1 + 2 * 784)
    assert frame.columns[:3].tolist() == ["row_id", "orig_px0", "recon_px0"]
    assert frame["row_id"].tolist() == [0, 1, 2, 3]


def test_values_are_written_with_trailing_zeros_trimmed(tmp_path):
    path = tmp_path / "prediction.csv"
    originals = np.array([[[0.0, 1.0, 0.5]]], dtype=np.float32)
    reconstructions = np.array([[[0.25, 0.1234567, 0.9999996]]], dtype=np.float32)
    write_prediction_csv(path, originals, reconstructions)
    line = path.read_text().splitlines()[1]
    assert line == "0,0,0.25,1,0.123457,0.5,1"


def test_matches_plain_percent_formatting_on_random_values(tmp_path):
    path = tmp_path / "prediction.csv"
    originals, reconstructions = images(2, (5,)), images(2, (5,), seed=3)
    write_prediction_csv(path, originals, reconstructions)
    for row_id, line in enumerate(path.read_text().splitlines()[1:]):
        expected = [str(row_id)]
        for o, r in zip(originals[row_id], reconstructions[row_id]):
            expected += [f"{float(v):.6f}".rstrip("0").rstrip(".") for v in (o, r)]
        assert line == ",".join(expected)


def test_reading_back_gives_the_same_arrays_within_written_precision(tmp_path):
    path = tmp_path / "prediction.csv"
    originals, reconstructions = images(5), images(5, seed=1)
    originals[originals < 0.5] = 0.0  # MNIST-like: many exact zeros
    write_prediction_csv(path, originals, reconstructions, decimals=4)
    read_originals, read_reconstructions = read_prediction_csv(path)
    assert read_originals.shape == (5, 784)
    np.testing.assert_allclose(read_originals, originals.reshape(5, -1), atol=0.5e-4 + 1e-7, rtol=0)
    np.testing.assert_allclose(read_reconstructions, reconstructions.reshape(5, -1), atol=0.5e-4 + 1e-7, rtol=0)


def test_round_trip_is_exact_for_values_on_the_decimal_grid(tmp_path):
    path = tmp_path / "prediction.csv"
    grid = (np.arange(12, dtype=np.float64) / 11).round(6).reshape(2, 6)
    write_prediction_csv(path, grid, grid[::-1])
    read_originals, read_reconstructions = read_prediction_csv(path)
    np.testing.assert_array_equal(read_originals, grid.astype(np.float32))
    np.testing.assert_array_equal(read_reconstructions, grid[::-1].astype(np.float32))


def test_writer_refuses_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match="same shape"):
        write_prediction_csv(tmp_path / "p.csv", images(3), images(2))


def test_writer_refuses_different_image_sizes(tmp_path):
    with pytest.raises(ValueError, match="same shape"):
        write_prediction_csv(tmp_path / "p.csv", images(2), images(2, shape=(32, 32, 1)))


def test_writer_refuses_0_to_255_values(tmp_path):
    with pytest.raises(ValueError, match="Divide 0-255"):
        write_prediction_csv(tmp_path / "p.csv", images(2) * 255, images(2))


def test_writer_refuses_tanh_outputs_below_zero(tmp_path):
    with pytest.raises(ValueError, match=r"`reconstructions` values must lie in \[0.0, 1.0\]"):
        write_prediction_csv(tmp_path / "p.csv", images(2), images(2) * 2 - 1)


def test_writer_refuses_nan_reconstructions(tmp_path):
    reconstructions = images(2)
    reconstructions[1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_prediction_csv(tmp_path / "p.csv", images(2), reconstructions)
    assert not (tmp_path / "p.csv").exists()  # nothing half-written


def test_writer_refuses_empty_arrays(tmp_path):
    with pytest.raises(ValueError, match="non-empty"):
        write_prediction_csv(tmp_path / "p.csv", np.zeros((0, 784)), np.zeros((0, 784)))


def test_writer_refuses_too_many_decimals(tmp_path):
    with pytest.raises(ValueError, match="`decimals` must be 1..9"):
        write_prediction_csv(tmp_path / "p.csv", images(1), images(1), decimals=12)


def test_reader_refuses_a_csv_with_other_columns(tmp_path):
    path = tmp_path / "other.csv"
    pd.DataFrame({"row_id": [0], "a": [0.1], "b": [0.2]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="columns are not row_id, orig_px0"):
        read_prediction_csv(path)


def test_reader_refuses_out_of_order_row_ids(tmp_path):
    path = tmp_path / "p.csv"
    write_prediction_csv(path, images(2, (2,)), images(2, (2,)))
    lines = path.read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="row_id must run 0..1"):
        read_prediction_csv(path)


def test_rows_beyond_one_write_chunk_keep_consecutive_row_ids(tmp_path):
    # More rows than one write chunk, so row ids must carry across chunks.
    path = tmp_path / "p.csv"
    n = 2500
    x = np.random.default_rng(0).random((n, 3)).astype(np.float32)
    write_prediction_csv(path, x, x)
    read_originals, _ = read_prediction_csv(path)
    assert len(read_originals) == n
    np.testing.assert_allclose(read_originals, x, atol=5e-7 + 1e-7)


def test_reader_refuses_a_file_with_missing_or_out_of_range_values(tmp_path):
    path = tmp_path / "p.csv"
    write_prediction_csv(path, images(2, (2,)), images(2, (2,)))
    lines = path.read_text().splitlines()
    lines[2] = "1,0.5,,0.2,3"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        read_prediction_csv(path)


def test_a_write_that_fails_midway_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    from vaekit import export

    path = tmp_path / "prediction.csv"
    write_prediction_csv(path, images(2), images(2))
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise KeyboardInterrupt  # as a stop after the header has been written

    monkeypatch.setattr(export, "_format_rows", fail)
    with pytest.raises(KeyboardInterrupt):
        write_prediction_csv(path, images(3, seed=1), images(3, seed=1))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["prediction.csv"]  # no temporary file left
