"""
The vanishing gradient: how fast each layer of a deep network learns
=====================================================================

Nielsen's chapter 5 ("Why are deep neural networks hard to train?"), measured by
``fit(..., diagnostics=True)``: a network of four sigmoid hidden layers of 30 units,
``[784, 30, 30, 30, 30, 10]``, with a sigmoid output and the cross-entropy cost, trained by
mini-batch SGD on Fashion-MNIST. Its speed of learning, the length of each layer's bias
gradient :math:`\\lVert \\partial C / \\partial b^l \\rVert` (BP3: it is the layer's error
:math:`\\delta^l`), falls layer after layer towards the input: BP2 multiplies the error by
:math:`(W^{l+1})^T` and by :math:`\\sigma'(z^l) \\le 1/4` at every layer it goes down.

The same network with ReLU hidden layers and He initialisation keeps those factors near 1:
its layers learn at similar speeds. 10,000 training images (the test images to measure
accuracy), 10 epochs each. The deep sigmoid network does learn in the end: once its
last layers have learnt, larger errors reach its first layers, which then catch up.

The data are not shipped with deltaprop: on Debian, ``apt-get install dataset-fashion-mnist``
puts them under ``/usr/share/datasets/fashion-mnist``. Without them this example trains on
the 8×8 digits shipped with the package instead (a ``[64, 30, 30, 30, 30, 10]`` network), and
says so in its output.
"""

import matplotlib.pyplot as plt

import deltaprop as dp

try:
    (X_train, y_train), (X_test, y_test) = dp.datasets.load_fashion_mnist()
    X_train, y_train = X_train[:10_000], y_train[:10_000]
    data = "Fashion-MNIST"
except FileNotFoundError:
    X, y = dp.datasets.load_digits(dtype="float32")
    (X_train, y_train), (X_test, y_test) = dp.datasets.train_test_split(X, y, seed=0)
    data = "the shipped digits (Fashion-MNIST is not installed)"
print(f"training on {data}: {len(X_train)} images, testing on {len(X_test)}")

sizes = [X_train.shape[1], 30, 30, 30, 30, 10]
networks = {
    "sigmoid": dp.Network(sizes, activation="sigmoid", output="sigmoid", cost="cross_entropy",
                          dtype="float32", seed=0),
    "ReLU, He initialisation": dp.Network(sizes, activation="relu", output="sigmoid",
                                          cost="cross_entropy", init="he", dtype="float32",
                                          seed=0),
}  # fmt: skip
histories = {}
for name, net in networks.items():
    histories[name] = net.fit(X_train, y_train, epochs=10, batch_size=10, lr=0.1,
                              diagnostics=True)  # fmt: skip
    speed = histories[name]["learning_speed"][0]
    print(f"{name}: test accuracy {net.evaluate(X_test, y_test):.3f}; first epoch's speed "
          f"of learning, hidden layer 1 to output: " + ", ".join(f"{s:.2e}" for s in speed))

# %%
# The claim of the figure, checked: in the first epoch the sigmoid network's first hidden
# layer learns more than ten times slower than its last hidden layer; with ReLU and He
# initialisation, less than ten times.
sigmoid_speed = histories["sigmoid"]["learning_speed"][0]
relu_speed = histories["ReLU, He initialisation"]["learning_speed"][0]
assert sigmoid_speed[3] / sigmoid_speed[0] > 10
assert relu_speed[3] / relu_speed[0] < 10

# %%
# Each layer's speed of learning, epoch by epoch, drawn by
# :func:`deltaprop.plot.learning_speed` (one line per layer, log scale), on shared y axes.
fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True, layout="constrained")
for ax, (name, history) in zip(axes, histories.items()):
    dp.plot.learning_speed(history, ax=ax)
    ax.set_title(name)
plt.show()

# %%
# Saturation: the fraction of the sigmoid units whose :math:`\sigma'(z)` fell below 1% of
# its maximum (solid), and the ReLU units that no image activated in the epoch (dashed),
# drawn by :func:`deltaprop.plot.saturation`.
fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True, layout="constrained")
for ax, (name, history) in zip(axes, histories.items()):
    dp.plot.saturation(history, ax=ax)
    ax.set_title(name)
plt.show()
