// BP1: the cost of a batch and the output error delta^L = dC/dz^L for each
// (output activation, cost) pair. Rows are samples: z, a, y, delta are (B, n).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>

#include "activations.hpp"

namespace deltaprop {

// The pairings the core accepts; anything else has no well-defined BP1 here.
inline void check_pairing(Activation output, Cost cost, std::size_t n_outputs) {
    if (output != Activation::sigmoid && output != Activation::softmax &&
        output != Activation::identity) {
        throw std::invalid_argument(
            "output: the output activation must be 'sigmoid', 'softmax' or 'identity'");
    }
    if (output == Activation::softmax && n_outputs < 2) {
        throw std::invalid_argument("output: softmax needs at least 2 output units");
    }
    if (cost == Cost::cross_entropy && output != Activation::sigmoid) {
        throw std::invalid_argument(
            "cost: 'cross_entropy' treats each output as an independent probability and needs "
            "output='sigmoid' (use 'log_likelihood' with softmax)");
    }
    if (cost == Cost::log_likelihood && output != Activation::softmax) {
        throw std::invalid_argument("cost: 'log_likelihood' needs output='softmax'");
    }
}

// log sum_j exp(z_j), stable.
template <class T> inline double log_sum_exp(const T *z, std::size_t n) {
    const double m = *std::max_element(z, z + n);
    double sum = 0;
    for (std::size_t j = 0; j < n; ++j) sum += std::exp(double(z[j]) - m);
    return m + std::log(sum);
}

// g <- delta = J^T g for one softmax row a: delta_j = a_j (g_j - sum_k g_k a_k).
// When a_m ~ 1 the bracket cancels for j = m; there it is evaluated as
// sum_{k != m} (g_m - g_k) a_k (using 1 - a_m = sum_{k != m} a_k), which is exact.
template <class T> void softmax_chain_rule(const T *a, T *g, std::size_t n) {
    const std::size_t m = std::size_t(std::max_element(a, a + n) - a);
    T g_dot_a = 0, others_g_dot_a = 0, others_a = 0;
    for (std::size_t k = 0; k < n; ++k) {
        g_dot_a += g[k] * a[k];
        if (k != m) {
            others_g_dot_a += g[k] * a[k];
            others_a += a[k];
        }
    }
    const T delta_m = a[m] * (g[m] * others_a - others_g_dot_a);
    for (std::size_t j = 0; j < n; ++j) g[j] = a[j] * (g[j] - g_dot_a);
    g[m] = delta_m;
}

// Quadratic cost 1/2 ||a - y||^2; BP1 delta = (a - y) ⊙ σ'(z) for an
// element-wise output. Softmax is not element-wise: there BP1 is the chain rule
// through its Jacobian, delta_j = a_j (g_j - sum_k g_k a_k) with g = a - y.
template <class T>
double quadratic_cost_and_delta(Activation output, const T *z, const T *a, const T *y, T *delta,
                                std::size_t B, std::size_t n, const T *derivative) {
    double cost = 0;
    for (std::size_t k = 0; k < B * n; ++k) {
        delta[k] = a[k] - y[k];
        cost += 0.5 * double(delta[k]) * double(delta[k]);
    }
    if (output != Activation::softmax) {
        if (derivative != nullptr) {
            multiply(delta, derivative, B * n);
        } else {
            multiply_by_derivative(output, T(0), z, delta, B * n);
        }
        return cost;
    }
    for (std::size_t i = 0; i < B; ++i) softmax_chain_rule(a + i * n, delta + i * n, n);
    return cost;
}

// Nielsen's cross-entropy, sum_j -[y ln a + (1-y) ln(1-a)] with a = σ(z),
// written as y softplus(-z) + (1-y) softplus(z) so that it never takes log(0).
// dC/da = (a-y) / (a(1-a)) and σ'(z) = a(1-a) cancel: delta = a - y exactly.
template <class T>
double cross_entropy_cost_and_delta(const T *z, const T *a, const T *y, T *delta,
                                    std::size_t count) {
    double cost = 0;
    for (std::size_t k = 0; k < count; ++k) {
        const double zk = z[k], yk = y[k];
        cost += yk * softplus(-zk) + (1 - yk) * softplus(zk);
        delta[k] = a[k] - y[k];
    }
    return cost;
}

// Log-likelihood -sum_j y_j ln a_j with ln a_j = z_j - logsumexp(z).
// delta_j = a_j sum_k y_k - y_j, which is a - y for one-hot targets.
template <class T>
double log_likelihood_cost_and_delta(const T *z, const T *a, const T *y, T *delta, std::size_t B,
                                     std::size_t n) {
    double cost = 0;
    for (std::size_t i = 0; i < B; ++i) {
        const T *z_row = z + i * n, *a_row = a + i * n, *y_row = y + i * n;
        T *delta_row = delta + i * n;
        const double lse = log_sum_exp(z_row, n);
        T y_sum = 0;
        for (std::size_t j = 0; j < n; ++j) {
            cost -= double(y_row[j]) * (double(z_row[j]) - lse);
            y_sum += y_row[j];
        }
        for (std::size_t j = 0; j < n; ++j) delta_row[j] = a_row[j] * y_sum - y_row[j];
    }
    return cost;
}

// Returns the summed (not averaged) cost of the B samples and writes delta^L;
// `derivative` is σ'(z^L) when the forward pass kept it, else nullptr.
template <class T>
double output_cost_and_delta(Activation output, Cost cost, const T *z, const T *a, const T *y,
                             T *delta, std::size_t B, std::size_t n,
                             const T *derivative = nullptr) {
    switch (cost) {
        case Cost::quadratic:
            return quadratic_cost_and_delta(output, z, a, y, delta, B, n, derivative);
        case Cost::cross_entropy: return cross_entropy_cost_and_delta(z, a, y, delta, B * n);
        case Cost::log_likelihood: return log_likelihood_cost_and_delta(z, a, y, delta, B, n);
    }
    return 0;
}

}  // namespace deltaprop
