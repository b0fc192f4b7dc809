"""
Fashion-MNIST in half a minute
==============================

A ReLU network with a softmax output and the log-likelihood cost, trained by Adam in float32
on the 60,000 training images of Fashion-MNIST for a few epochs, with the test images as
validation data; the learning curves come from the history `fit` returns, drawn by
:func:`deltaprop.plot.learning_curves`.

The data are not shipped with deltaprop: on Debian, ``apt-get install dataset-fashion-mnist``
puts them under ``/usr/share/datasets/fashion-mnist``. Without them this example trains on
the 8×8 digits shipped with the package instead, and says so in its output.
"""

import time

import matplotlib.pyplot as plt

import deltaprop as dp

try:
    (X_train, y_train), (X_test, y_test) = dp.datasets.load_fashion_mnist()
    data = "Fashion-MNIST"
except FileNotFoundError:
    X, y = dp.datasets.load_digits(dtype="float32")
    (X_train, y_train), (X_test, y_test) = dp.datasets.train_test_split(X, y, seed=0)
    data = "the shipped digits (Fashion-MNIST is not installed)"
print(f"training on {data}: {len(X_train)} images, testing on {len(X_test)}")

net = dp.Network(
    [X_train.shape[1], 256, 128, 10],
    activation="relu",
    output="softmax",
    cost="log_likelihood",
    init="he",
    dtype="float32",
    seed=0,
)
start = time.perf_counter()
history = net.fit(
    X_train,
    y_train,
    epochs=8,
    batch_size=128,
    optimizer="adam",
    lr=1e-3,
    validation_data=(X_test, y_test),
    train_accuracy=True,
)
seconds = time.perf_counter() - start
print(f"{seconds:.1f} s, test accuracy {net.evaluate(X_test, y_test):.4f}")

# %%
# The learning curves: cost and accuracy on the training and test images, epoch by epoch,
# from the history `fit` returns. :func:`deltaprop.plot.learning_curves` draws the same two
# panels into a PNG file without pyplot (``dp.plot.learning_curves(history, "curves.png")``).
epochs = range(1, len(history["cost"]) + 1)
fig, (cost_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
cost_axes.plot(epochs, history["cost"], "o-", label="training")
cost_axes.plot(epochs, history["val_cost"], "o-", label="test")
cost_axes.set_ylabel("cost (log-likelihood)")
accuracy_axes.plot(epochs, history["accuracy"], "o-", label="training")
accuracy_axes.plot(epochs, history["val_accuracy"], "o-", label="test")
accuracy_axes.set_ylabel("accuracy")
for axes in (cost_axes, accuracy_axes):
    axes.set_xlabel("epoch")
    axes.legend()
fig.suptitle(f"{data}: [{X_train.shape[1]}, 256, 128, 10], Adam 1e-3, batch 128, float32")
plt.show()
