#!/usr/bin/env bash
# The GPU benchmark suite, one command: Keras on JAX (TensorFlow not needed).
#   1. benchmarks/vs_pytorch.py on the FC and the keras.io example's conv VAEs: vaekit `fit`,
#      `vaekit.fit_on_device` and the PyTorch peers, epochs interleaved; seconds per
#      epoch, ratios to PyTorch and test losses (PyTorch rows only where torch is installed);
#   2. benchmarks/iwae_speed.py: `vaekit.evaluate.iwae_nll` with k = 5000 on the 10,000
#      test images (notebook 08's model).
# Both append to one Markdown file, printed at the end.
#
#   bash benchmarks/gpu_suite.sh [OUTPUT.md]
#
# OUTPUT.md defaults to $OUT/gpu_suite.md when $OUT is set, else benchmarks/results/gpu_suite.md.
# SMALL=1 shrinks every size (512 training images, 2 epochs, k = 20 on 64 images) so the
# suite runs in a few minutes on a CPU; EPOCHS=N sets the epochs of the full run (default 6).
# MNIST is read from $VAEKIT_DATA_DIR/mnist.npz (default: .data/, git-ignored; copy
# mnist.npz there). Where keras is not installed, the wheels in .whl/ (made by
# ../shared/tools/device-wheels.sh) are installed into /tmp/site first.
set -euo pipefail
cd "$(dirname "$0")/.."
export KERAS_BACKEND="${KERAS_BACKEND:-jax}" TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
export VAEKIT_DATA_DIR="${VAEKIT_DATA_DIR:-$PWD/.data}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! python3 -c "import keras" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "keras is not installed and .whl/ holds no wheels: run ../shared/tools/device-wheels.sh first" >&2
    exit 1
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
if [ ! -f "$VAEKIT_DATA_DIR/mnist.npz" ]; then
  echo "no MNIST at $VAEKIT_DATA_DIR/mnist.npz: copy mnist.npz there or set VAEKIT_DATA_DIR" >&2
  exit 1
fi

output="${1:-${OUT:+$OUT/gpu_suite.md}}"
output="${output:-benchmarks/results/gpu_suite.md}"
mkdir -p "$(dirname "$output")"
if [ "${SMALL:-0}" = 1 ]; then
  train_args=(--train-limit 512 --test-limit 128 --epochs 2)
  iwae_args=(--k 20 --test-limit 64)
  size="SMALL=1 (shrunk sizes: not comparable with a full run)"
else
  train_args=(--epochs "${EPOCHS:-6}")
  iwae_args=(--k 5000 --test-limit 10000)
  size="full MNIST"
fi
device_args=()
[ "$KERAS_BACKEND" = jax ] && device_args=(--fit-on-device)

{
  echo "# GPU suite: vaekit against PyTorch, and the IWAE evaluation"
  echo
  gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || true)"
  echo "\`bash benchmarks/gpu_suite.sh\`, $size, $(date -u +%Y-%m-%d), ${gpu:-no GPU found by nvidia-smi}," \
       "$(nproc) CPU cores"
  echo
} > "$output"
python3 benchmarks/vs_pytorch.py "${train_args[@]}" "${device_args[@]}" --markdown "$output"
python3 benchmarks/iwae_speed.py "${iwae_args[@]}" --markdown "$output"
echo
echo "=== $output"
cat "$output"
