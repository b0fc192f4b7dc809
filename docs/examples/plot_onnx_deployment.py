"""
Deploying through ONNX
======================

Train a network, export it with :meth:`deltaprop.Network.to_onnx`, and run the file in
onnxruntime, where deltaprop is not needed: the probabilities agree with
:meth:`deltaprop.Network.predict` to rounding, and :meth:`deltaprop.Network.from_onnx`
reads the file back bit for bit. The figure shows a few test digits with the class
onnxruntime predicts.
"""

import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import onnxruntime

import deltaprop as dp

X, y = dp.datasets.load_digits()
(X_train, y_train), (X_test, y_test) = dp.datasets.train_test_split(X, y, seed=0)
net = dp.Network(
    [64, 30, 10], activation="relu", output="softmax", cost="log_likelihood", init="he", seed=0
)
net.fit(X_train, y_train, epochs=10, batch_size=10, lr=0.1)

directory = tempfile.mkdtemp()
path = os.path.join(directory, "digits.onnx")
net.to_onnx(path)

session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
(probabilities,) = session.run(None, {"X": X_test})
difference = np.abs(probabilities - net.predict(X_test)).max()
print(f"largest difference between onnxruntime and deltaprop: {difference:.1e}")
assert difference < 1e-12

same = dp.Network.from_onnx(path)
assert all(np.array_equal(a, b) for a, b in zip(same.weights, net.weights))
print(f"test accuracy in onnxruntime {np.mean(probabilities.argmax(axis=1) == y_test):.4f}")

# %%
# Twelve test digits and the class onnxruntime gives each.
fig, axes = plt.subplots(2, 6, figsize=(8, 3.2), layout="constrained")
for ax, image, probability, label in zip(axes.flat, X_test, probabilities, y_test):
    ax.imshow(image.reshape(8, 8), cmap="gray_r")
    ax.set_title(f"{probability.argmax()} (true {label})", fontsize=9)
    ax.set_axis_off()
plt.show()
