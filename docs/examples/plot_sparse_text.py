"""
Text classification on a sparse TF-IDF matrix
=============================================

scikit-learn's ``TfidfVectorizer`` turns documents into a ``scipy.sparse`` CSR matrix: one
column per word of the vocabulary, almost all of them zero in any one document.
:class:`deltaprop.sklearn.DeltapropClassifier` trains on that matrix as it is, without making
it dense: the first layer's products run sparse x dense in the core (see
:doc:`/guide/data`). Here the same classifier, from the same initial weights and row orders,
trains once on the CSR matrix and once on its dense copy; the learning curves agree up to
rounding, and the CSR matrix takes a fortieth of the dense copy's memory.

The corpus is generated, so that the example needs no download: 3,000 documents about six
topics, written with made-up words. Every document draws most of its words from one
vocabulary shared by all topics, with a vocabulary's Zipf-like frequencies, and 3% of
them from its topic's own 150 words.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import train_test_split

from deltaprop.sklearn import DeltapropClassifier

rng = np.random.default_rng(0)
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "sa", "do", "fu", "gi", "ha"]


def made_up_words(n):
    """`n` distinct words of three or four syllables."""
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLLABLES, size=rng.integers(3, 5))))
    return sorted(words)


N_TOPICS, TOPIC_WORDS, TOPIC_SHARE = 6, 150, 0.03
words = np.array(made_up_words(8000 + N_TOPICS * TOPIC_WORDS))
shared, topical = words[:8000], words[8000:].reshape(N_TOPICS, TOPIC_WORDS)
frequency = 1 / np.arange(10, 8010)  # Zipf-like: a few common words, a long tail
frequency /= frequency.sum()


def document(topic):
    """About 120 words: mostly shared ones, 3% from the topic's own words."""
    length = rng.poisson(120)
    own = rng.random(length) < TOPIC_SHARE
    text = np.where(
        own, rng.choice(topical[topic], size=length), rng.choice(shared, size=length, p=frequency)
    )
    return " ".join(text)


topics = rng.integers(0, N_TOPICS, 3000)
corpus = [document(topic) for topic in topics]
print(corpus[0][:120], "...")

# %%
# The TF-IDF features: a CSR matrix of float32 (the classifier's dtype, so that nothing is
# converted), rows of unit length.
vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2, dtype=np.float32)
X = vectorizer.fit_transform(corpus)
X_train, X_test, y_train, y_test = train_test_split(X, topics, test_size=0.3, random_state=0)
dense_bytes = X.shape[0] * X.shape[1] * X.dtype.itemsize
sparse_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
print(f"X: {X.shape[0]:,} documents x {X.shape[1]:,} words, {X.nnz / np.prod(X.shape):.2%} nonzero")
print(f"CSR: {sparse_bytes / 2**20:.1f} MiB; the same matrix dense: {dense_bytes / 2**20:.1f} MiB")

# %%
# One epoch at a time with ``partial_fit``, from the same ``random_state`` (same initial
# weights, same row orders), on the CSR matrix and on its dense copy.
EPOCHS = 12


def learning_curve(X_train, X_test):
    """Test accuracy after each epoch, and the seconds of the training epochs."""
    classifier = DeltapropClassifier(
        hidden_layer_sizes=(64,), learning_rate_init=1e-3, batch_size=32, alpha=1e-4,
        dtype="float32", random_state=0,
    )  # fmt: skip
    accuracies, seconds = [], 0.0
    for _ in range(EPOCHS):
        start = time.perf_counter()
        classifier.partial_fit(X_train, y_train, classes=np.arange(N_TOPICS))
        seconds += time.perf_counter() - start
        accuracies.append(classifier.score(X_test, y_test))
    return np.array(accuracies), seconds


sparse_curve, sparse_seconds = learning_curve(X_train, X_test)
dense_curve, dense_seconds = learning_curve(X_train.toarray(), X_test.toarray())
print(f"test accuracy after {EPOCHS} epochs: CSR {sparse_curve[-1]:.4f}, dense {dense_curve[-1]:.4f}")
print(f"largest difference between the curves: {np.abs(sparse_curve - dense_curve).max():.4f}")
print(f"training: CSR {sparse_seconds:.2f} s, dense {dense_seconds:.2f} s")

# %%
# The two learning curves lie on each other; the bars give the training time and the
# memory X takes in each form.
fig, (curve, cost) = plt.subplots(
    1, 2, figsize=(8.4, 3.4), width_ratios=(1.6, 1), layout="constrained"
)
epochs = np.arange(1, EPOCHS + 1)
curve.plot(epochs, dense_curve, "o-", color="0.7", linewidth=4, label="dense X")
curve.plot(epochs, sparse_curve, ".-", color="C0", label="CSR X")
curve.set_xlabel("epoch")
curve.set_ylabel("test accuracy")
curve.legend(frameon=False)
curve.set_title(f"{X.shape[1]:,} TF-IDF features, {N_TOPICS} topics", size=10)

forms = ["CSR", "dense"]
cost.bar(forms, [sparse_seconds, dense_seconds], color=["C0", "0.7"])
cost.set_ylabel(f"seconds for {EPOCHS} epochs")
memory = cost.twinx()
memory.plot(forms, [sparse_bytes / 2**20, dense_bytes / 2**20], "kD", label="X's memory")
memory.set_ylabel("X's memory (MiB), diamonds")
memory.set_ylim(0, None)
cost.set_title("time and memory", size=10)
plt.show()
