// The multilayer perceptron: batched forward pass, backpropagation (BP1-BP4)
// and mini-batch SGD, on raw pointers. No Python here.
//
// Parameters live in one flat buffer owned by the caller, layer after layer:
// W^l, row-major (n_l, n_{l-1}), then b^l (n_l,), for l = 1..L. Gradients use
// the same layout. Batches are row-major: X is (B, n_0), Y is (B, n_L).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "activations.hpp"
#include "blas.hpp"
#include "optimizers.hpp"
#include "output_layer.hpp"

namespace deltaprop {

struct Architecture {
    std::vector<std::size_t> sizes;  // n_0, n_1, ..., n_L
    Activation hidden;
    Activation output;
    Cost cost;
    double leaky_slope;
};

// Predicting or evaluating many samples runs chunks of rows whose workspace takes
// about this many bytes: large GEMMs, bounded memory.
constexpr std::size_t kChunkBytes = std::size_t(16) << 20;
// More parameters than any machine holds, and few enough for every size computation.
constexpr std::size_t kMaxParams = std::size_t(1) << 48;

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

struct Dropout {
    double rate;  // fraction of hidden units dropped, in [0, 1)
    SplitMix64 rng;
};

// The cost summed over a batch's samples (weighted when they are) and their total weight.
struct CostAndWeight {
    double cost;
    double weight;
};

enum class BatchStatus { ok, parameters_not_finite, error_not_finite };

struct BatchOutcome {
    double cost;
    double weight;
    BatchStatus status;
};

// Mean cost of the batches trained, or the batch that made training diverge.
struct TrainOutcome {
    double cost;
    std::int64_t diverged_batch;  // -1: none; else the index of the batch within the call
};

// The rows to train on and how: rows order[0..n_order) of X (n_rows, n_0), Y
// (n_rows, n_L) and optional weights (n_rows,) (order == nullptr: rows
// 0..n_order in storage order), in batches of batch_size, the last one possibly
// smaller. Dropout masks of batch k come from (seed, first_batch + k) alone, so
// an epoch trained in several calls draws the same masks as in one.
template <class T> struct Epoch {
    const T *X;
    const T *Y;
    const T *weights;
    std::size_t n_rows;
    const std::int64_t *order;
    std::size_t n_order;
    std::size_t batch_size;
    double dropout;
    std::uint64_t seed;
    std::uint64_t first_batch;
};

template <class T> bool all_finite(const T *values, std::size_t count) {
    decltype(not_finite_bit(T(0))) not_finite = 0;
    for (std::size_t k = 0; k < count; ++k) not_finite |= not_finite_bit(values[k]);
    return not_finite == 0;
}

// all_finite over up to `threads` threads, for a user's X: the pass is memory-bound,
// and one core does not draw the memory's whole bandwidth (about 2x on 2 cores).
template <class T> bool all_finite(const T *values, std::size_t count, int threads) {
    constexpr std::size_t kMinPerThread = std::size_t(1) << 20;  // a thread costs ~50 us
    const std::size_t workers =
        std::clamp<std::size_t>(count / kMinPerThread, 1, std::size_t(std::max(threads, 1)));
    const std::size_t share = (count + workers - 1) / workers;
    std::vector<char> finite(workers);
    std::vector<std::thread> helpers;
    for (std::size_t w = 1; w < workers; ++w) {
        const std::size_t begin = w * share, end = std::min(count, begin + share);
        helpers.emplace_back([&finite, values, w, begin, end] {
            finite[w] = all_finite(values + begin, end - begin);
        });
    }
    finite[0] = all_finite(values, std::min(count, share));
    for (std::thread &helper : helpers) helper.join();
    return std::all_of(finite.begin(), finite.end(), [](char ok) { return ok != 0; });
}

// Workspaces start on a 64-byte boundary: OpenBLAS's kernels (and the GEMV that a
// GEMM with one row or column is forwarded to) peel their loops by the operands'
// alignment, which changes the order of a sum. With malloc's 16-byte alignment, two
// networks with the same parameters and inputs could differ in the last bit.
template <class T> struct CacheAligned {
    using value_type = T;
    static constexpr std::align_val_t kAlignment{64};
    CacheAligned() = default;
    template <class U> CacheAligned(const CacheAligned<U> &) {}
    T *allocate(std::size_t n) {
        return static_cast<T *>(::operator new(n * sizeof(T), kAlignment));
    }
    void deallocate(T *p, std::size_t) { ::operator delete(p, kAlignment); }
    template <class U> bool operator==(const CacheAligned<U> &) const { return true; }
    template <class U> bool operator!=(const CacheAligned<U> &) const { return false; }
};
template <class T> using Buffer = std::vector<T, CacheAligned<T>>;

template <class T> class Mlp {
  public:
    // A mini-batch: B rows of X (B, n_0), Y (B, n_L) and optional sample weights (B,).
    struct Batch {
        const T *X;
        const T *Y;
        const T *weights;  // nullptr: every sample weighs 1
        std::size_t rows;
    };

    explicit Mlp(Architecture arch) : arch_(std::move(arch)) {
        validate();
        std::size_t offset = 0;
        for (std::size_t l = 1; l < arch_.sizes.size(); ++l) {
            // Layer sizes are below 2^31, so one layer's count cannot overflow; the sum can.
            const std::size_t count = arch_.sizes[l] * arch_.sizes[l - 1] + arch_.sizes[l];
            if (count > kMaxParams - offset) {
                throw std::invalid_argument("sizes: more than 2^48 parameters");
            }
            weight_offsets_.push_back(offset);
            bias_offsets_.push_back(offset + arch_.sizes[l] * arch_.sizes[l - 1]);
            offset += count;
        }
        n_params_ = offset;
        z_.resize(n_layers() + 1);
        a_.resize(n_layers() + 1);
        delta_.resize(n_layers() + 1);
        derivative_.resize(n_layers() + 1);
    }

    const Architecture &architecture() const { return arch_; }
    std::size_t n_layers() const { return arch_.sizes.size() - 1; }
    std::size_t n_inputs() const { return arch_.sizes.front(); }
    std::size_t n_outputs() const { return arch_.sizes.back(); }
    std::size_t n_params() const { return n_params_; }

    // out (n, n_L) = a^L for the n rows of X.
    void predict(const T *params, const T *X, std::size_t n, T *out) {
        std::lock_guard<std::mutex> lock(mutex_);
        const std::size_t chunk = chunk_rows();
        for (std::size_t start = 0; start < n; start += chunk) {
            const std::size_t B = std::min(chunk, n - start);
            require_finite(forward(params, X + start * n_inputs(), B, nullptr, false));
            std::memcpy(out + start * n_outputs(), a_[n_layers()].data(),
                        B * n_outputs() * sizeof(T));
        }
    }

    // Mean cost over the n rows (without any regularisation term).
    double cost(const T *params, const T *X, const T *Y, std::size_t n) {
        std::lock_guard<std::mutex> lock(mutex_);
        double total = 0;
        const std::size_t chunk = chunk_rows();
        for (std::size_t start = 0; start < n; start += chunk) {
            const std::size_t B = std::min(chunk, n - start);
            require_finite(forward(params, X + start * n_inputs(), B, nullptr, false));
            total += output_error(Y + start * n_outputs(), B);
        }
        return total / double(n);
    }

    // Batch-averaged gradients of the cost into grads (the parameter layout);
    // returns the mean cost of the batch.
    double gradients(const T *params, const T *X, const T *Y, std::size_t B, T *grads) {
        std::lock_guard<std::mutex> lock(mutex_);
        require_finite(forward(params, X, B, nullptr, true));
        const double total = output_error(Y, B);
        backward_into(params, X, B, grads);
        return total / double(B);
    }

    // Mini-batch training over the rows of `rows` (see Epoch), each batch
    // followed by an update of params and state. Returns the mean cost of the
    // batches as seen, or, when training diverges, the batch to blame: either
    // its cost or error was not finite, or its update made a parameter
    // non-finite. params and state are then left as they were before that
    // batch: the last finite weights.
    TrainOutcome train(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                       const Epoch<T> &rows) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (rows.order != nullptr) check_order(rows.order, rows.n_order, rows.n_rows);
        const std::size_t n_batches = (rows.n_order - 1) / rows.batch_size + 1;
        take_snapshot(params, state);
        begin_sequence(state, rule);
        double total_cost = 0, total_weight = 0;
        for (std::size_t k = 0; k < n_batches; ++k) {
            const BatchOutcome seen = train_batch(params, state, rule, rows, k, k + 1 < n_batches);
            if (seen.status != BatchStatus::ok) {
                // Back to the parameters before the batch to blame: the previous one when
                // its update overflowed, else this one (which made no update).
                const std::size_t blamed =
                    seen.status == BatchStatus::parameters_not_finite && k > 0 ? k - 1 : k;
                replay(params, state, rule, rows, blamed);
                return {0, std::int64_t(blamed)};
            }
            total_cost += seen.cost;
            total_weight += seen.weight;
        }
        if (!all_finite(params, n_params_) || !state_is_finite(state)) {
            replay(params, state, rule, rows, n_batches - 1);
            return {0, std::int64_t(n_batches - 1)};
        }
        return {total_weight > 0 ? total_cost / total_weight : 0.0, -1};
    }

  private:
    // Finite inputs and parameters can still overflow z (3e38 in float32); softmax
    // and the costs would then answer NaN.
    static void require_finite(bool forward_was_finite) {
        if (!forward_was_finite) {
            throw std::domain_error(
                "X: the forward pass overflowed (a z is not finite): the inputs or the "
                "parameters are too large");
        }
    }

    void validate() const {
        if (arch_.sizes.size() < 2) {
            throw std::invalid_argument("sizes: need at least 2 layers (input and output), got " +
                                        std::to_string(arch_.sizes.size()));
        }
        for (std::size_t n : arch_.sizes) {
            if (n < 1) throw std::invalid_argument("sizes: every layer needs at least 1 unit");
            blas::checked_int(n, "layer size");
        }
        if (arch_.hidden == Activation::softmax) {
            throw std::invalid_argument("activation: softmax is only available as the output");
        }
        check_pairing(arch_.output, arch_.cost, arch_.sizes.back());
    }

    Activation activation_of(std::size_t l) const {
        return l == n_layers() ? arch_.output : arch_.hidden;
    }

    // Rows per chunk of predict() and cost(): z, a and delta of every layer within
    // kChunkBytes, between 64 and 8192 rows.
    std::size_t chunk_rows() const {
        std::size_t units = 0;
        for (std::size_t l = 1; l <= n_layers(); ++l) units += arch_.sizes[l];
        const std::size_t rows = kChunkBytes / (3 * sizeof(T) * units);
        return std::min<std::size_t>(8192, std::max<std::size_t>(64, rows));
    }

    // Workspaces grow to the largest batch seen and are then reused, so the
    // steady state allocates nothing.
    void reserve_rows(std::size_t B) {
        if (B <= capacity_) return;
        blas::checked_int(B, "batch size");
        for (std::size_t l = 1; l <= n_layers(); ++l) {
            const std::size_t count = B * arch_.sizes[l];
            blas::checked_int(count, "batch size * layer size");
            z_[l].resize(count);
            a_[l].resize(count);
            delta_[l].resize(count);
            if (activation_of(l) == Activation::sigmoid) derivative_[l].resize(count);
        }
        capacity_ = B;
    }

    // z^l = a^{l-1} (W^l)^T + b^l, a^l = σ(z^l) for l = 1..L, one GEMM each.
    // a^{l-1} is (B, n_{l-1}), W^l is (n_l, n_{l-1}), z^l and a^l are (B, n_l).
    // With dropout (training only), hidden a^l is multiplied by a fresh mask.
    // Returns whether every z was finite. With `for_training`, sigmoid layers also keep
    // σ'(z) for the backward pass (one exp for both).
    bool forward(const T *params, const T *X, std::size_t B, Dropout *dropout,
                 bool for_training) {
        reserve_rows(B);
        dropout_active_ = dropout != nullptr && dropout->rate > 0;
        derivatives_kept_ = for_training;
        const T *a_prev = X;
        bool finite = true;
        for (std::size_t l = 1; l <= n_layers(); ++l) {
            const blasint n_out = blasint(arch_.sizes[l]), n_in = blasint(arch_.sizes[l - 1]);
            blas::gemm(false, true, blasint(B), n_out, n_in, T(1), a_prev, n_in,
                       params + weight_offsets_[l - 1], n_in, T(0), z_[l].data(), n_out);
            finite &= add_bias_and_activate(activation_of(l), T(arch_.leaky_slope),
                                            params + bias_offsets_[l - 1], z_[l].data(),
                                            a_[l].data(), B, arch_.sizes[l], kept_derivative(l));
            if (dropout_active_ && l < n_layers()) drop_units(*dropout, l, B);
            a_prev = a_[l].data();
        }
        return finite;
    }

    // Inverted dropout: each unit is kept with probability 1 - rate and then
    // scaled by 1 / (1 - rate), so that prediction needs no rescaling.
    void drop_units(Dropout &dropout, std::size_t l, std::size_t B) {
        const std::size_t count = B * arch_.sizes[l];
        if (mask_.size() <= l) mask_.resize(n_layers());
        if (mask_[l].size() < count) mask_[l].resize(count);
        const T scale = T(1) / T(1 - dropout.rate);
        T *mask = mask_[l].data(), *a = a_[l].data();
        for (std::size_t k = 0; k < count; ++k) {
            mask[k] = dropout.rng.uniform() >= dropout.rate ? scale : T(0);
            a[k] *= mask[k];
        }
    }

    // Where the forward pass keeps σ'(z^l) (sigmoid layers, training), else nullptr.
    T *kept_derivative(std::size_t l) {
        if (!derivatives_kept_ || activation_of(l) != Activation::sigmoid) return nullptr;
        return derivative_[l].data();
    }

    // BP1 into delta^L; returns the summed cost of the batch.
    double output_error(const T *Y, std::size_t B) {
        const std::size_t L = n_layers();
        return output_cost_and_delta(arch_.output, arch_.cost, z_[L].data(), a_[L].data(), Y,
                                     delta_[L].data(), B, n_outputs(), kept_derivative(L));
    }

    // BP2: delta^{l-1} = (delta^l W^l) ⊙ σ'(z^{l-1}); delta^l is (B, n_l),
    // W^l is (n_l, n_{l-1}), delta^{l-1} is (B, n_{l-1}). A dropout mask on
    // a^{l-1} is part of its derivative.
    void backpropagate_error(const T *params, std::size_t l, std::size_t B) {
        const blasint n_out = blasint(arch_.sizes[l]), n_in = blasint(arch_.sizes[l - 1]);
        const std::size_t count = B * std::size_t(n_in);
        T *delta = delta_[l - 1].data();
        blas::gemm(false, false, blasint(B), n_in, n_out, T(1), delta_[l].data(), n_out,
                   params + weight_offsets_[l - 1], n_in, T(0), delta, n_in);
        if (const T *derivative = kept_derivative(l - 1)) {
            multiply(delta, derivative, count);
        } else {
            multiply_by_derivative(arch_.hidden, T(arch_.leaky_slope), z_[l - 1].data(), delta,
                                   count);
        }
        if (dropout_active_) {
            const T *mask = mask_[l - 1].data();
            for (std::size_t k = 0; k < count; ++k) delta[k] *= mask[k];
        }
    }

    // BP2-BP4 after BP1: batch-averaged gradients into grads.
    void backward_into(const T *params, const T *X, std::size_t B, T *grads) {
        for (std::size_t l = n_layers(); l >= 1; --l) {
            if (l > 1) backpropagate_error(params, l, B);
            const T *a_prev = l == 1 ? X : a_[l - 1].data();
            // BP4 and BP3 with beta = 0: dW = delta^T a_prev / B, db = mean(delta).
            weight_update(l, a_prev, B, T(1) / T(B), T(0), grads + weight_offsets_[l - 1]);
            bias_update(l, B, T(1) / T(B), T(0), grads + bias_offsets_[l - 1]);
        }
    }

    // BP4 folded into one GEMM: W <- beta W + alpha delta^T a_prev, where
    // delta^l is (B, n_l), a_prev is (B, n_{l-1}) and W is (n_l, n_{l-1}).
    void weight_update(std::size_t l, const T *a_prev, std::size_t B, T alpha, T beta, T *W) {
        const blasint n_out = blasint(arch_.sizes[l]), n_in = blasint(arch_.sizes[l - 1]);
        blas::gemm(true, false, n_out, n_in, blasint(B), alpha, delta_[l].data(), n_out, a_prev,
                   n_in, beta, W, n_in);
    }

    // BP3: b <- beta b + alpha sum_rows(delta^l), b is (n_l,).
    void bias_update(std::size_t l, std::size_t B, T alpha, T beta, T *b) {
        const std::size_t n = arch_.sizes[l];
        // As in BLAS, beta = 0 means b is not read: it may hold garbage or NaN.
        if (beta == T(0)) {
            std::fill(b, b + n, T(0));
        } else if (beta != T(1)) {
            for (std::size_t j = 0; j < n; ++j) b[j] *= beta;
        }
        const T *delta = delta_[l].data();
        for (std::size_t i = 0; i < B; ++i) {
            for (std::size_t j = 0; j < n; ++j) b[j] += alpha * delta[i * n + j];
        }
    }

    // Batch k of the rows: gathered through the order, or a slice of the data.
    Batch batch_at(const Epoch<T> &rows, std::size_t k) {
        const std::size_t start = k * rows.batch_size;
        const std::size_t B = std::min(rows.batch_size, rows.n_order - start);
        if (rows.order != nullptr) {
            return gather_batch(rows.X, rows.Y, rows.weights, rows.order + start, B);
        }
        return Batch{rows.X + start * n_inputs(), rows.Y + start * n_outputs(),
                     rows.weights ? rows.weights + start : nullptr, B};
    }

    // Forward, BP1, then the update of batch k, unless something is not finite:
    // a z (a parameter is not: the forward pass carries any non-finite weight or
    // bias into z) or the cost or output error (the update would not be).
    // `more_follow`: another batch of the same sequence comes next (see begin_sequence).
    BatchOutcome train_batch(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                             const Epoch<T> &rows, std::size_t k, bool more_follow) {
        const Batch batch = batch_at(rows, k);
        const std::size_t B = batch.rows;
        Dropout dropout{rows.dropout, SplitMix64{mix64(rows.seed ^ mix64(rows.first_batch + k))}};
        if (!forward(params, batch.X, B, &dropout, true)) {
            return {0, 0, BatchStatus::parameters_not_finite};
        }
        const CostAndWeight seen = batch.weights ? weighted_output_error(batch)
                                                 : CostAndWeight{output_error(batch.Y, B), double(B)};
        if (!std::isfinite(seen.cost) || !all_finite(delta_[n_layers()].data(), B * n_outputs())) {
            return {0, 0, BatchStatus::error_not_finite};
        }
        ++*state.step;
        if (rule.method == Method::sgd && rule.l1 == 0) {
            sgd_update(params, batch.X, B, rule);
        } else if (rule.method == Method::momentum) {
            momentum_update(params, state.first, batch.X, B, rule, more_follow);
        } else {
            if (grads_.size() < n_params_) grads_.resize(n_params_);
            backward_into(params, batch.X, B, grads_.data());
            for (std::size_t l = 0; l < n_layers(); ++l) {
                update_segment(params, state, rule, weight_offsets_[l], bias_offsets_[l], true);
                const std::size_t bias_end = bias_offsets_[l] + arch_.sizes[l + 1];
                update_segment(params, state, rule, bias_offsets_[l], bias_end, false);
            }
        }
        return {seen.cost, seen.weight, BatchStatus::ok};
    }

    // The parameters and optimizer state at the start of train(), to go back to.
    void take_snapshot(const T *params, const OptimizerState<T> &state) {
        const int arrays = 1 + (state.first != nullptr) + (state.second != nullptr);
        snapshot_.resize(std::size_t(arrays) * n_params_);
        std::copy(params, params + n_params_, snapshot_.begin());
        if (state.first) std::copy(state.first, state.first + n_params_, &snapshot_[n_params_]);
        if (state.second) {
            std::copy(state.second, state.second + n_params_, &snapshot_[2 * n_params_]);
        }
        snapshot_step_ = *state.step;
    }

    // Back to the snapshot, then batches 0..n_batches-1 again: the same rows,
    // dropout masks and arithmetic give the same parameters as the first time.
    void replay(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                const Epoch<T> &rows, std::size_t n_batches) {
        std::copy(snapshot_.begin(), snapshot_.begin() + n_params_, params);
        if (state.first) std::copy(&snapshot_[n_params_], &snapshot_[2 * n_params_], state.first);
        if (state.second) {
            std::copy(&snapshot_[2 * n_params_], &snapshot_[3 * n_params_], state.second);
        }
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
        for (std::size_t k = 0; k < n_params_; ++k) velocity[k] = flush_subnormal(mu * velocity[k]);
    }

    bool state_is_finite(const OptimizerState<T> &state) const {
        return (state.first == nullptr || all_finite(state.first, n_params_)) &&
               (state.second == nullptr || all_finite(state.second, n_params_));
    }

    // BP1 for a batch with sample weights w_i: the cost is sum_i w_i C_i, and delta^L's
    // rows are scaled by w_i B / sum(w), so that the 1/B of BP3 and BP4 gives the
    // gradient of the weighted mean cost sum_i w_i C_i / sum(w).
    CostAndWeight weighted_output_error(const Batch &batch) {
        const std::size_t L = n_layers(), n = n_outputs();
        CostAndWeight seen{0, 0};
        const T *derivative = kept_derivative(L);
        for (std::size_t i = 0; i < batch.rows; ++i) {
            const double row_cost = output_cost_and_delta(
                arch_.output, arch_.cost, z_[L].data() + i * n, a_[L].data() + i * n,
                batch.Y + i * n, delta_[L].data() + i * n, std::size_t(1), n,
                derivative ? derivative + i * n : nullptr);
            seen.cost += double(batch.weights[i]) * row_cost;
            seen.weight += double(batch.weights[i]);
        }
        for (std::size_t i = 0; i < batch.rows; ++i) {
            const T scale = seen.weight > 0
                                ? T(double(batch.weights[i]) * double(batch.rows) / seen.weight)
                                : T(0);
            T *delta_row = delta_[L].data() + i * n;
            for (std::size_t j = 0; j < n; ++j) delta_row[j] *= scale;
        }
        return seen;
    }

    void update_segment(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                        std::size_t begin, std::size_t end, bool regularise) {
        T *first = state.first ? state.first + begin : nullptr;
        T *second = state.second ? state.second + begin : nullptr;
        apply_update(rule, *state.step, params + begin, grads_.data() + begin, first, second,
                     end - begin, regularise);
    }

    // Plain SGD with the update folded into the BP4 GEMM (network2.py's rule):
    // W <- (1 - lr l2) W - (lr / B) delta^T a_prev, b <- b - (lr / B) sum(delta).
    void sgd_update(T *params, const T *X, std::size_t B, const UpdateRule &rule) {
        const T step = T(rule.lr / double(B));
        const T decay = T(1 - rule.lr * rule.l2);
        for (std::size_t l = n_layers(); l >= 1; --l) {
            // BP2 needs W^l before it is updated.
            if (l > 1) backpropagate_error(params, l, B);
            const T *a_prev = l == 1 ? X : a_[l - 1].data();
            weight_update(l, a_prev, B, -step, decay, params + weight_offsets_[l - 1]);
            bias_update(l, B, -step, T(1), params + bias_offsets_[l - 1]);
        }
    }

    // Momentum with BP4 folded into the velocity's GEMM: V <- mu V + delta^T a_prev / B
    // (mu V is stored already, see begin_sequence: beta = 1), then one pass
    // W <- W - lr (V + l2 W + l1 sign(W)) with V updated to match, which also stores
    // mu V for the next batch when `more_follow`. Saves materialising the gradient:
    // the update is memory-bound.
    void momentum_update(T *params, T *velocity, const T *X, std::size_t B,
                         const UpdateRule &rule, bool more_follow) {
        const T lr = T(rule.lr), l2 = T(rule.l2), l1 = T(rule.l1);
        const T decay = more_follow ? T(rule.momentum) : T(1);
        for (std::size_t l = n_layers(); l >= 1; --l) {
            if (l > 1) backpropagate_error(params, l, B);  // with W^l before its update
            const T *a_prev = l == 1 ? X : a_[l - 1].data();
            const std::size_t w = weight_offsets_[l - 1], b = bias_offsets_[l - 1];
            weight_update(l, a_prev, B, T(1) / T(B), T(1), velocity + w);
            bias_update(l, B, T(1) / T(B), T(1), velocity + b);
            T *W = params + w, *V = velocity + w;
            if (l2 != T(0) || l1 != T(0)) {
                for (std::size_t k = 0; k < b - w; ++k) V[k] += l2 * W[k] + l1 * sign(W[k]);
            }
            step_with_velocity(W, V, b - w, lr, decay);
            step_with_velocity(params + b, velocity + b, arch_.sizes[l], lr, decay);
        }
    }

    // w <- w - lr v, then v <- decay v (both flushed, see flush_subnormal).
    static void step_with_velocity(T *w, T *v, std::size_t count, T lr, T decay) {
        for (std::size_t k = 0; k < count; ++k) {
            const T velocity = flush_subnormal(v[k]);
            w[k] -= lr * velocity;
            v[k] = flush_subnormal(decay * velocity);
        }
    }

    void check_order(const std::int64_t *order, std::size_t n_order, std::size_t n_rows) const {
        for (std::size_t i = 0; i < n_order; ++i) {
            if (order[i] < 0 || std::uint64_t(order[i]) >= n_rows) {
                throw std::invalid_argument("order: index " + std::to_string(order[i]) +
                                            " at position " + std::to_string(i) +
                                            " is outside [0, " + std::to_string(n_rows) + ")");
            }
        }
    }

    // Copies the rows order[0..B) of X, Y (and the weights) into reused buffers.
    Batch gather_batch(const T *X, const T *Y, const T *row_weights, const std::int64_t *order,
                       std::size_t B) {
        const std::size_t n_in = n_inputs(), n_out = n_outputs();
        if (batch_x_.size() < B * n_in) batch_x_.resize(B * n_in);
        if (batch_y_.size() < B * n_out) batch_y_.resize(B * n_out);
        if (row_weights && batch_w_.size() < B) batch_w_.resize(B);
        for (std::size_t i = 0; i < B; ++i) {
            const std::size_t row = std::size_t(order[i]);
            std::memcpy(batch_x_.data() + i * n_in, X + row * n_in, n_in * sizeof(T));
            std::memcpy(batch_y_.data() + i * n_out, Y + row * n_out, n_out * sizeof(T));
            if (row_weights) batch_w_[i] = row_weights[row];
        }
        return Batch{batch_x_.data(), batch_y_.data(), row_weights ? batch_w_.data() : nullptr, B};
    }

    Architecture arch_;
    std::size_t n_params_ = 0;
    std::vector<std::size_t> weight_offsets_, bias_offsets_;  // per layer l = 1..L, at l-1
    std::size_t capacity_ = 0;                                // rows the workspaces hold
    std::vector<Buffer<T>> z_, a_, delta_;                    // index l = 1..L; (B, n_l)
    std::vector<Buffer<T>> derivative_;       // σ'(z^l) of sigmoid layers, (B, n_l)
    bool derivatives_kept_ = false;           // did forward() fill derivative_?
    Buffer<T> batch_x_, batch_y_, batch_w_;                   // gathered rows of a batch
    Buffer<T> grads_;                                         // for the non-fused updates
    std::vector<T> snapshot_;  // params (and optimizer state) at the start of train()
    std::int64_t snapshot_step_ = 0;
    std::vector<Buffer<T>> mask_;                             // dropout masks, (B, n_l)
    bool dropout_active_ = false;                             // did forward() drop units?
    std::mutex mutex_;  // one computation at a time: the workspaces are shared
};

}  // namespace deltaprop
