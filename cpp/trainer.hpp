// Mini-batch training of an Mlp: the batch loop over the rows, the gathering of a
// batch's rows, dropout masks, the training step (forward + BP1, backward into the
// rule's destination, the optimizer's update) and recovery from divergence (a snapshot
// of the parameters, replayed). The math is in mlp.hpp. No Python here.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlp.hpp"
#include "optimizers.hpp"

namespace deltaprop {

// SplitMix64's output function (Steele, Lea and Flood): a 64-bit mixer.
inline std::uint64_t mix64(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// A small, fast generator for dropout masks (SplitMix64).
struct SplitMix64 {
    std::uint64_t state;
    std::uint64_t next() { return mix64(state += 0x9E3779B97F4A7C15ull); }
    double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // in [0, 1)
};

// The rows to train on and how: rows order[0..n_order) of X (n_rows, n_0), Y
// (n_rows, n_L) and optional sample_weight (n_rows,) (order == nullptr: rows
// 0..n_order in storage order), in batches of batch_size, the last one possibly
// smaller. Dropout masks of batch k come from (seed, first_batch + k) alone, so
// an epoch trained in several calls draws the same masks as in one.
template <class T> struct Rows {
    const T *X;
    const T *Y;
    const T *sample_weight;  // nullptr: every sample_weight is 1
    std::size_t n_rows;
    const std::int64_t *order;
    std::size_t n_order;
    std::size_t batch_size;
    double dropout;  // fraction of hidden units dropped, in [0, 1)
    std::uint64_t seed;
    std::uint64_t first_batch;
};

// What stopped a batch: a z not finite (the previous update made a parameter non-finite),
// its cost or output error not finite (no update made), or its own update left optimizer
// state non-finite under finite parameters (Adam's squared gradient overflowing).
enum class BatchStatus { ok, parameters_not_finite, error_not_finite, update_not_finite };

struct BatchOutcome {
    double cost;           // summed over the batch's samples
    double sample_weight;  // summed over the batch's samples
    BatchStatus status;
};

// Mean cost of the batches trained, or the batch that made training diverge.
struct TrainOutcome {
    double cost;
    std::int64_t diverged_batch;  // -1: none; else the index of the batch within the call
};

// Where a rule's update takes a batch's gradient. Plain SGD is network2.py's rule folded
// into the BP4 GEMM (W <- (1 - lr l2) W - (lr / B) δ^T a^{l-1}); momentum's BP4 GEMM
// adds the gradient to the velocity, which each layer's step then reads; every other
// update reads a gradient buffer (the one route that data-parallel training could take).
template <class T> struct Route {
    enum class Into { weights, velocity, buffer } into;
    GradientUpdate<T> update;  // into == buffer: the update that reads it
};

template <class T> Route<T> route_of(const UpdateRule &rule) {
    using Into = typename Route<T>::Into;
    switch (rule.method) {
        case Method::momentum: return {Into::velocity, nullptr};
        case Method::nesterov: return {Into::buffer, nesterov_update<T>};
        case Method::adam: return {Into::buffer, adam_update<T>};
        case Method::rprop: return {Into::buffer, rprop_update<T>};
        case Method::sgd: break;
    }
    // L1's sign(w) has no place in the GEMM.
    if (rule.l1 == 0) return {Into::weights, nullptr};
    return {Into::buffer, sgd_update<T>};
}

template <class T> class Trainer {
  public:
    explicit Trainer(Mlp<T> &mlp) : mlp_(mlp) {}

    // Mini-batch training over `rows`, each batch followed by an update of params and
    // state. Returns the mean cost of the batches as seen, or, when training diverges,
    // the first batch to blame: either its cost or error was not finite, or its update
    // made a parameter or the optimizer state non-finite. params and state are then left
    // as they were before that batch: the last finite ones.
    TrainOutcome train(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                       const Rows<T> &rows) {
        if (rows.order != nullptr) check_order(rows);
        const std::size_t n_batches = (rows.n_order - 1) / rows.batch_size + 1;
        take_snapshot(params, state);
        begin_sequence(state, rule);
        double total_cost = 0, total_sample_weight = 0;
        for (std::size_t k = 0; k < n_batches; ++k) {
            const BatchOutcome seen = train_batch(params, state, rule, rows, k, k + 1 < n_batches);
            if (seen.status != BatchStatus::ok) {
                // Back to the parameters before the batch to blame: the previous one when
                // its update made a parameter non-finite (seen only by this batch's forward
                // pass), else this one.
                const std::size_t blamed =
                    seen.status == BatchStatus::parameters_not_finite && k > 0 ? k - 1 : k;
                replay(params, state, rule, rows, blamed);
                return {0, std::int64_t(blamed)};
            }
            total_cost += seen.cost;
            total_sample_weight += seen.sample_weight;
        }
        // An update that made a parameter non-finite is seen by the next batch's forward
        // pass; the last batch's, here.
        if (!all_finite(params, mlp_.n_params())) {
            replay(params, state, rule, rows, n_batches - 1);
            return {0, std::int64_t(n_batches - 1)};
        }
        return {total_sample_weight > 0 ? total_cost / total_sample_weight : 0.0, -1};
    }

  private:
    // A mini-batch: B = size rows of X (B, n_0), Y (B, n_L) and sample_weight (B,) or
    // nullptr.
    struct Batch {
        const T *X;
        const T *Y;
        const T *sample_weight;
        std::size_t size;
    };

    // One training step on batch k, unless something is not finite: a z (a parameter
    // is not: the forward pass carries any non-finite weight or bias into z) or the cost
    // or output error (the update would not be). `more_follow`: another batch of the
    // same sequence comes next (see begin_sequence).
    BatchOutcome train_batch(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                             const Rows<T> &rows, std::size_t k, bool more_follow) {
        const Batch batch = batch_at(rows, k);
        const DropoutMasks<T> *masks = draw_masks(rows, k, batch.size);
        if (!mlp_.forward(params, batch.X, batch.size, masks, true)) {
            return {0, 0, BatchStatus::parameters_not_finite};
        }
        const CostAndSampleWeight seen =
            mlp_.output_error(batch.Y, batch.sample_weight, batch.size);
        if (!std::isfinite(seen.cost) || !mlp_.output_error_is_finite(batch.size)) {
            return {0, 0, BatchStatus::error_not_finite};
        }
        ++*state.step;
        const Route<T> route = route_of<T>(rule);
        backward(params, state, rule, route, batch, more_follow);
        // Data-parallel training would sum gradient_, seen.cost and seen.sample_weight here.
        if (route.update && !update_from_gradient(params, state, rule, route.update)) {
            return {0, 0, BatchStatus::update_not_finite};
        }
        return {seen.cost, seen.sample_weight, BatchStatus::ok};
    }

    // BP2-BP4 into the route's destination (see Route).
    void backward(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                  const Route<T> &route, const Batch &batch, bool more_follow) {
        using Into = typename Route<T>::Into;
        const std::size_t B = batch.size;
        switch (route.into) {
            case Into::weights: {
                const T lr_per_sample = T(rule.lr / double(B));
                const T decay = T(1 - rule.lr * rule.l2);
                mlp_.backward(params, batch.X, B, {params, -lr_per_sample, decay, T(1)});
                return;
            }
            case Into::velocity:
                // mu V is stored already (see begin_sequence): beta = 1.
                mlp_.backward(params, batch.X, B, {state.first, T(1) / T(B), T(1), T(1)},
                              [&](std::size_t l) {
                                  velocity_step(params, state.first, rule, l, more_follow);
                              });
                return;
            case Into::buffer:
                if (gradient_.size() < mlp_.n_params()) gradient_.resize(mlp_.n_params());
                mlp_.backward(params, batch.X, B, {gradient_.data(), T(1) / T(B), T(0), T(0)});
                return;
        }
    }

    // Momentum's step for layer l, right after BP4 and BP3 added its gradient to the
    // velocity (the update is memory-bound: W^l and V^l are still in cache). Only the
    // weights are regularised. The last batch of a call leaves V itself, the others mu V.
    void velocity_step(T *params, T *velocity, const UpdateRule &rule, std::size_t l,
                       bool more_follow) const {
        const LayerParams &layer = mlp_.layer(l);
        const T lr = T(rule.lr), l2 = T(rule.l2), l1 = T(rule.l1);
        const T decay = more_follow ? T(rule.momentum) : T(1);
        momentum_step(params + layer.weights, velocity + layer.weights,
                      layer.biases - layer.weights, lr, l2, l1, decay);
        momentum_step(params + layer.biases, velocity + layer.biases, layer.end - layer.biases, lr,
                      T(0), T(0), decay);
    }

    // Returns false when the update left optimizer state non-finite (see GradientUpdate).
    bool update_from_gradient(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                              GradientUpdate<T> update) const {
        bool finite = true;
        for (std::size_t l = 1; l <= mlp_.n_layers(); ++l) {
            const LayerParams &layer = mlp_.layer(l);
            finite &=
                update_segment(params, state, rule, update, layer.weights, layer.biases, true);
            finite &= update_segment(params, state, rule, update, layer.biases, layer.end, false);
        }
        return finite;
    }

    bool update_segment(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                        GradientUpdate<T> update, std::size_t begin, std::size_t end,
                        bool regularise) const {
        T *first = state.first ? state.first + begin : nullptr;
        T *second = state.second ? state.second + begin : nullptr;
        return update(rule, *state.step, params + begin, gradient_.data() + begin, first, second,
                      end - begin, regularise);
    }

    // Batch k of the rows: gathered through the order, or a slice of the data.
    Batch batch_at(const Rows<T> &rows, std::size_t k) {
        const std::size_t start = k * rows.batch_size;
        const std::size_t B = std::min(rows.batch_size, rows.n_order - start);
        if (rows.order != nullptr) return gather(rows, rows.order + start, B);
        return Batch{rows.X + start * mlp_.n_inputs(), rows.Y + start * mlp_.n_outputs(),
                     rows.sample_weight ? rows.sample_weight + start : nullptr, B};
    }

    // Copies the rows order[0..B) of X, Y (and sample_weight) into reused buffers.
    Batch gather(const Rows<T> &rows, const std::int64_t *order, std::size_t B) {
        const std::size_t n_in = mlp_.n_inputs(), n_out = mlp_.n_outputs();
        if (batch_x_.size() < B * n_in) batch_x_.resize(B * n_in);
        if (batch_y_.size() < B * n_out) batch_y_.resize(B * n_out);
        if (rows.sample_weight && batch_sample_weight_.size() < B) batch_sample_weight_.resize(B);
        for (std::size_t i = 0; i < B; ++i) {
            const std::size_t row = std::size_t(order[i]);
            std::memcpy(batch_x_.data() + i * n_in, rows.X + row * n_in, n_in * sizeof(T));
            std::memcpy(batch_y_.data() + i * n_out, rows.Y + row * n_out, n_out * sizeof(T));
            if (rows.sample_weight) batch_sample_weight_[i] = rows.sample_weight[row];
        }
        return Batch{batch_x_.data(), batch_y_.data(),
                     rows.sample_weight ? batch_sample_weight_.data() : nullptr, B};
    }

    // Inverted dropout for batch k (nullptr: none): each hidden unit is kept with
    // probability 1 - rate and then scaled by 1 / (1 - rate), so that prediction needs
    // no rescaling. The masks are drawn layer after layer from one generator.
    const DropoutMasks<T> *draw_masks(const Rows<T> &rows, std::size_t k, std::size_t B) {
        if (rows.dropout == 0) return nullptr;
        SplitMix64 rng{mix64(rows.seed ^ mix64(rows.first_batch + k))};
        const T scale = T(1) / T(1 - rows.dropout);
        masks_.resize(mlp_.n_layers());
        for (std::size_t l = 1; l < mlp_.n_layers(); ++l) {
            const std::size_t count = B * mlp_.n_units(l);
            if (masks_[l].size() < count) masks_[l].resize(count);
            T *mask = masks_[l].data();
            for (std::size_t i = 0; i < count; ++i) {
                mask[i] = rng.uniform() >= rows.dropout ? scale : T(0);
            }
        }
        return &masks_;
    }

    // The parameters and optimizer state at the start of train(), to go back to.
    void take_snapshot(const T *params, const OptimizerState<T> &state) {
        const std::size_t n = mlp_.n_params();
        const int arrays = 1 + (state.first != nullptr) + (state.second != nullptr);
        snapshot_.resize(std::size_t(arrays) * n);
        std::copy(params, params + n, snapshot_.begin());
        if (state.first) std::copy(state.first, state.first + n, &snapshot_[n]);
        if (state.second) std::copy(state.second, state.second + n, &snapshot_[2 * n]);
        snapshot_step_ = *state.step;
    }

    // Back to the snapshot, then batches 0..n_batches-1 again: the same rows,
    // dropout masks and arithmetic give the same parameters as the first time.
    void replay(T *params, OptimizerState<T> &state, const UpdateRule &rule, const Rows<T> &rows,
                std::size_t n_batches) {
        const std::size_t n = mlp_.n_params();
        std::copy(snapshot_.begin(), snapshot_.begin() + n, params);
        if (state.first) std::copy(&snapshot_[n], &snapshot_[2 * n], state.first);
        if (state.second) std::copy(&snapshot_[2 * n], &snapshot_[3 * n], state.second);
        *state.step = snapshot_step_;
        if (n_batches == 0) return;
        begin_sequence(state, rule);
        for (std::size_t k = 0; k < n_batches; ++k) {
            train_batch(params, state, rule, rows, k, k + 1 < n_batches);
        }
    }

    // Momentum keeps mu V, not V, between the batches of one call (the velocity GEMM
    // then adds the gradient with beta = 1, which spares OpenBLAS a scaling pass over
    // V); the last batch stores V itself. mu V is rounded (and flushed) exactly as a
    // GEMM with beta = mu would, so results do not depend on how batches are split
    // into calls.
    void begin_sequence(OptimizerState<T> &state, const UpdateRule &rule) const {
        if (rule.method != Method::momentum) return;
        const T mu = T(rule.momentum);
        T *velocity = state.first;
        for (std::size_t k = 0; k < mlp_.n_params(); ++k) {
            velocity[k] = flush_subnormal(mu * velocity[k]);
        }
    }

    static void check_order(const Rows<T> &rows) {
        for (std::size_t i = 0; i < rows.n_order; ++i) {
            const std::int64_t row = rows.order[i];
            if (row < 0 || std::uint64_t(row) >= rows.n_rows) {
                throw std::invalid_argument("order: index " + std::to_string(row) +
                                            " at position " + std::to_string(i) +
                                            " is outside [0, " + std::to_string(rows.n_rows) + ")");
            }
        }
    }

    Mlp<T> &mlp_;
    Buffer<T> batch_x_, batch_y_, batch_sample_weight_;  // gathered rows of a batch
    DropoutMasks<T> masks_;                              // of the batch in training
    Buffer<T> gradient_;       // ∂C/∂params of the batch, for the updates that read it
    std::vector<T> snapshot_;  // params (and optimizer state) at the start of train()
    std::int64_t snapshot_step_ = 0;
};

// What deltaprop._core's Mlp32 and Mlp64 hold: a network's math, its trainer, and a
// lock. Calls arrive from several threads (the GIL is released) and share the
// workspaces: one computation at a time.
template <class T> class Network {
  public:
    explicit Network(Architecture arch) : mlp_(std::move(arch)), trainer_(mlp_) {}

    const Mlp<T> &mlp() const { return mlp_; }

    void predict(const T *params, const T *X, std::size_t n, T *out) {
        std::lock_guard<std::mutex> lock(mutex_);
        mlp_.predict(params, X, n, out);
    }

    double cost(const T *params, const T *X, const T *Y, std::size_t n) {
        std::lock_guard<std::mutex> lock(mutex_);
        return mlp_.cost(params, X, Y, n);
    }

    double gradients(const T *params, const T *X, const T *Y, std::size_t B, T *grads) {
        std::lock_guard<std::mutex> lock(mutex_);
        return mlp_.gradients(params, X, Y, B, grads);
    }

    double objective(const T *params, const T *X, const T *Y, const T *sample_weight, std::size_t n,
                     double l2, double l1, T *grads) {
        std::lock_guard<std::mutex> lock(mutex_);
        return mlp_.objective(params, X, Y, sample_weight, n, l2, l1, grads);
    }

    TrainOutcome train(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                       const Rows<T> &rows) {
        std::lock_guard<std::mutex> lock(mutex_);
        return trainer_.train(params, state, rule, rows);
    }

  private:
    std::mutex mutex_;
    Mlp<T> mlp_;
    Trainer<T> trainer_;
};

}  // namespace deltaprop
