"""
scikit-learn: a Pipeline with GridSearchCV
==========================================

:class:`deltaprop.sklearn.DeltapropClassifier` is a scikit-learn estimator: it goes into a
``Pipeline`` behind a scaler and a ``GridSearchCV`` tunes its hyper-parameters by
cross-validation, here the L2 strength ``alpha`` and the hidden layer's width on the shipped
digits, with 3 folds and 2 processes.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import deltaprop as dp
from deltaprop.sklearn import DeltapropClassifier

X, y = dp.datasets.load_digits()
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)

pipeline = make_pipeline(
    StandardScaler(),
    DeltapropClassifier(max_iter=100, batch_size=32, tol=1e-3, n_iter_no_change=5, random_state=0),
)
grid = {
    "deltapropclassifier__alpha": [1e-4, 1e-2, 1.0],
    "deltapropclassifier__hidden_layer_sizes": [(16,), (64,)],
}
search = GridSearchCV(pipeline, grid, cv=3, n_jobs=2).fit(X_train, y_train)
print("best parameters:", search.best_params_)
print(f"cross-validated accuracy {search.best_score_:.4f}")
print(f"test accuracy {search.score(X_test, y_test):.4f}")

# %%
# The mean cross-validated accuracy of each cell of the grid.
alphas = grid["deltapropclassifier__alpha"]
widths = grid["deltapropclassifier__hidden_layer_sizes"]
scores = np.array(search.cv_results_["mean_test_score"]).reshape(len(alphas), len(widths))
fig, ax = plt.subplots(figsize=(5, 3.6), layout="constrained")
image = ax.imshow(scores, cmap="viridis")
ax.set_xticks(range(len(widths)), [str(width) for width in widths])
ax.set_yticks(range(len(alphas)), [str(alpha) for alpha in alphas])
ax.set_xlabel("hidden_layer_sizes")
ax.set_ylabel("alpha")
for (row, column), score in np.ndenumerate(scores):
    ax.text(column, row, f"{score:.3f}", ha="center", va="center", color="white")
fig.colorbar(image, label="mean CV accuracy")
plt.show()
