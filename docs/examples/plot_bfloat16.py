"""
Training in bfloat16
====================

The same ReLU network trained twice from the same initial weights and row orders: once with
float32 products (``matmul_precision="highest"``, the default) and once with bfloat16
operands and float32 sums (``matmul_precision="bfloat16"``, as PyTorch's
``torch.autocast("cpu", dtype=torch.bfloat16)`` does). Parameters, optimizer state, biases
and costs stay float32 in both; only the products of the forward pass, BP2 and BP4 change.

bfloat16 keeps float32's exponent and 8 bits of its mantissa, so each product is rounded to
about 3 significant digits: the learning curves below differ in their last digits, not in
their shape. Where the CPU has AVX512_BF16 or AMX (:func:`deltaprop.bfloat16_native`),
oneDNN multiplies bfloat16 natively, up to twice as fast as float32 on wide layers; elsewhere
a fallback gives the same numbers at float32's speed (with one
:class:`deltaprop.Bfloat16FallbackWarning`). It needs ``pip install "deltaprop[bf16]"``.
"""

import time
import warnings

import matplotlib.pyplot as plt

import deltaprop as dp

try:
    (X_train, y_train), (X_test, y_test) = dp.datasets.load_fashion_mnist()
    X_train, y_train = X_train[:20000], y_train[:20000]
    data = "Fashion-MNIST (20,000 training images)"
except FileNotFoundError:
    X, y = dp.datasets.load_digits(dtype="float32")
    (X_train, y_train), (X_test, y_test) = dp.datasets.train_test_split(X, y, seed=0)
    data = "the shipped digits (Fashion-MNIST is not installed)"
print(f"bfloat16 products native on this CPU: {dp.bfloat16_native()}")


def train(precision):
    """Train the example's network with products of the given precision."""
    net = dp.Network(
        [X_train.shape[1], 512, 256, 10],
        activation="relu",
        output="softmax",
        cost="log_likelihood",
        init="he",
        dtype="float32",
        seed=0,
        matmul_precision=precision,
    )
    start = time.perf_counter()
    history = net.fit(
        X_train,
        y_train,
        epochs=5,
        batch_size=256,
        optimizer="momentum",
        lr=0.05,
        validation_data=(X_test, y_test),
    )
    seconds = time.perf_counter() - start
    print(f"{precision:>8}: {seconds:5.1f} s, test accuracy {net.evaluate(X_test, y_test):.4f}")
    return history


with warnings.catch_warnings():
    warnings.simplefilter("ignore", dp.Bfloat16FallbackWarning)  # said once above instead
    histories = {precision: train(precision) for precision in ("highest", "bfloat16")}

# %%
# The test cost epoch by epoch: the two precisions follow one curve.
fig, axes = plt.subplots(figsize=(6, 3.6), layout="constrained")
for precision, history in histories.items():
    epochs = range(1, len(history["val_cost"]) + 1)
    axes.plot(epochs, history["val_cost"], "o-", label=f'matmul_precision="{precision}"')
axes.set_xlabel("epoch")
axes.set_ylabel("test cost (log-likelihood)")
axes.legend()
axes.set_title(data)
plt.show()
