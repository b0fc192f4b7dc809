"""
A saturated neuron learns slowly: quadratic cost against cross-entropy
======================================================================

Nielsen's chapter-3 example: one sigmoid neuron, input 1, target 0, started at w = b = 2
(output 0.98, badly wrong and saturated). With the quadratic cost, BP1 gives
δ = (a - y) σ'(z), and σ'(z) is tiny on the flat part of the sigmoid: the neuron barely moves
for a hundred epochs. With the cross-entropy the σ'(z) cancels (δ = a - y) and it learns at
once. Learning rate 0.15, 300 epochs of one sample each.
"""

import matplotlib.pyplot as plt
import numpy as np

import deltaprop as dp

X = np.array([[1.0]])
Y = np.array([[0.0]])
curves = {}
for cost in ("quadratic", "cross_entropy"):
    net = dp.Network.from_params(
        [np.array([[2.0]])], [np.array([2.0])], output="sigmoid", cost=cost
    )
    outputs = []
    for _ in range(300):
        outputs.append(float(net.predict(X)[0, 0]))
        net.fit(X, Y, epochs=1, batch_size=1, optimizer="sgd", lr=0.15, shuffle=False)
    curves[cost] = outputs
    print(f"{cost:>13}: output after 50 epochs {outputs[50]:.3f}, after 300 {outputs[-1]:.3f}")

# The claim of the figure, checked: after 50 epochs the quadratic cost's neuron still outputs
# more than 0.9, the cross-entropy's less than 0.2.
assert curves["quadratic"][50] > 0.9 and curves["cross_entropy"][50] < 0.2

fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
for cost, outputs in curves.items():
    ax.plot(outputs, label=cost)
ax.set_xlabel("epoch")
ax.set_ylabel("output a (target 0)")
ax.set_title("One sigmoid neuron started at w = b = 2")
ax.legend()
plt.show()
