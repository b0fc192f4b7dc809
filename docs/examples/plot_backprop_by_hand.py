"""
Backprop by hand
================

The four equations on a tiny network, computed three ways: step by step with numpy from
BP1-BP4 as written, by the pure-Python :mod:`deltaprop.reference`, and by the C++ core
(:meth:`deltaprop.Network.gradients`); then all three against central finite differences of
the cost. See :doc:`/guide/equations` for the lines that compute each equation.
"""

import matplotlib.pyplot as plt
import numpy as np

import deltaprop as dp

# A 2-3-2 network, sigmoid everywhere, quadratic cost: Nielsen's chapter-2 setting.
net = dp.Network([2, 3, 2], activation="sigmoid", output="sigmoid", cost="quadratic", seed=1)
x = np.array([0.5, -1.0])
y = np.array([1.0, 0.0])
W, b = net.weights, net.biases


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


# %%
# Forward pass: z^l = W^l a^(l-1) + b^l, a^l = σ(z^l).
a0 = x
z1 = W[0] @ a0 + b[0]
a1 = sigmoid(z1)
z2 = W[1] @ a1 + b[1]
a2 = sigmoid(z2)

# %%
# Backward pass, one equation per line. The quadratic cost C = ½‖a - y‖² has ∇_a C = a - y.
delta2 = (a2 - y) * a2 * (1 - a2)  # BP1: δ^L = ∇_a C ⊙ σ'(z^L)
delta1 = (W[1].T @ delta2) * a1 * (1 - a1)  # BP2: δ^l = ((W^(l+1))^T δ^(l+1)) ⊙ σ'(z^l)
db_hand = [delta1, delta2]  # BP3: ∂C/∂b^l = δ^l
dW_hand = [np.outer(delta1, a0), np.outer(delta2, a1)]  # BP4: ∂C/∂W^l = δ^l (a^(l-1))^T

# %%
# The core and the reference, on the same sample.
cost, dW_core, db_core = net.gradients(x[None, :], y[None, :])
_, dW_ref, db_ref = dp.reference.gradients(
    [w.tolist() for w in W],
    [v.tolist() for v in b],
    [x.tolist()],
    [y.tolist()],
    activation="sigmoid",
    output="sigmoid",
    cost="quadratic",
)


# %%
# Central finite differences of the cost in every weight, ε = 1e-6 (float64).
def numerical_weight_gradient(layer, eps=1e-6):
    grad = np.zeros_like(W[layer])
    for index in np.ndindex(grad.shape):
        saved = W[layer][index]
        W[layer][index] = saved + eps
        up = net.cost(x[None, :], y[None, :])
        W[layer][index] = saved - eps
        down = net.cost(x[None, :], y[None, :])
        W[layer][index] = saved
        grad[index] = (up - down) / (2 * eps)
    return grad


dW_numeric = [numerical_weight_gradient(layer) for layer in range(2)]

for layer in range(2):
    print(f"layer {layer + 1}:")
    print(f"  |hand - core|      = {np.abs(dW_hand[layer] - dW_core[layer]).max():.1e}")
    print(f"  |reference - core| = {np.abs(np.array(dW_ref[layer]) - dW_core[layer]).max():.1e}")
    print(f"  |numeric - core|   = {np.abs(dW_numeric[layer] - dW_core[layer]).max():.1e}")
    assert np.allclose(dW_hand[layer], dW_core[layer], rtol=0, atol=1e-12)
    assert np.allclose(db_hand[layer], db_core[layer], rtol=0, atol=1e-12)
    assert np.allclose(dW_ref[layer], dW_core[layer], rtol=0, atol=1e-12)
    assert np.allclose(dW_numeric[layer], dW_core[layer], rtol=0, atol=1e-8)

# %%
# The gradients of both layers, by hand (left) and from the core (right): the same numbers.
fig, axes = plt.subplots(2, 2, figsize=(7, 4.5), layout="constrained")
for layer in range(2):
    for column, (name, grad) in enumerate([("by hand", dW_hand), ("core", dW_core)]):
        ax = axes[layer, column]
        image = ax.imshow(grad[layer], cmap="RdBu", vmin=-0.1, vmax=0.1)
        ax.set_title(f"∂C/∂W^{layer + 1}, {name}")
        ax.set_xlabel("k (input unit)")
        ax.set_ylabel("j (output unit)")
fig.colorbar(image, ax=axes, shrink=0.8)
plt.show()
