"""Draw the README's figures of how networks learn, from real runs, into docs/_static/figures/.

    python docs/figures/make_readme_figures.py

- ``learning-speed-sigmoid-vs-relu.png``: each layer's speed of learning ||dC/db^l||
  (``fit(..., diagnostics=True)``, `deltaprop.plot.learning_speed`) of a deep sigmoid
  network ``[784, 30, 30, 30, 30, 10]`` and of the same network with ReLU and He
  initialisation, 10 epochs on 10,000 Fashion-MNIST training images (as the gallery's
  plot_learning_speed.py);
- ``saturated-neuron.png``: Nielsen's chapter-3 neuron (input 1, target 0), started at
  w = 0.6, b = 0.9 and at w = b = 2.0, with the quadratic cost and with the cross-entropy
  (as the gallery's plot_saturated_neuron.py).

Needs matplotlib and Fashion-MNIST (``apt-get install dataset-fashion-mnist``).
"""

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import deltaprop as dp

OUT = Path(__file__).resolve().parents[1] / "_static" / "figures"


def learning_speed_figure(path: Path) -> None:
    (X, y), _ = dp.datasets.load_fashion_mnist()
    X, y = X[:10_000], y[:10_000]
    sizes = [784, 30, 30, 30, 30, 10]
    networks = {
        "sigmoid": dict(activation="sigmoid"),
        "ReLU, He initialisation": dict(activation="relu", init="he"),
    }
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (name, options) in zip(axes, networks.items()):
        net = dp.Network(sizes, output="sigmoid", cost="cross_entropy", dtype="float32",
                         seed=0, **options)  # fmt: skip
        history = net.fit(X, y, epochs=10, batch_size=10, lr=0.1, diagnostics=True)
        dp.plot.learning_speed(history, ax=ax)
        ax.set_title(f"{name} [784, 30, 30, 30, 30, 10]", fontsize="medium")
        ax.legend(fontsize="small")
    axes[1].set_ylabel("")
    fig.savefig(path, dpi=80)


def saturated_neuron_figure(path: Path) -> None:
    X, Y = np.array([[1.0]]), np.array([[0.0]])
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (w, b) in zip(axes, ((0.6, 0.9), (2.0, 2.0))):
        for cost in ("quadratic", "cross_entropy"):
            net = dp.Network.from_params([np.array([[w]])], [np.array([b])], output="sigmoid",
                                         cost=cost)  # fmt: skip
            outputs = []
            for _ in range(300):
                outputs.append(float(net.predict(X)[0, 0]))
                net.fit(X, Y, epochs=1, batch_size=1, optimizer="sgd", lr=0.15, shuffle=False)
            ax.plot(outputs, label=cost.replace("_", "-"))
        ax.set_title(f"one sigmoid neuron, started at w = {w}, b = {b}", fontsize="medium")
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("output a (input 1, target 0)")
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    learning_speed_figure(OUT / "learning-speed-sigmoid-vs-relu.png")
    saturated_neuron_figure(OUT / "saturated-neuron.png")
    for png in sorted(OUT.glob("*.png")):
        print(f"{png}: {png.stat().st_size // 1024} KB")
