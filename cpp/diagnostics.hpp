// What fit(diagnostics=True) measures while training, batch after batch, from the z^l and
// δ^l the trainer's forward and backward passes left in the Mlp's workspaces: a few
// passes over (B, n_l) arrays, next to GEMMs of (B, n_l) x (n_l, n_{l-1}). No Python here.
//
// The measures add up, over the batches of an epoch, into a float64 accumulator that
// Python zeroes before the epoch and reads after it (python/deltaprop/_diagnostics.py
// names the same layout):
//   [0]                    batches
//   [1]                    rows of this process
//   [2 + (l - 1)]          sum over batches of ||∂C/∂b^l|| (BP3), l = 1..L
//   [2 + L + (l - 1)]      (row, unit) pairs of layer l whose σ'(z) < 1% of its maximum,
//                          for sigmoid and tanh layers (0 for the others)
//   [2 + 2L ...]           one entry per unit of each relu layer, layer after layer:
//                          1 once the unit's z > 0 for some row
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <vector>

#include "mlp.hpp"

namespace deltaprop {

// |z| beyond which σ'(z) is below 1% of its maximum. tanh'(z) = 1 / cosh(z)^2 < 1/100
// when cosh(z) > 10; σ'(z) = 1 / (4 cosh(z/2)^2), whose maximum is 1/4, the same at z/2.
inline double saturation_threshold(Activation f) {
    const double tanh_threshold = std::acosh(10.0);  // 2.993...
    if (f == Activation::tanh) return tanh_threshold;
    if (f == Activation::sigmoid) return 2 * tanh_threshold;  // 5.986...
    return INFINITY;  // never saturated: the measure does not apply
}

// Entries of the accumulator of a network (see the layout above).
inline std::size_t diagnostics_size(const Architecture &arch) {
    const std::size_t L = arch.sizes.size() - 1;
    std::size_t size = 2 + 2 * L;
    for (std::size_t l = 1; l <= L; ++l) {
        const Activation f = l == L ? arch.output : arch.hidden[l - 1];
        if (f == Activation::relu) size += arch.sizes[l];
    }
    return size;
}

template <class T> class Diagnostics {
  public:
    // `accumulator` holds diagnostics_size(mlp.architecture()) values; it outlives *this.
    Diagnostics(const Mlp<T> &mlp, double *accumulator) : mlp_(mlp), sums_(accumulator) {
        std::size_t n_biases = 0;
        for (std::size_t l = 1; l <= mlp.n_layers(); ++l) n_biases += mlp.n_units(l);
        bias_gradient_.resize(n_biases);
    }

    // After the backward pass of a batch of this process's B rows (B = 0: none), whose
    // share of the batch's gradient is alpha times the sums over its rows of δ^l (BP3).
    // With `sum` (data-parallel training), the shares of ∂C/∂b are summed over the
    // processes before their norms are taken: every process then adds the same norms.
    void add_batch(std::size_t B, T alpha, const std::function<void(T *, std::size_t)> *sum) {
        const std::size_t L = mlp_.n_layers();
        bias_gradients(B, alpha);
        if (sum != nullptr) (*sum)(bias_gradient_.data(), bias_gradient_.size());
        sums_[0] += 1;
        sums_[1] += double(B);
        const T *gradient = bias_gradient_.data();
        double *active = sums_ + 2 + 2 * L;
        for (std::size_t l = 1; l <= L; ++l) {
            const std::size_t n = mlp_.n_units(l);
            double squares = 0;
            for (std::size_t j = 0; j < n; ++j) squares += double(gradient[j]) * double(gradient[j]);
            sums_[2 + (l - 1)] += std::sqrt(squares);
            gradient += n;
            const Activation f = mlp_.activation(l);
            if (f == Activation::sigmoid || f == Activation::tanh) {
                sums_[2 + L + (l - 1)] += double(saturated(l, B, T(saturation_threshold(f))));
            }
            if (f == Activation::relu) {
                mark_active(l, B, active);
                active += n;
            }
        }
    }

  private:
    // ∂C/∂b^l of this process's share of the batch, all layers one after the other:
    // alpha times the column sums of δ^l (B, n_l), summed in double.
    void bias_gradients(std::size_t B, T alpha) {
        T *out = bias_gradient_.data();
        std::vector<double> &column = column_sums_;
        for (std::size_t l = 1; l <= mlp_.n_layers(); ++l) {
            const std::size_t n = mlp_.n_units(l);
            column.assign(n, 0.0);
            const T *delta = mlp_.delta(l);
            for (std::size_t i = 0; i < B; ++i) {
                for (std::size_t j = 0; j < n; ++j) column[j] += double(delta[i * n + j]);
            }
            for (std::size_t j = 0; j < n; ++j) out[j] = T(double(alpha) * column[j]);
            out += n;
        }
    }

    // Entries of z^l (B, n_l) with |z| > threshold.
    std::size_t saturated(std::size_t l, std::size_t B, T threshold) const {
        const T *z = mlp_.z(l);
        std::size_t count = 0;
        for (std::size_t k = 0; k < B * mlp_.n_units(l); ++k) count += std::abs(z[k]) > threshold;
        return count;
    }

    // active[j] = 1 for the units j of layer l with z > 0 in some row of the batch: the
    // largest z of each unit, a pass that vectorises (a branch per entry took 13% of an
    // epoch of C), then one test per unit.
    void mark_active(std::size_t l, std::size_t B, double *active) {
        const std::size_t n = mlp_.n_units(l);
        const T *z = mlp_.z(l);
        largest_z_.assign(n, -INFINITY);
        T *largest = largest_z_.data();
        for (std::size_t i = 0; i < B; ++i) {
            const T *row = z + i * n;
            for (std::size_t j = 0; j < n; ++j) largest[j] = std::max(largest[j], row[j]);
        }
        for (std::size_t j = 0; j < n; ++j) {
            if (largest[j] > T(0)) active[j] = 1;
        }
    }

    const Mlp<T> &mlp_;
    double *sums_;
    Buffer<T> bias_gradient_;          // ∂C/∂b^l of every layer, this batch
    std::vector<double> column_sums_;  // of one layer's δ
    Buffer<T> largest_z_;              // of each unit of one relu layer, this batch
};

}  // namespace deltaprop
