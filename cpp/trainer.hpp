// Mini-batch training of an Mlp: the batch loop over the rows, the gathering of a
// batch's rows, dropout masks, the training step (forward + BP1, backward into the
// rule's destination, the optimizer's update) and recovery from divergence (a snapshot
// of the parameters, replayed). The math is in mlp.hpp. No Python here.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "diagnostics.hpp"
#include "mlp.hpp"
#include "optimizers.hpp"
#include "sparse_training.hpp"
#include "team.hpp"

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

// Data-parallel training, where several processes each train some rows of every batch:
// this process's share. Batch k of a call is positions [begin[k], end[k]) of the order
// (possibly none), the first of which is row position[k] of the global batch.
struct Shares {
    const std::int64_t *begin;
    const std::int64_t *end;
    const std::int64_t *position;
    std::size_t n_batches;
};

// The rows to train on and how: rows order[0..n_order) of X (n_rows, n_0), Y
// (n_rows, n_L) and optional sample_weight (n_rows,) (order == nullptr: rows
// 0..n_order in storage order), in batches of batch_size, the last one possibly
// smaller, or as `shares` says. Row i of the global batch first_batch + k draws its
// dropout masks from (seed, first_batch + k, i) alone, so an epoch trained in several
// calls, or by several processes, draws the same masks as in one.
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
    const Shares *shares;                    // nullptr: one process trains every row
    const CsrMatrix<T> *sparse_X = nullptr;  // else X (nullptr): its rows are read in place
};

// What the processes of data-parallel training sum for each batch before its backward
// pass: the statuses that decide the batch, and the total sample weight the mean needs.
enum ReductionTail : std::size_t {
    tail_cost,                   // summed over the batch's samples (times sample_weight)
    tail_sample_weight,          // summed over the batch's samples
    tail_parameters_not_finite,  // processes whose forward pass was not finite
    tail_error_not_finite,       // processes whose cost or output error was not finite
    tail_stop,                   // requests to stop after this batch (set by sum_statuses)
    kReductionTail
};

// The per-batch seam of data-parallel training: two sums over every process, in place
// (MPI allreduces, outside the core). After the forward pass and BP1, sum_statuses adds
// up the kReductionTail statuses (and may ask to stop); then BP2-BP4 write this
// process's share of the mean gradient into the route's destination (see Route), which
// sum adds up: the velocity or the parameters themselves where one process's BP4 GEMM
// writes them, else a gradient buffer. The lead process alone adds what every process
// holds (mu V, the decayed W) to its share, so that the sum counts it once.
//
// The step is summed in buckets, as PyTorch's DDP does: layers from the top down until
// their parameters reach bucket_bytes (or the input layer), each bucket summed as soon as
// BP4 and BP3 have written it and its layers updated at once, while W and V are still in
// cache (the update reads them right after the sum wrote them).
template <class T> struct Reduction {
    std::function<void(T *values, std::size_t count)> sum_statuses;
    std::function<void(T *values, std::size_t count)> sum;
    bool lead;
    std::size_t bucket_bytes;
};
// What stopped a batch: a z not finite (the previous update made a parameter non-finite),
// its cost or output error not finite (no update made), or its own update left optimizer
// state non-finite under finite parameters (Adam's squared gradient overflowing).
enum class BatchStatus { ok, parameters_not_finite, error_not_finite, update_not_finite };

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

// The update of each method that reads a gradient buffer.
template <class T> GradientUpdate<T> gradient_update(Method method) {
    switch (method) {
        case Method::sgd: return sgd_update<T>;
        case Method::momentum: return nullptr;  // its BP4 GEMM writes the velocity
        case Method::nesterov: return nesterov_update<T>;
        case Method::adam: return adam_update<T>;
        case Method::rprop: return rprop_update<T>;
    }
    return nullptr;
}

// Where a rule's update takes a batch's gradient. Plain SGD is network2.py's rule folded
// into the BP4 GEMM (W <- (1 - lr l2) W - (lr / B) δ^T a^{l-1}); momentum's BP4 GEMM adds
// the gradient to the velocity, which each layer's step then reads; every other update
// reads a gradient buffer. Data-parallel training sums the same destinations over the
// processes (see Reduction): no buffer beside W and V for SGD and momentum.
template <class T> struct Route {
    enum class Into { weights, velocity, buffer } into;
    GradientUpdate<T> update;  // into == buffer: the update that reads it
};

template <class T> Route<T> route_of(const UpdateRule &rule) {
    using Into = typename Route<T>::Into;
    if (rule.method == Method::momentum) return {Into::velocity, nullptr};
    // L1's sign(w) has no place in the GEMM.
    if (rule.method == Method::sgd && rule.l1 == 0) return {Into::weights, nullptr};
    return {Into::buffer, gradient_update<T>(rule.method)};
}

// The rows order[0..B) of X, Y (and sample_weight) copied into buffers of their own:
// by the call that needs them (finish), or ahead of it, one row at a time, by the team's
// workers when idle (a Team::IdleWork) while the batch before is trained. Random rows
// of a large X come from memory, and gathering a batch took a few percent of an epoch
// of C: the workers' idle moments (while the calling thread runs the small output
// layer's products, say) now take most of it.
template <class T> class GatheredRows final : public Team::IdleWork {
  public:
    // Sized for B rows, none copied yet.
    void prepare(const Rows<T> &rows, const std::int64_t *order, std::size_t B, std::size_t n_in,
                 std::size_t n_out) {
        rows_ = &rows;
        order_ = order;
        size_ = B;
        n_in_ = n_in;
        n_out_ = n_out;
        if (rows.X && x_.size() < B * n_in) x_.resize(B * n_in);
        if (y_.size() < B * n_out) y_.resize(B * n_out);
        if (rows.sample_weight && sample_weight_.size() < B) sample_weight_.resize(B);
        claimed_.store(0, std::memory_order_relaxed);
    }

    // The next row nobody claimed, if any (a worker's piece of idle work).
    bool do_one() override {
        const std::size_t i = claimed_.fetch_add(1, std::memory_order_relaxed);
        if (i >= size_) return false;
        copy(i, i + 1);
        return true;
    }

    // Copies the rows nobody claimed on the team's threads; then all B rows are in place.
    // The workers must be done with their pieces (Team::withdraw_idle_work).
    void finish(int threads) {
        const std::size_t from = std::min(claimed_.exchange(size_), size_);
        // At least 32 KB of rows per job: the rows come from memory a few cache lines at
        // a time, and the team's cores fetch them side by side.
        const std::size_t rows_per_job = std::max<std::size_t>(1, (32 << 10) / (n_in_ * sizeof(T)));
        Team::instance().parallel_for(
            size_ - from, rows_per_job, threads,
            [&](std::size_t begin, std::size_t end) { copy(from + begin, from + end); });
    }

    const T *X() const { return x_.data(); }
    const T *Y() const { return y_.data(); }
    const T *sample_weight() const {
        return rows_->sample_weight ? sample_weight_.data() : nullptr;
    }

  private:
    // Rows [begin, end), each X row's cache lines asked for a few rows ahead of its copy:
    // the hardware prefetcher does not cross from one scattered row to the next.
    void copy(std::size_t begin, std::size_t end) {
        constexpr std::size_t kRowsAhead = 2, kLine = 64;
        const Rows<T> &rows = *rows_;
        for (std::size_t i = begin; i < end; ++i) {
            if (rows.X && i + kRowsAhead < size_) {
                const char *ahead = reinterpret_cast<const char *>(
                    rows.X + std::size_t(order_[i + kRowsAhead]) * n_in_);
                for (std::size_t at = 0; at < n_in_ * sizeof(T); at += kLine) {
                    __builtin_prefetch(ahead + at);
                }
            }
            const std::size_t row = std::size_t(order_[i]);
            if (rows.X) std::memcpy(x_.data() + i * n_in_, rows.X + row * n_in_, n_in_ * sizeof(T));
            std::memcpy(y_.data() + i * n_out_, rows.Y + row * n_out_, n_out_ * sizeof(T));
            if (rows.sample_weight) sample_weight_.data()[i] = rows.sample_weight[row];
        }
    }

    const Rows<T> *rows_ = nullptr;
    const std::int64_t *order_ = nullptr;
    std::size_t size_ = 0, n_in_ = 0, n_out_ = 0;
    Buffer<T> x_, y_, sample_weight_;
    std::atomic<std::size_t> claimed_{0};  // rows [0, claimed_) are someone's to copy
};

template <class T> class Trainer {
  public:
    explicit Trainer(Mlp<T> &mlp) : mlp_(mlp) {}

    // Mini-batch training over `rows`, each batch followed by an update of params and
    // state; with a `reduction` (nullptr: none), each batch's gradient is summed over the
    // processes of data-parallel training first. Returns the cost of the batches as seen,
    // or, when training diverges, the first batch to blame: either its cost or error was
    // not finite, or its update made a parameter or the optimizer state non-finite.
    // params and state are then left as they were before that batch: the last finite ones.
    // With `diagnostics` (nullptr: none), each batch trained adds its measures to them.
    TrainOutcome train(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                       const Rows<T> &rows, const Reduction<T> *reduction,
                       Diagnostics<T> *diagnostics = nullptr) {
        diagnostics_ = diagnostics;
        if (rows.order != nullptr) check_order(rows);
        if (rows.shares != nullptr) check_shares(rows);
        const std::size_t n_batches = batch_count(rows);
        // However train() ends, no worker may go on gathering rows of this call.
        const struct StopGatheringAhead {
            Trainer &trainer;
            ~StopGatheringAhead() { trainer.stop_gathering_ahead(); }
        } stop_gathering_ahead_at_exit{*this};
        // Not in data-parallel training: every process would have to (a shard may be dense).
        const FirstLayerTransposed<T> transposed(
            mlp_, params, state, rows.sparse_X != nullptr && reduction == nullptr, transposition_);
        take_snapshot(params, state);
        begin_sequence(state, rule);
        begin_lazy_velocity(rows, reduction, rule);
        TrainOutcome outcome;
        std::size_t trained = n_batches;
        for (std::size_t k = 0; k < n_batches; ++k) {
            const BatchOutcome seen =
                train_batch_or_restore(params, state, rule, rows, reduction, k, n_batches);
            if (seen.status != BatchStatus::ok) {
                // Back to the parameters before the batch to blame: the previous one when
                // its update made a parameter non-finite (seen only by this batch's forward
                // pass), else this one.
                const std::size_t blamed =
                    seen.status == BatchStatus::parameters_not_finite && k > 0 ? k - 1 : k;
                replay(params, state, rule, rows, reduction, blamed);
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
        // An update that made a parameter non-finite is seen by the next batch's forward
        // pass; the last batch's, here.
        if (!all_finite(params, mlp_.n_params())) {
            replay(params, state, rule, rows, reduction, trained - 1);
            return {0, 0, std::int64_t(trained - 1), -1};
        }
        return outcome;
    }

  private:
    // A mini-batch: B = size rows of X (B, n_0), Y (B, n_L) and sample_weight (B,) or
    // nullptr.
    struct Batch {
        Input<T> X;
        const T *Y;
        const T *sample_weight;
        std::size_t size;
    };

    BatchOutcome train_batch(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                             const Rows<T> &rows, const Reduction<T> *reduction, std::size_t k,
                             bool more_follow) {
        if (reduction != nullptr) {
            return train_shared_batch(params, state, rule, rows, *reduction, k, more_follow);
        }
        return train_own_batch(params, state, rule, rows, k, more_follow);
    }

    // A reduction that throws (the network between the processes failed) may leave the
    // destination of the batch half summed: back to the snapshot, then the error.
    BatchOutcome train_batch_or_restore(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                                        const Rows<T> &rows, const Reduction<T> *reduction,
                                        std::size_t k, std::size_t n_batches) {
        try {
            return train_batch(params, state, rule, rows, reduction, k, k + 1 < n_batches);
        } catch (...) {
            if (reduction != nullptr) restore_snapshot(params, state);
            finish_lazy_velocity(params, state, false);  // V as between two batches
            throw;
        }
    }

    // One training step on batch k, unless something is not finite: a z (a parameter
    // is not: the forward pass carries any non-finite weight or bias into z) or the cost
    // or output error (the update would not be). `more_follow`: another batch of the
    // same sequence comes next (see begin_sequence).
    BatchOutcome train_own_batch(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                                 const Rows<T> &rows, std::size_t k, bool more_follow) {
        const Batch batch = batch_at(rows, k);
        lazy_.prepare(batch.X, batch.size, first_layer(params), first_layer(state.first));
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
        if (diagnostics_) diagnostics_->add_batch(batch.size, T(1) / T(batch.size), nullptr);
        if (route.update &&
            !update_from_gradient(params, state, rule, route.update, gradient_.data())) {
            return {0, 0, BatchStatus::update_not_finite};
        }
        return {seen.cost, seen.sample_weight, BatchStatus::ok};
    }

    // One step of data-parallel training on batch k: this process's rows of it forward
    // and through BP1, the statuses summed over every process, then BP2-BP4 of this
    // process's share of the mean gradient into the route's destination, summed, and the
    // update. Every process then holds the same sums and takes the same decisions: a cost
    // or error not finite in any process stops them all at this batch, before any
    // parameter or state changed.
    BatchOutcome train_shared_batch(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                                    const Rows<T> &rows, const Reduction<T> &reduction,
                                    std::size_t k, bool more_follow) {
        const Batch batch = batch_at(rows, k);
        std::array<T, kReductionTail> statuses{};
        T *tail = statuses.data();
        double local_weight = 0;  // this process's sample weight in the batch
        const BatchStatus local =
            batch.size == 0 ? BatchStatus::ok : forward(params, rows, k, batch, tail, local_weight);
        if (local == BatchStatus::parameters_not_finite) tail[tail_parameters_not_finite] = 1;
        if (local == BatchStatus::error_not_finite) tail[tail_error_not_finite] = 1;
        reduction.sum_statuses(tail, kReductionTail);
        if (tail[tail_parameters_not_finite] > 0) return {0, 0, BatchStatus::parameters_not_finite};
        if (tail[tail_error_not_finite] > 0) return {0, 0, BatchStatus::error_not_finite};
        const double total_weight = double(tail[tail_sample_weight]);
        ++*state.step;
        // BP1 scaled the rows of δ^L for a mean over this process's B rows (by
        // w_i B / sum(w) with sample weights); alpha = sum(w) / (B total_weight) makes
        // BP3 and BP4 this process's share of the mean over the global batch.
        const T alpha = batch.size == 0 || total_weight <= 0
                            ? T(0)
                            : T(local_weight / double(batch.size) / total_weight);
        const Route<T> route = route_of<T>(rule);
        GradientDestination<T> into =
            destination(params, state, rule, route, alpha, T(-rule.lr) * alpha);
        // The lead keeps what the destination holds; the others overwrite it.
        if (!reduction.lead) into.weight_beta = into.bias_beta = T(0);
        SharedStep step{params, state, rule, route, into, reduction, more_follow, mlp_.n_layers()};
        if (batch.size > 0) {
            mlp_.backward(params, batch.X, batch.size, into,
                          [&](std::size_t l) { sum_bucket_below(step, l); });
        } else {  // BP4 and BP3 over no rows: beta times the destination
            for (std::size_t l = mlp_.n_layers(); l >= 1; --l) {
                scale_by_betas(into, l);
                sum_bucket_below(step, l);
            }
        }
        if (diagnostics_) diagnostics_->add_batch(batch.size, alpha, &reduction.sum);
        if (!step.finite) return {0, 0, BatchStatus::update_not_finite};
        return {double(tail[tail_cost]), total_weight, BatchStatus::ok, tail[tail_stop] > 0};
    }

    // Forward and BP1 of this process's rows of batch k; their cost and sample weight
    // into the statuses, and the sample weight unrounded into `sample_weight`.
    BatchStatus forward(const T *params, const Rows<T> &rows, std::size_t k, const Batch &batch,
                        T *statuses, double &sample_weight) {
        const std::size_t B = batch.size;
        if (!mlp_.forward(params, batch.X, B, draw_masks(rows, k, B), true)) {
            return BatchStatus::parameters_not_finite;
        }
        const CostAndSampleWeight seen = mlp_.output_error(batch.Y, batch.sample_weight, B);
        if (!std::isfinite(seen.cost) || !mlp_.output_error_is_finite(B)) {
            return BatchStatus::error_not_finite;
        }
        statuses[tail_cost] = T(seen.cost);
        statuses[tail_sample_weight] = T(seen.sample_weight);
        sample_weight = seen.sample_weight;
        return BatchStatus::ok;
    }

    // Where BP4 and BP3 write the route's share of the step, and how: the gradient times
    // alpha (a gradient buffer, the velocity, which holds mu V already: see
    // begin_sequence), or the weights' step times -lr folded into W itself with its L2
    // decay (weight_step: -lr alpha, rounded as the caller needs it).
    GradientDestination<T> destination(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                                       const Route<T> &route, T alpha, T weight_step) {
        using Into = typename Route<T>::Into;
        switch (route.into) {
            case Into::weights: return {params, weight_step, T(1 - rule.lr * rule.l2), T(1)};
            case Into::velocity: return {state.first, alpha, T(1), T(1)};
            case Into::buffer: break;
        }
        if (gradient_.size() < mlp_.n_params()) gradient_.resize(mlp_.n_params());
        return {gradient_.data(), alpha, T(0), T(0)};
    }

    // What a BP4 and BP3 of layer l over no rows leave in the destination: beta times its
    // content (beta = 0 writes zeros, whatever was there).
    void scale_by_betas(const GradientDestination<T> &into, std::size_t l) const {
        const auto scale = [](T *begin, T *end, T beta) {
            if (beta == T(0)) std::fill(begin, end, T(0));
            if (beta != T(0) && beta != T(1)) {
                for (T *value = begin; value != end; ++value) *value *= beta;
            }
        };
        const LayerParams &layer = mlp_.layer(l);
        scale(into.out + layer.weights, into.out + layer.biases, into.weight_beta);
        scale(into.out + layer.biases, into.out + layer.end, into.bias_beta);
    }

    // A data-parallel step in progress: the layers above `unsummed` are summed and updated.
    struct SharedStep {
        T *params;
        OptimizerState<T> &state;
        const UpdateRule &rule;
        const Route<T> &route;
        const GradientDestination<T> &into;
        const Reduction<T> &reduction;
        bool more_follow;
        std::size_t unsummed;  // the highest layer not summed yet
        bool finite = true;    // no update left optimizer state non-finite
    };

    // After BP4 and BP3 of layer l: the layers from l up to the last summed form a bucket
    // once they hold bucket_bytes, or at the input layer; sum it and update its layers.
    void sum_bucket_below(SharedStep &step, std::size_t l) {
        const std::size_t begin = mlp_.layer(l).weights, end = mlp_.layer(step.unsummed).end;
        if (l > 1 && (end - begin) * sizeof(T) < step.reduction.bucket_bytes) return;
        step.reduction.sum(step.into.out + begin, end - begin);
        for (std::size_t m = l; m <= step.unsummed; ++m) step.finite &= finish_layer(step, m);
        step.unsummed = l - 1;
    }

    // Layer l's update once its step is summed: momentum's step, or the update that reads
    // the summed gradient (plain SGD is done: the sum is the new W). False: the update
    // left optimizer state non-finite.
    bool finish_layer(const SharedStep &step, std::size_t l) const {
        using Into = typename Route<T>::Into;
        switch (step.route.into) {
            case Into::weights: return true;
            case Into::velocity:
                velocity_step(step.params, step.state.first, step.rule, l, step.more_follow);
                return true;
            case Into::buffer:
                return update_layer(step.params, step.state, step.rule, step.route.update,
                                    gradient_.data(), l);
        }
        return true;
    }

    // BP2-BP4 into the route's destination (see Route); momentum's step follows each
    // layer's BP4 and BP3.
    void backward(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                  const Route<T> &route, const Batch &batch, bool more_follow) {
        const std::size_t B = batch.size;
        const GradientDestination<T> into =
            destination(params, state, rule, route, T(1) / T(B), -T(rule.lr / double(B)));
        if (route.into != Route<T>::Into::velocity) {
            mlp_.backward(params, batch.X, B, into);
            return;
        }
        mlp_.backward(params, batch.X, B, into, [&](std::size_t l) {
            if (l == 1 && lazy_.active()) {
                lazy_.step(first_layer(params), first_layer(state.first), more_follow);
                velocity_step(params, state.first, rule, l, more_follow, false);
            } else {
                velocity_step(params, state.first, rule, l, more_follow);
            }
        });
    }

    // Momentum on sparse X trains the rows of W^1 its batches touch (LazyVelocity): not
    // with L1 or data-parallel training.
    void begin_lazy_velocity(const Rows<T> &rows, const Reduction<T> *reduction,
                             const UpdateRule &rule) {
        const bool lazy = rows.sparse_X != nullptr && reduction == nullptr &&
                          rule.method == Method::momentum && rule.l1 == 0;
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

    // Momentum's step for layer l, right after BP4 and BP3 added its gradient to the
    // velocity (the update is memory-bound: W^l and V^l are still in cache). Only the
    // weights are regularised. The last batch of a call leaves V itself, the others mu V.
    void velocity_step(T *params, T *velocity, const UpdateRule &rule, std::size_t l,
                       bool more_follow, bool weights_too = true) const {
        const LayerParams &layer = mlp_.layer(l);
        const T lr = T(rule.lr), l2 = T(rule.l2), l1 = T(rule.l1);
        const T decay = more_follow ? T(rule.momentum) : T(1);
        T *weights = params + layer.weights, *weights_velocity = velocity + layer.weights;
        if (weights_too) Team::instance().parallel_for(layer.biases - layer.weights, kElementsPerJob,
                                      blas::get_num_threads(),
                                      [=](std::size_t begin, std::size_t end) {
                                          momentum_step(weights + begin, weights_velocity + begin,
                                                        end - begin, lr, l2, l1, decay);
                                      });
        momentum_step(params + layer.biases, velocity + layer.biases, layer.end - layer.biases, lr,
                      T(0), T(0), decay);
    }

    // Parameters [begin, end) of the flat buffer.
    struct Segment {
        std::size_t begin, end;
    };

    // Returns false when the update left optimizer state non-finite (see GradientUpdate).
    bool update_from_gradient(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                              GradientUpdate<T> update, const T *gradient) const {
        bool finite = true;
        for (std::size_t l = 1; l <= mlp_.n_layers(); ++l) {
            finite &= update_layer(params, state, rule, update, gradient, l);
        }
        return finite;
    }

    // Layer l's weights (regularised) and biases; false as update_from_gradient.
    bool update_layer(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                      GradientUpdate<T> update, const T *gradient, std::size_t l) const {
        const LayerParams &layer = mlp_.layer(l);
        const Segment weights{layer.weights, layer.biases}, biases{layer.biases, layer.end};
        const bool weights_finite =
            update_segment(params, state, rule, update, gradient, weights, true);
        return update_segment(params, state, rule, update, gradient, biases, false) &&
               weights_finite;
    }

    // The update is element-wise: the team shares the segment.
    static bool update_segment(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                               GradientUpdate<T> update, const T *gradient, Segment at,
                               bool regularise) {
        const auto update_part = [&](std::size_t begin, std::size_t end) {
            const std::size_t from = at.begin + begin;
            T *first = state.first ? state.first + from : nullptr;
            T *second = state.second ? state.second + from : nullptr;
            return update(rule, *state.step, params + from, gradient + from, first, second,
                          end - begin, regularise);
        };
        return Team::instance().parallel_all(at.end - at.begin, kElementsPerJob,
                                             blas::get_num_threads(), update_part);
    }

    // Batch k of the rows (this process's share of it, with shares): gathered through
    // the order, or a slice of the data. The rows of batch k + 1 are then offered to the
    // team's idle workers (see GatheredRows), into the other buffer.
    Batch batch_at(const Rows<T> &rows, std::size_t k) {
        const RowRange at = range_of(rows, k);
        if (rows.order == nullptr && rows.sparse_X) {
            return Batch{Input<T>(rows.sparse_X, nullptr, at.start),
                         rows.Y + at.start * mlp_.n_outputs(),
                         rows.sample_weight ? rows.sample_weight + at.start : nullptr, at.size};
        }
        if (rows.order == nullptr) {
            return Batch{rows.X + at.start * mlp_.n_inputs(), rows.Y + at.start * mlp_.n_outputs(),
                         rows.sample_weight ? rows.sample_weight + at.start : nullptr, at.size};
        }
        const bool gathered_ahead = ahead_ != nullptr && ahead_batch_ == k;
        GatheredRows<T> &batch = gathered_ahead ? *ahead_ : gathered_[0];
        stop_gathering_ahead();
        if (!gathered_ahead) prepare(batch, rows, at);
        batch.finish(blas::get_num_threads());
        if (k + 1 < batch_count(rows)) {
            GatheredRows<T> &next = &batch == &gathered_[0] ? gathered_[1] : gathered_[0];
            const RowRange after = range_of(rows, k + 1);
            prepare(next, rows, after);
            if (after.size > 0 && Team::instance().post_idle_work(&next)) {
                ahead_ = &next;
                ahead_batch_ = k + 1;
            }
        }
        // Sparse X: the kernels read the rows of the order in place; Y and the weights are
        // gathered.
        const Input<T> X =
            rows.sparse_X ? Input<T>(rows.sparse_X, rows.order + at.start, 0) : Input<T>(batch.X());
        return Batch{X, batch.Y(), batch.sample_weight(), at.size};
    }

    // Positions [start, start + size) of the order.
    struct RowRange {
        std::size_t start, size;
    };

    static RowRange range_of(const Rows<T> &rows, std::size_t k) {
        if (rows.shares != nullptr) {
            const std::size_t start = std::size_t(rows.shares->begin[k]);
            return {start, std::size_t(rows.shares->end[k]) - start};
        }
        const std::size_t start = k * rows.batch_size;
        return {start, std::min(rows.batch_size, rows.n_order - start)};
    }

    static std::size_t batch_count(const Rows<T> &rows) {
        return rows.shares ? rows.shares->n_batches : (rows.n_order - 1) / rows.batch_size + 1;
    }

    void prepare(GatheredRows<T> &batch, const Rows<T> &rows, RowRange at) const {
        batch.prepare(rows, rows.order + at.start, at.size, mlp_.n_inputs(), mlp_.n_outputs());
    }

    // Takes back the rows offered to the workers: none of them is copying any afterwards.
    void stop_gathering_ahead() {
        if (ahead_ != nullptr) Team::instance().withdraw_idle_work(ahead_);
        ahead_ = nullptr;
    }

    // Inverted dropout for the B rows of batch k (nullptr: none): each hidden unit is
    // kept with probability 1 - rate and then scaled by 1 / (1 - rate), so that
    // prediction needs no rescaling. Row i of the global batch draws its masks, layer
    // after layer, from a generator of its own seeded by (seed, global batch, i): the
    // same masks whichever process trains the row.
    const DropoutMasks<T> *draw_masks(const Rows<T> &rows, std::size_t k, std::size_t B) {
        if (rows.dropout == 0) return nullptr;
        const std::uint64_t batch_seed = mix64(rows.seed ^ mix64(rows.first_batch + k));
        const std::size_t first = rows.shares ? std::size_t(rows.shares->position[k]) : 0;
        const T scale = T(1) / T(1 - rows.dropout);
        masks_.resize(mlp_.n_layers());
        for (std::size_t l = 1; l < mlp_.n_layers(); ++l) {
            if (masks_[l].size() < B * mlp_.n_units(l)) masks_[l].resize(B * mlp_.n_units(l));
        }
        for (std::size_t i = 0; i < B; ++i) {
            SplitMix64 rng{mix64(batch_seed ^ mix64(first + i))};
            for (std::size_t l = 1; l < mlp_.n_layers(); ++l) {
                const std::size_t n_units = mlp_.n_units(l);
                T *mask = masks_[l].data() + i * n_units;
                for (std::size_t j = 0; j < n_units; ++j) {
                    mask[j] = rng.uniform() >= rows.dropout ? scale : T(0);
                }
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
    // dropout masks and arithmetic give the same parameters as the first time (with a
    // reduction, every process replays the same batches: they all saw the same sums).
    void replay(T *params, OptimizerState<T> &state, const UpdateRule &rule, const Rows<T> &rows,
                const Reduction<T> *reduction, std::size_t n_batches) {
        diagnostics_ = nullptr;  // the call raises: its diagnostics are not read
        restore_snapshot(params, state);
        begin_lazy_velocity(rows, reduction, rule);
        if (n_batches == 0) return;
        begin_sequence(state, rule);
        for (std::size_t k = 0; k < n_batches; ++k) {
            train_batch(params, state, rule, rows, reduction, k, k + 1 < n_batches);
        }
        finish_lazy_velocity(params, state, true);
    }

    void restore_snapshot(T *params, OptimizerState<T> &state) const {
        const std::size_t n = mlp_.n_params();
        std::copy(snapshot_.begin(), snapshot_.begin() + n, params);
        if (state.first) std::copy(&snapshot_[n], &snapshot_[2 * n], state.first);
        if (state.second) std::copy(&snapshot_[2 * n], &snapshot_[3 * n], state.second);
        *state.step = snapshot_step_;
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

    static void check_shares(const Rows<T> &rows) {
        const Shares &shares = *rows.shares;
        for (std::size_t k = 0; k < shares.n_batches; ++k) {
            const std::int64_t begin = shares.begin[k], end = shares.end[k];
            if (!(0 <= begin && begin <= end && std::uint64_t(end) <= rows.n_order &&
                  shares.position[k] >= 0)) {
                throw std::invalid_argument("shares: batch " + std::to_string(k) +
                                            " is not a range of the order with a position >= 0");
            }
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
    std::array<GatheredRows<T>, 2> gathered_;  // a batch's rows, and the next batch's
    GatheredRows<T> *ahead_ = nullptr;         // offered to the team's idle workers
    std::size_t ahead_batch_ = 0;              // the batch whose rows ahead_ gathers
    DropoutMasks<T> masks_;                    // of the batch in training
    Buffer<T> gradient_;       // ∂C/∂params of the batch, for the updates that read it
    Buffer<T> transposition_;  // sparse X: the buffer of W^1's transpositions
    LazyVelocity<T> lazy_;     // momentum on sparse X
    std::vector<T> snapshot_;  // params (and optimizer state) at the start of train()
    std::int64_t snapshot_step_ = 0;
    Diagnostics<T> *diagnostics_ = nullptr;  // of the call in progress, if asked for
};

// What deltaprop._core's Mlp32 and Mlp64 hold: a network's math, its trainer, and a
// lock. Calls arrive from several threads (the GIL is released) and share the
// workspaces: one computation at a time.
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

    TrainOutcome train(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                       const Rows<T> &rows, const Reduction<T> *reduction,
                       double *diagnostics = nullptr) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (diagnostics == nullptr) return trainer_.train(params, state, rule, rows, reduction);
        Diagnostics<T> measures(mlp_, diagnostics);
        return trainer_.train(params, state, rule, rows, reduction, &measures);
    }

  private:
    std::mutex mutex_;
    Mlp<T> mlp_;
    Trainer<T> trainer_;
};

}  // namespace deltaprop
