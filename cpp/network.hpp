// What deltaprop._core's Mlp32 and Mlp64 hold: a network's math, its trainer, and the
// lock that makes its calls one at a time. No Python here.
#pragma once

#include <cstddef>
#include <mutex>
#include <utility>

#include "diagnostics.hpp"
#include "mlp.hpp"
#include "reduction.hpp"
#include "rows.hpp"
#include "settings.hpp"
#include "trainer.hpp"

namespace deltaprop {

// Calls arrive from several threads (the GIL is released) and share the workspaces: one
// computation at a time.
template <class T> class Network {
  public:
    explicit Network(Architecture arch) : mlp_(std::move(arch)), trainer_(mlp_) {}

    const Mlp<T> &mlp() const { return mlp_; }

    void set_matmul_precision(MatmulPrecision precision) {
        std::lock_guard<std::mutex> lock(mutex_);
        mlp_.set_matmul_precision(precision);
    }

    void predict(const T *params, Input<T> X, std::size_t n, T *out) {
        std::lock_guard<std::mutex> lock(mutex_);
        mlp_.predict(params, X, n, out);
    }

    void layers(const T *params, Input<T> X, const T *Y, std::size_t n, T *z_out, T *a_out,
                T *delta_out) {
        std::lock_guard<std::mutex> lock(mutex_);
        mlp_.layers(params, X, Y, n, z_out, a_out, delta_out);
    }

    double cost(const T *params, Input<T> X, const T *Y, std::size_t n) {
        std::lock_guard<std::mutex> lock(mutex_);
        return mlp_.cost(params, X, Y, n);
    }

    double gradients(const T *params, Input<T> X, const T *Y, std::size_t B, T *grads) {
        std::lock_guard<std::mutex> lock(mutex_);
        return mlp_.gradients(params, X, Y, B, grads);
    }

    double objective(const T *params, Input<T> X, const T *Y, const T *sample_weight, std::size_t n,
                     double l2, double l1, T *grads) {
        std::lock_guard<std::mutex> lock(mutex_);
        return mlp_.objective(params, X, Y, sample_weight, n, l2, l1, grads);
    }

    double regularise(const T *params, double l2, double l1, T *grads) {
        std::lock_guard<std::mutex> lock(mutex_);
        return mlp_.regularise(params, l2, l1, grads);
    }

    // See Trainer::train; `diagnostics` (nullptr: none) is the accumulator of
    // diagnostics.hpp.
    TrainOutcome train(T *params, OptimizerState<T> &state, const Rows<T> &rows,
                       const TrainSettings &settings, Reduction<T> &reduction,
                       double *diagnostics = nullptr) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (diagnostics == nullptr) return trainer_.train(params, state, rows, settings, reduction);
        Diagnostics<T> measures(mlp_, diagnostics);
        return trainer_.train(params, state, rows, settings, reduction, &measures);
    }

  private:
    std::mutex mutex_;
    Mlp<T> mlp_;
    Trainer<T> trainer_;
};

}  // namespace deltaprop
