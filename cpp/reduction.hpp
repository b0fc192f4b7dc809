// What the processes of data-parallel training sum for each batch, and how: the batch's
// statuses after the forward pass and BP1, then its step in buckets of layers. One
// process training alone is the reduction that sums nothing (Alone). No Python here.
#pragma once

#include <array>
#include <cstddef>
#include <functional>
#include <utility>

#include "mlp.hpp"
#include "optimizers.hpp"
#include "update.hpp"

namespace deltaprop {

// What stopped a batch: a z not finite (the previous update made a parameter non-finite),
// its cost or output error not finite (no update made), or its own update left optimizer
// state non-finite under finite parameters (Adam's squared gradient overflowing).
enum class BatchStatus { ok, parameters_not_finite, error_not_finite, update_not_finite };

// A batch after its forward pass and BP1 (of this process's rows, or summed over every
// process): why it stops, or its cost and sample weight summed over its rows.
struct BatchSums {
    BatchStatus status = BatchStatus::ok;
    double cost = 0;           // summed over the batch's samples (times sample_weight)
    double sample_weight = 0;  // summed over the batch's samples
    bool stop_requested = false;  // by the reduction: the call ends after this batch
};

// The per-batch seam of data-parallel training: two sums over every process. After the
// forward pass and BP1, sum_statuses adds up the batch's statuses (and may ask to stop);
// then BP2-BP4 write this process's share of the mean gradient into the route's
// destination (see Route), which sum adds up, in place: the velocity or the parameters
// themselves where one process's BP4 GEMM writes them, else a gradient buffer. The lead
// process alone adds what every process holds (mu V, the decayed W) to its share, so that
// the sum counts it once.
template <class T> class Reduction {
  public:
    virtual ~Reduction() = default;
    // The batch over every process, from this process's part of it.
    virtual BatchSums sum_statuses(const BatchSums &local) = 0;
    // Sums `count` values of the step over every process, in place.
    virtual void sum(T *values, std::size_t count) = 0;
    virtual bool lead() const = 0;
    // One process: nothing is summed (Alone).
    virtual bool alone() const = 0;
    // The step is summed in buckets of layers of at least this many bytes (see Buckets).
    virtual std::size_t bucket_bytes() const = 0;
    // The factors that make BP3 and BP4 of this process's B rows its share of the mean
    // gradient over the batch (`local`: this process's part, `total`: every process's).
    virtual StepScale<T> scale(const UpdateRule &rule, std::size_t B, const BatchSums &local,
                               const BatchSums &total) const = 0;
};

// One process training every row: nothing to sum, and each layer its own bucket, updated
// right after its BP4 and BP3. BP1 scaled the rows of δ^L for a mean over the B rows;
// alpha = 1 / B, and plain SGD's -lr / B is rounded once (network2.py's rule).
template <class T> class Alone final : public Reduction<T> {
  public:
    BatchSums sum_statuses(const BatchSums &local) override { return local; }
    void sum(T *, std::size_t) override {}
    bool lead() const override { return true; }
    bool alone() const override { return true; }
    std::size_t bucket_bytes() const override { return 0; }
    StepScale<T> scale(const UpdateRule &rule, std::size_t B, const BatchSums &,
                       const BatchSums &) const override {
        return {T(1) / T(B), -T(rule.lr / double(B))};
    }
};

// The statuses data-parallel training sums per batch, as kReductionTail values of T.
enum ReductionTail : std::size_t {
    tail_cost,                   // summed over the batch's samples (times sample_weight)
    tail_sample_weight,          // summed over the batch's samples
    tail_parameters_not_finite,  // processes whose forward pass was not finite
    tail_error_not_finite,       // processes whose cost or output error was not finite
    tail_stop,                   // requests to stop after this batch (set by sum_statuses)
    kReductionTail
};

// Several processes, each training its share of every batch: the sums are functions that
// add up an array of T over every process, in place (MPI allreduces, outside the core).
// Every process then holds the same sums and takes the same decisions: a cost or error
// not finite in any process stops them all at this batch, before any parameter or state
// changed.
template <class T> class AcrossProcesses final : public Reduction<T> {
  public:
    using Sum = std::function<void(T *values, std::size_t count)>;

    AcrossProcesses(Sum sum_statuses, Sum sum, bool lead, std::size_t bucket_bytes)
        : sum_statuses_(std::move(sum_statuses)), sum_(std::move(sum)), lead_(lead),
          bucket_bytes_(bucket_bytes) {}

    BatchSums sum_statuses(const BatchSums &local) override {
        std::array<T, kReductionTail> tail{};
        if (local.status == BatchStatus::ok) {
            tail[tail_cost] = T(local.cost);
            tail[tail_sample_weight] = T(local.sample_weight);
        }
        if (local.status == BatchStatus::parameters_not_finite) tail[tail_parameters_not_finite] = 1;
        if (local.status == BatchStatus::error_not_finite) tail[tail_error_not_finite] = 1;
        sum_statuses_(tail.data(), kReductionTail);
        if (tail[tail_parameters_not_finite] > 0) return {BatchStatus::parameters_not_finite};
        if (tail[tail_error_not_finite] > 0) return {BatchStatus::error_not_finite};
        return {BatchStatus::ok, double(tail[tail_cost]), double(tail[tail_sample_weight]),
                tail[tail_stop] > 0};
    }

    void sum(T *values, std::size_t count) override { sum_(values, count); }
    bool lead() const override { return lead_; }
    bool alone() const override { return false; }
    std::size_t bucket_bytes() const override { return bucket_bytes_; }

    // BP1 scaled the rows of δ^L for a mean over this process's B rows (by w_i B / sum(w)
    // with sample weights); alpha = sum(w) / (B total weight) makes BP3 and BP4 this
    // process's share of the mean over the global batch.
    StepScale<T> scale(const UpdateRule &rule, std::size_t B, const BatchSums &local,
                       const BatchSums &total) const override {
        const T alpha = B == 0 || total.sample_weight <= 0
                            ? T(0)
                            : T(local.sample_weight / double(B) / total.sample_weight);
        return {alpha, T(-rule.lr) * alpha};
    }

  private:
    Sum sum_statuses_, sum_;
    bool lead_;
    std::size_t bucket_bytes_;
};

// A step summed in buckets, as PyTorch's DDP does: layers from the top down until their
// parameters reach bucket_bytes (or the input layer), each bucket summed as soon as BP4
// and BP3 have written it and its layers updated at once, while W and V are still in
// cache (the update reads them right after the sum wrote them).
template <class T> class Buckets {
  public:
    Buckets(const Mlp<T> &mlp, const Updates<T> &updates, Reduction<T> &reduction,
            const Step<T> &step)
        : mlp_(mlp), updates_(updates), reduction_(reduction), step_(step),
          unsummed_(mlp.n_layers()) {}

    // After BP4 and BP3 of layer l: the layers from l up to the last summed form a bucket
    // once they hold bucket_bytes, or at the input layer; sum it and update its layers.
    void after_layer(std::size_t l) {
        const std::size_t begin = mlp_.layer(l).weights, end = mlp_.layer(unsummed_).end;
        if (l > 1 && (end - begin) * sizeof(T) < reduction_.bucket_bytes()) return;
        reduction_.sum(step_.into.out + begin, end - begin);
        for (std::size_t m = l; m <= unsummed_; ++m) finite_ &= updates_.finish_layer(step_, m);
        unsummed_ = l - 1;
    }

    // No update left optimizer state non-finite.
    bool finite() const { return finite_; }

  private:
    const Mlp<T> &mlp_;
    const Updates<T> &updates_;
    Reduction<T> &reduction_;
    const Step<T> &step_;
    std::size_t unsummed_;  // the highest layer not summed yet
    bool finite_ = true;
};

}  // namespace deltaprop
