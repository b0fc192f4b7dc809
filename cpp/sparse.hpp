// Sparse inputs: the first layer's two products when X is a CSR matrix (bag-of-words,
// TF-IDF, one-hot), sparse x dense, on the rows of a batch read in place from the
// matrix (never densified). The forward pass's z^1 = X W^T and BP4's dW^1 = δ^T X;
// every other product of the network is dense and unchanged (there is no δ^0: BP2
// stops at layer 1). No Python here.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "blas.hpp"
#include "team.hpp"

namespace deltaprop {

// A CSR matrix (n_rows, n_cols): row r holds data[indptr[r]..indptr[r+1]) in the
// columns indices[indptr[r]..indptr[r+1]). Indices and row pointers are int32 or int64
// (scipy.sparse picks either); a column may appear in a row in any order, and twice
// (the products sum the entries, as a dense copy would).
template <class T> struct CsrMatrix {
    const T *data;
    const void *indices;
    bool indices_64;  // int64 (else int32) column indices
    const void *indptr;
    bool indptr_64;   // int64 (else int32) row pointers
    std::size_t nnz;  // the entries data and indices hold
    std::size_t n_rows, n_cols;
};

// Calls f(indices, indptr) with both arrays at their own integer types.
template <class T, class F> void with_index_types(const CsrMatrix<T> &X, F &&f) {
    const auto with_indptr = [&](const auto *indices) {
        if (X.indptr_64) {
            f(indices, static_cast<const std::int64_t *>(X.indptr));
        } else {
            f(indices, static_cast<const std::int32_t *>(X.indptr));
        }
    };
    if (X.indices_64) {
        with_indptr(static_cast<const std::int64_t *>(X.indices));
    } else {
        with_indptr(static_cast<const std::int32_t *>(X.indices));
    }
}

// The checks that keep every read of the products inside the arrays: indptr[0] = 0,
// row pointers that never decrease up to nnz, column indices in [0, n_cols). One pass
// over the indices: cheap beside a product, which reads them n_l / 4 times.
template <class T> void check_structure(const CsrMatrix<T> &X) {
    with_index_types(X, [&](const auto *indices, const auto *indptr) {
        if (indptr[0] != 0 || std::uint64_t(indptr[X.n_rows]) > X.nnz) {
            throw std::invalid_argument("X: indptr must start at 0 and end at most at nnz");
        }
        for (std::size_t r = 0; r < X.n_rows; ++r) {
            if (indptr[r + 1] < indptr[r]) {
                throw std::invalid_argument("X: indptr decreases at row " + std::to_string(r));
            }
        }
        for (std::size_t k = 0; k < std::size_t(indptr[X.n_rows]); ++k) {
            if (indices[k] < 0 || std::uint64_t(indices[k]) >= X.n_cols) {
                throw std::invalid_argument("X: column index " + std::to_string(indices[k]) +
                                            " is outside [0, " + std::to_string(X.n_cols) + ")");
            }
        }
    });
}

// A batch's inputs a^0: B dense rows (B, n_0), or B rows of a CSR matrix read in place,
// row order[i] (a shuffled epoch) or first + i.
template <class T> struct Input {
    const T *dense = nullptr;
    const CsrMatrix<T> *sparse = nullptr;
    const std::int64_t *order = nullptr;
    std::size_t first = 0;

    // Implicit: every dense caller passes its pointer as before.
    Input(const T *rows) : dense(rows) {}
    Input(const CsrMatrix<T> *matrix, const std::int64_t *rows, std::size_t first_row)
        : sparse(matrix), order(rows), first(first_row) {}

    // The rows from row `start` of these on (n_in: the dense rows' width).
    Input from(std::size_t start, std::size_t n_in) const {
        if (sparse == nullptr) return Input(dense + start * n_in);
        return order ? Input(sparse, order + start, 0) : Input(sparse, nullptr, first + start);
    }

    std::size_t row(std::size_t i) const { return order ? std::size_t(order[i]) : first + i; }
};

// Output units per block of the products: each pass over a row's entries serves four
// rows of W, and the four sums are independent (the core keeps them in flight at once).
constexpr std::size_t kUnitsPerBlock = 4;

// values <- beta values (count of them); beta = 0 writes zeros without reading, as BLAS.
template <class T> void scale(T *values, std::size_t count, T beta) {
    if (beta == T(0)) {
        std::fill(values, values + count, T(0));
    } else if (beta != T(1)) {
        for (std::size_t k = 0; k < count; ++k) values[k] *= beta;
    }
}

// The entries the B rows of X hold (they size the team's jobs).
template <class T> std::size_t entries_of(const Input<T> &X, std::size_t B) {
    std::size_t entries = 0;
    with_index_types(*X.sparse, [&](const auto *, const auto *indptr) {
        for (std::size_t i = 0; i < B; ++i) {
            const std::size_t r = X.row(i);
            entries += std::size_t(indptr[r + 1] - indptr[r]);
        }
    });
    return entries;
}

// The team shares n_out output units in whole blocks, each job at least kElementsPerJob
// entries times units: body(begin, end) on [begin, end) of the units.
template <class T, class Body>
void share_units(const Input<T> &X, std::size_t B, std::size_t n_out, const Body &body) {
    const std::size_t work = std::max<std::size_t>(1, entries_of(X, B) * kUnitsPerBlock);
    const std::size_t grain = std::max<std::size_t>(1, kElementsPerJob / work) * kUnitsPerBlock;
    Team::instance().parallel_for(n_out, grain, blas::get_num_threads(), body);
}

// The first layer's forward product, sparse x dense: z (B, n_out) = X (B, n_in) W^T for
// W (n_out, n_in) row-major, before the bias. N units j..j+N-1 at once: one pass over
// each row's entries gathers W[j..j+N-1, column] into N sums, in the entries' order (a
// dense GEMM sums the same products in an order of its own).
template <std::size_t N, class T, class Index, class Pointer>
void forward_units(const Input<T> &X, const Index *indices, const Pointer *indptr, std::size_t B,
                   const T *W, std::size_t j, std::size_t n_out, std::size_t n_in, T *z) {
    const T *data = X.sparse->data;
    for (std::size_t i = 0; i < B; ++i) {
        const std::size_t r = X.row(i);
        T sum[N] = {};
        for (auto k = indptr[r]; k < indptr[r + 1]; ++k) {
            const T *column = W + j * n_in + std::size_t(indices[k]);
            const T value = data[k];
            for (std::size_t u = 0; u < N; ++u) sum[u] += value * column[u * n_in];
        }
        for (std::size_t u = 0; u < N; ++u) z[i * n_out + j + u] = sum[u];
    }
}

template <class T>
void sparse_forward(const Input<T> &X, std::size_t B, const T *W, std::size_t n_out,
                    std::size_t n_in, T *z) {
    with_index_types(*X.sparse, [&](const auto *indices, const auto *indptr) {
        share_units(X, B, n_out, [&](std::size_t begin, std::size_t end) {
            std::size_t j = begin;
            for (; j + kUnitsPerBlock <= end; j += kUnitsPerBlock) {
                forward_units<kUnitsPerBlock>(X, indices, indptr, B, W, j, n_out, n_in, z);
            }
            for (; j < end; ++j) forward_units<1>(X, indices, indptr, B, W, j, n_out, n_in, z);
        });
    });
}

// BP4 of the first layer, dense x sparse: dW <- alpha δ^T X + beta dW, for δ (B, n_out),
// X (B, n_in) and dW (n_out, n_in) row-major. Each job owns whole rows of dW, scaled by
// beta first; then each entry x_ic of a row adds alpha δ_ij x_ic to dW[j, c] for N units
// j at once. A row whose N δs are all zero (ReLU's) adds nothing and is skipped.
template <std::size_t N, class T, class Index, class Pointer>
void gradient_units(const Input<T> &X, const Index *indices, const Pointer *indptr, std::size_t B,
                    const T *delta, std::size_t j, std::size_t n_out, std::size_t n_in, T alpha,
                    T *dW) {
    const T *data = X.sparse->data;
    for (std::size_t i = 0; i < B; ++i) {
        T d[N];
        bool any = false;
        for (std::size_t u = 0; u < N; ++u) {
            d[u] = alpha * delta[i * n_out + j + u];
            any |= d[u] != T(0);
        }
        if (!any) continue;
        const std::size_t r = X.row(i);
        for (auto k = indptr[r]; k < indptr[r + 1]; ++k) {
            T *column = dW + j * n_in + std::size_t(indices[k]);
            const T value = data[k];
            for (std::size_t u = 0; u < N; ++u) column[u * n_in] += d[u] * value;
        }
    }
}

template <class T>
void sparse_weight_gradient(const Input<T> &X, std::size_t B, const T *delta, std::size_t n_out,
                            std::size_t n_in, T alpha, T beta, T *dW) {
    with_index_types(*X.sparse, [&](const auto *indices, const auto *indptr) {
        share_units(X, B, n_out, [&](std::size_t begin, std::size_t end) {
            scale(dW + begin * n_in, (end - begin) * n_in, beta);
            std::size_t j = begin;
            for (; j + kUnitsPerBlock <= end; j += kUnitsPerBlock) {
                gradient_units<kUnitsPerBlock>(X, indices, indptr, B, delta, j, n_out, n_in, alpha,
                                               dW);
            }
            for (; j < end; ++j) {
                gradient_units<1>(X, indices, indptr, B, delta, j, n_out, n_in, alpha, dW);
            }
        });
    });
}

// Training on sparse X keeps W^1 transposed, (n_in, n_out) row-major (see
// sparse_training.hpp): a row's entry x_ic then meets W^1's column c as one contiguous
// row of n_out weights (an AXPY), where the (n_out, n_in) layout reads n_out weights
// n_in apart, each on a cache line of its own, and the product reads all of W^1 from
// memory where this one reads only the rows of the batch's columns.

// to (cols, rows) = from (rows, cols)^T, in tiles that keep both sides' cache lines, the
// team sharing the tiles' rows of `from`.
template <class T> void transpose(const T *from, std::size_t rows, std::size_t cols, T *to) {
    constexpr std::size_t kTile = 32;
    Team::instance().parallel_for(
        rows, kTile, blas::get_num_threads(), [=](std::size_t begin, std::size_t end) {
            for (std::size_t r0 = begin; r0 < end; r0 += kTile) {
                const std::size_t r1 = std::min(end, r0 + kTile);
                for (std::size_t c0 = 0; c0 < cols; c0 += kTile) {
                    const std::size_t c1 = std::min(cols, c0 + kTile);
                    for (std::size_t r = r0; r < r1; ++r) {
                        for (std::size_t c = c0; c < c1; ++c) to[c * rows + r] = from[r * cols + c];
                    }
                }
            }
        });
}

// Output units per job of the transposed products: whole cache lines of a row of z or
// of W^T, so that no two jobs write the same line.
constexpr std::size_t kUnitsPerLine = 16;

// The team shares the n_out units of the transposed products in whole lines, each job
// at least kElementsPerJob entries times units: body(begin, end) on [begin, end).
template <class T, class Body>
void share_unit_lines(const Input<T> &X, std::size_t B, std::size_t n_out, const Body &body) {
    const std::size_t work = std::max<std::size_t>(1, entries_of(X, B) * kUnitsPerLine);
    const std::size_t grain = std::max<std::size_t>(1, kElementsPerJob / work) * kUnitsPerLine;
    Team::instance().parallel_for(n_out, grain, blas::get_num_threads(), body);
}

// The forward product on Wt = (W^1)^T (n_in, n_out): z (B, n_out) = X Wt, each row of z
// the sum of its entries' rows of Wt times their values, in the entries' order (the
// sums of sparse_forward).
template <class T>
void sparse_forward_transposed(const Input<T> &X, std::size_t B, const T *Wt, std::size_t n_out,
                               T *z) {
    const T *data = X.sparse->data;
    with_index_types(*X.sparse, [&](const auto *indices, const auto *indptr) {
        share_unit_lines(X, B, n_out, [&](std::size_t begin, std::size_t end) {
            for (std::size_t i = 0; i < B; ++i) {
                const std::size_t r = X.row(i);
                T *z_row = z + i * n_out;
                std::fill(z_row + begin, z_row + end, T(0));
                for (auto k = indptr[r]; k < indptr[r + 1]; ++k) {
                    const T *weights = Wt + std::size_t(indices[k]) * n_out;
                    const T value = data[k];
                    for (std::size_t j = begin; j < end; ++j) z_row[j] += value * weights[j];
                }
            }
        });
    });
}

// BP4 of the first layer on the transposed gradient: dW^T (n_in, n_out) <- alpha X^T δ +
// beta dW^T; entry x_ic adds (alpha δ_ij) x_ic to dW^T[c, j], rows i in order (the sums
// of sparse_weight_gradient). A row of δ all zero over a job's units adds nothing.
template <class T>
void sparse_weight_gradient_transposed(const Input<T> &X, std::size_t B, const T *delta,
                                       std::size_t n_out, std::size_t n_in, T alpha, T beta,
                                       T *dWt) {
    if (beta != T(1)) {
        Team::instance().parallel_for(n_in * n_out, kElementsPerJob, blas::get_num_threads(),
                                      [=](std::size_t begin, std::size_t end) {
                                          scale(dWt + begin, end - begin, beta);
                                      });
    }
    const T *data = X.sparse->data;
    with_index_types(*X.sparse, [&](const auto *indices, const auto *indptr) {
        share_unit_lines(X, B, n_out, [&](std::size_t begin, std::size_t end) {
            for (std::size_t i = 0; i < B; ++i) {
                const T *d = delta + i * n_out;
                if (std::all_of(d + begin, d + end, [](T x) { return x == T(0); })) continue;
                const std::size_t r = X.row(i);
                for (auto k = indptr[r]; k < indptr[r + 1]; ++k) {
                    T *row = dWt + std::size_t(indices[k]) * n_out;
                    const T value = data[k];
                    for (std::size_t j = begin; j < end; ++j) row[j] += (alpha * d[j]) * value;
                }
            }
        });
    });
}

}  // namespace deltaprop
