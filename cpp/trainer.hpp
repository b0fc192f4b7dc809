// Mini-batch training of an Mlp: the batch loop over a call's rows, one batch step
// (forward + BP1, the statuses summed, backward into the route's destination, summed in
// buckets, each layer's update), and recovery from divergence (a snapshot of the
// parameters, replayed). The math is in mlp.hpp. No Python here.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "diagnostics.hpp"
#include "dropout.hpp"
#include "mlp.hpp"
#include "optimizers.hpp"
#include "reduction.hpp"
#include "rows.hpp"
#include "settings.hpp"
#include "sparse_training.hpp"
#include "update.hpp"

namespace deltaprop {

struct BatchOutcome {
    double cost;           // summed over the batch's samples
    double sample_weight;  // summed over the batch's samples
    BatchStatus status;
    bool stop_requested = false;  // by the reduction: the call ends after this batch
};

// The cost of the batches trained, or the batch that made training diverge.
struct TrainOutcome {
    double cost = 0;                   // summed over the batches' samples (times sample_weight)
    double sample_weight = 0;          // summed over the batches' samples
    std::int64_t diverged_batch = -1;  // -1: none; else the index of the batch within the call
    std::int64_t stopped_batch = -1;   // -1: none; else the last batch trained, on request
};

template <class T> class Trainer {
  public:
    explicit Trainer(Mlp<T> &mlp)
        : mlp_(mlp), batches_(mlp.n_inputs(), mlp.n_outputs()), updates_(mlp) {}

    // Mini-batch training over `rows` as `settings` say, each batch followed by an update
    // of params and state, its gradient summed by `reduction` first (over the processes
    // of data-parallel training; Alone: one process). Returns the cost of the batches as
    // seen, or, when training diverges, the first batch to blame: either its cost or
    // error was not finite, or its update made a parameter or the optimizer state
    // non-finite. params and state are then left as they were before that batch: the last
    // finite ones. With `diagnostics` (nullptr: none), each batch trained adds its
    // measures to them.
    TrainOutcome train(T *params, OptimizerState<T> &state, const Rows<T> &rows,
                       const TrainSettings &settings, Reduction<T> &reduction,
                       Diagnostics<T> *diagnostics = nullptr) {
        diagnostics_ = diagnostics;
        batches_.begin(rows, settings.batch_size);
        const std::size_t n_batches = batches_.count();
        // However train() ends, no worker may go on gathering rows of this call.
        const struct StopGatheringAhead {
            RowBatches<T> &batches;
            ~StopGatheringAhead() { batches.stop_gathering_ahead(); }
        } stop_gathering_ahead_at_exit{batches_};
        // The bfloat16 weight copies an update refreshed hold only within this call.
        mlp_.forget_refreshed_weight_copies();
        const struct ForgetRefreshedCopies {
            Mlp<T> &mlp;
            ~ForgetRefreshedCopies() { mlp.forget_refreshed_weight_copies(); }
        } forget_refreshed_copies_at_exit{mlp_};
        // Not in data-parallel training: every process would have to (a shard may be dense).
        sparse_alone_ = rows.sparse_X != nullptr && reduction.alone();
        const FirstLayerTransposed<T> transposed(mlp_, params, state, sparse_alone_,
                                                 transposition_);
        take_snapshot(params, state);
        begin_sequence(state, settings.rule);
        begin_lazy_velocity(settings.rule);
        TrainOutcome outcome;
        std::size_t trained = n_batches;
        for (std::size_t k = 0; k < n_batches; ++k) {
            const BatchOutcome seen =
                train_batch_or_restore(params, state, settings, reduction, k, k + 1 < n_batches);
            if (seen.status != BatchStatus::ok) {
                // Back to the parameters before the batch to blame: the previous one when
                // its update made a parameter non-finite (seen only by this batch's forward
                // pass), else this one.
                const std::size_t blamed =
                    seen.status == BatchStatus::parameters_not_finite && k > 0 ? k - 1 : k;
                replay(params, state, settings, reduction, blamed);
                return {0, 0, std::int64_t(blamed), -1};
            }
            outcome.cost += seen.cost;
            outcome.sample_weight += seen.sample_weight;
            if (seen.stop_requested) {
                outcome.stopped_batch = std::int64_t(k);
                trained = k + 1;
                break;
            }
        }
        finish_lazy_velocity(params, state, true);
        finish_lazy_velocity(params, state, true);
        // An update that made a parameter non-finite is seen by the next batch's forward
        // pass; the last batch's, here.
        if (!all_finite(params, mlp_.n_params())) {
            replay(params, state, settings, reduction, trained - 1);
            return {0, 0, std::int64_t(trained - 1), -1};
        }
        return outcome;
    }

  private:
    // An error within a batch (a reduction that throws: the network between the
    // processes failed) may leave its destination half summed: back to the snapshot,
    // then the error.
    BatchOutcome train_batch_or_restore(T *params, OptimizerState<T> &state,
                                        const TrainSettings &settings, Reduction<T> &reduction,
                                        std::size_t k, bool more_follow) {
        try {
            return train_batch(params, state, settings, reduction, k, more_follow);
        } catch (...) {
            restore_snapshot(params, state);
            finish_lazy_velocity(params, state, false);  // V as between two batches
            throw;
        }
    }

    // One training step on batch k (this process's rows of it): forward and BP1, the
    // statuses summed over the processes, then BP2-BP4 of this process's share of the
    // mean gradient into the route's destination, summed in buckets, and each layer's
    // update. Nothing changes when something is not finite in any process: a z (a
    // parameter is not: the forward pass carries any non-finite weight or bias into z) or
    // the cost or output error (the update would not be). `more_follow`: another batch of
    // the same sequence comes next (see begin_sequence).
    BatchOutcome train_batch(T *params, OptimizerState<T> &state, const TrainSettings &settings,
                             Reduction<T> &reduction, std::size_t k, bool more_follow) {
        const Batch<T> batch = batches_.at(k);
        lazy_.prepare(batch.X, batch.size, first_layer(params), first_layer(state.first));
        const BatchSums local = batch.size == 0 ? BatchSums{} : forward(params, settings, k, batch);
        const BatchSums total = reduction.sum_statuses(local);
        if (total.status != BatchStatus::ok) return {0, 0, total.status};
        ++*state.step;
        const StepScale<T> scale = reduction.scale(settings.rule, batch.size, local, total);
        Step<T> step = updates_.begin(params, state, settings.rule, scale, more_follow);
        if (lazy_.active()) step.lazy_first_layer = &lazy_;
        // The lead keeps what the destination holds; the others overwrite it.
        if (!reduction.lead()) step.into.weight_beta = step.into.bias_beta = T(0);
        Buckets<T> buckets(mlp_, updates_, reduction, step);
        if (batch.size > 0) {
            mlp_.backward(params, batch.X, batch.size, step.into,
                          [&](std::size_t l) { buckets.after_layer(l); });
        } else {  // BP4 and BP3 over no rows: beta times the destination
            for (std::size_t l = mlp_.n_layers(); l >= 1; --l) {
                updates_.scale_by_betas(step.into, l);
                buckets.after_layer(l);
            }
        }
        if (diagnostics_) diagnostics_->add_batch(batch.size, scale.alpha, reduction);
        if (!buckets.finite()) return {0, 0, BatchStatus::update_not_finite};
        return {total.cost, total.sample_weight, BatchStatus::ok, total.stop_requested};
    }

    // Forward and BP1 of this process's rows of batch k: their cost and sample weight.
    BatchSums forward(const T *params, const TrainSettings &settings, std::size_t k,
                      const Batch<T> &batch) {
        const std::size_t B = batch.size;
        if (!mlp_.forward(params, batch.X, B, draw_masks(settings, k, B), true)) {
            return {BatchStatus::parameters_not_finite};
        }
        const CostAndSampleWeight seen = mlp_.output_error(batch.Y, batch.sample_weight, B);
        if (!std::isfinite(seen.cost) || !mlp_.output_error_is_finite(B)) {
            return {BatchStatus::error_not_finite};
        }
        return {BatchStatus::ok, seen.cost, seen.sample_weight};
    }

    // The dropout masks of the B rows of batch k (nullptr: no dropout).
    const DropoutMasks<T> *draw_masks(const TrainSettings &settings, std::size_t k,
                                      std::size_t B) {
        if (settings.dropout == 0) return nullptr;
        draw_dropout_masks(mlp_, settings.dropout, settings.seed, settings.first_batch + k,
                           batches_.first_position(k), B, masks_);
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
    // dropout masks and arithmetic give the same parameters as the first time (with a
    // reduction, every process replays the same batches: they all saw the same sums).
    void replay(T *params, OptimizerState<T> &state, const TrainSettings &settings,
                Reduction<T> &reduction, std::size_t n_batches) {
        diagnostics_ = nullptr;  // the call raises: its diagnostics are not read
        restore_snapshot(params, state);
        begin_lazy_velocity(settings.rule);
        if (n_batches == 0) return;
        begin_sequence(state, settings.rule);
        for (std::size_t k = 0; k < n_batches; ++k) {
            train_batch(params, state, settings, reduction, k, k + 1 < n_batches);
        }
        finish_lazy_velocity(params, state, true);
    }

    // Momentum on sparse X trains the rows of W^1 its batches touch (LazyVelocity): not
    // with L1 or data-parallel training.
    void begin_lazy_velocity(const UpdateRule &rule) {
        const bool lazy = sparse_alone_ && rule.method == Method::momentum && rule.l1 == 0;
        lazy_.begin(lazy, mlp_.n_inputs(), mlp_.n_units(1), rule);
    }

    void finish_lazy_velocity(T *params, OptimizerState<T> &state, bool last_was_final) {
        if (lazy_.active()) {
            lazy_.finish(first_layer(params), first_layer(state.first), last_was_final);
        }
    }

    T *first_layer(T *array) const {
        return array == nullptr ? nullptr : array + mlp_.layer(1).weights;
    }

    void restore_snapshot(T *params, OptimizerState<T> &state) const {
        const std::size_t n = mlp_.n_params();
        std::copy(snapshot_.begin(), snapshot_.begin() + n, params);
        if (state.first) std::copy(&snapshot_[n], &snapshot_[2 * n], state.first);
        if (state.second) std::copy(&snapshot_[2 * n], &snapshot_[3 * n], state.second);
        *state.step = snapshot_step_;
        mlp_.forget_refreshed_weight_copies();
    }

    // Momentum keeps mu V, not V, between the batches of one call (the
    // velocity GEMM then adds the gradient with beta = 1, which spares OpenBLAS a scaling
    // pass over V); the last batch stores V itself. mu V is rounded (and flushed) exactly
    // as a GEMM with beta = mu would, so results do not depend on how batches are split
    // into calls.
    void begin_sequence(OptimizerState<T> &state, const UpdateRule &rule) const {
        if (rule.method != Method::momentum) return;
        const T mu = T(rule.momentum);
        T *velocity = state.first;
        for (std::size_t k = 0; k < mlp_.n_params(); ++k) {
            velocity[k] = flush_subnormal(mu * velocity[k]);
        }
    }

    Mlp<T> &mlp_;
    RowBatches<T> batches_;    // the call's rows, batch by batch
    Updates<T> updates_;       // the route of each batch's step, and each layer's update
    DropoutMasks<T> masks_;    // of the batch in training
    Buffer<T> transposition_;  // sparse X: the buffer of W^1's transpositions
    LazyVelocity<T> lazy_;     // momentum on sparse X
    bool sparse_alone_ = false;  // the call trains sparse X in one process
    std::vector<T> snapshot_;  // params (and optimizer state) at the start of train()
    std::int64_t snapshot_step_ = 0;
    Diagnostics<T> *diagnostics_ = nullptr;  // of the call in progress, if asked for
};

}  // namespace deltaprop
