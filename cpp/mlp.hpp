// The multilayer perceptron: batched forward pass, backpropagation (BP1-BP4)
// and mini-batch SGD, on raw pointers. No Python here.
//
// Parameters live in one flat buffer owned by the caller, layer after layer:
// W^l, row-major (n_l, n_{l-1}), then b^l (n_l,), for l = 1..L. Gradients use
// the same layout. Batches are row-major: X is (B, n_0), Y is (B, n_L).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "activations.hpp"
#include "blas.hpp"
#include "output_layer.hpp"

namespace deltaprop {

struct Architecture {
    std::vector<std::size_t> sizes;  // n_0, n_1, ..., n_L
    Activation hidden;
    Activation output;
    Cost cost;
    double leaky_slope;
};

// Rows per forward pass when predicting or evaluating many samples.
constexpr std::size_t kChunkRows = 1024;

template <class T> class Mlp {
  public:
    explicit Mlp(Architecture arch) : arch_(std::move(arch)) {
        validate();
        std::size_t offset = 0;
        for (std::size_t l = 1; l < arch_.sizes.size(); ++l) {
            weight_offsets_.push_back(offset);
            offset += arch_.sizes[l] * arch_.sizes[l - 1];
            bias_offsets_.push_back(offset);
            offset += arch_.sizes[l];
        }
        n_params_ = offset;
        z_.resize(n_layers() + 1);
        a_.resize(n_layers() + 1);
        delta_.resize(n_layers() + 1);
    }

    const Architecture &architecture() const { return arch_; }
    std::size_t n_layers() const { return arch_.sizes.size() - 1; }
    std::size_t n_inputs() const { return arch_.sizes.front(); }
    std::size_t n_outputs() const { return arch_.sizes.back(); }
    std::size_t n_params() const { return n_params_; }

    // out (n, n_L) = a^L for the n rows of X.
    void predict(const T *params, const T *X, std::size_t n, T *out) {
        std::lock_guard<std::mutex> lock(mutex_);
        for (std::size_t start = 0; start < n; start += kChunkRows) {
            const std::size_t B = std::min(kChunkRows, n - start);
            forward(params, X + start * n_inputs(), B);
            std::memcpy(out + start * n_outputs(), a_[n_layers()].data(),
                        B * n_outputs() * sizeof(T));
        }
    }

    // Mean cost over the n rows (without any regularisation term).
    double cost(const T *params, const T *X, const T *Y, std::size_t n) {
        std::lock_guard<std::mutex> lock(mutex_);
        double total = 0;
        for (std::size_t start = 0; start < n; start += kChunkRows) {
            const std::size_t B = std::min(kChunkRows, n - start);
            forward(params, X + start * n_inputs(), B);
            total += output_error(Y + start * n_outputs(), B);
        }
        return total / double(n);
    }

    // Batch-averaged gradients of the cost into grads (the parameter layout);
    // returns the mean cost of the batch.
    double gradients(const T *params, const T *X, const T *Y, std::size_t B, T *grads) {
        std::lock_guard<std::mutex> lock(mutex_);
        forward(params, X, B);
        const double total = output_error(Y, B);
        for (std::size_t l = n_layers(); l >= 1; --l) {
            if (l > 1) backpropagate_error(params, l, B);
            const T *a_prev = l == 1 ? X : a_[l - 1].data();
            // BP4 and BP3 with beta = 0: dW = delta^T a_prev / B, db = mean(delta).
            weight_update(l, a_prev, B, T(1) / T(B), T(0), grads + weight_offsets_[l - 1]);
            bias_update(l, B, T(1) / T(B), T(0), grads + bias_offsets_[l - 1]);
        }
        return total / double(B);
    }

    // One SGD step on the batch, in place (network2.py's L2 rule):
    // w <- (1 - lr*lmbda/n_total) w - lr dC/dw,  b <- b - lr dC/db.
    double sgd_step(T *params, const T *X, const T *Y, std::size_t B, T lr, T lmbda,
                    std::size_t n_total) {
        std::lock_guard<std::mutex> lock(mutex_);
        return sgd_step_unlocked(params, X, Y, B, lr, lmbda, n_total);
    }

    // One epoch of mini-batch SGD over the n rows of X, Y, taken in the given
    // order (order == nullptr: in storage order). Returns the mean cost of the
    // batches as they were seen during the epoch.
    double sgd_epoch(T *params, const T *X, const T *Y, std::size_t n,
                     const std::int64_t *order, std::size_t batch_size, T lr, T lmbda,
                     std::size_t n_total) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (order != nullptr) check_order(order, n);
        double total = 0;
        for (std::size_t start = 0; start < n; start += batch_size) {
            const std::size_t B = std::min(batch_size, n - start);
            const T *X_batch = X + start * n_inputs();
            const T *Y_batch = Y + start * n_outputs();
            if (order != nullptr) {
                gather_batch(X, Y, order + start, B);
                X_batch = batch_x_.data();
                Y_batch = batch_y_.data();
            }
            total += sgd_step_unlocked(params, X_batch, Y_batch, B, lr, lmbda, n_total) * B;
        }
        return total / double(n);
    }

  private:
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
        }
        capacity_ = B;
    }

    // z^l = a^{l-1} (W^l)^T + b^l, a^l = σ(z^l) for l = 1..L, one GEMM each.
    // a^{l-1} is (B, n_{l-1}), W^l is (n_l, n_{l-1}), z^l and a^l are (B, n_l).
    void forward(const T *params, const T *X, std::size_t B) {
        reserve_rows(B);
        const T *a_prev = X;
        for (std::size_t l = 1; l <= n_layers(); ++l) {
            const blasint n_out = blasint(arch_.sizes[l]), n_in = blasint(arch_.sizes[l - 1]);
            blas::gemm(false, true, blasint(B), n_out, n_in, T(1), a_prev, n_in,
                       params + weight_offsets_[l - 1], n_in, T(0), z_[l].data(), n_out);
            add_bias_and_activate(activation_of(l), T(arch_.leaky_slope),
                                  params + bias_offsets_[l - 1], z_[l].data(), a_[l].data(), B,
                                  arch_.sizes[l]);
            a_prev = a_[l].data();
        }
    }

    // BP1 into delta^L; returns the summed cost of the batch.
    double output_error(const T *Y, std::size_t B) {
        const std::size_t L = n_layers();
        return output_cost_and_delta(arch_.output, arch_.cost, z_[L].data(), a_[L].data(), Y,
                                     delta_[L].data(), B, n_outputs());
    }

    // BP2: delta^{l-1} = (delta^l W^l) ⊙ σ'(z^{l-1}); delta^l is (B, n_l),
    // W^l is (n_l, n_{l-1}), delta^{l-1} is (B, n_{l-1}).
    void backpropagate_error(const T *params, std::size_t l, std::size_t B) {
        const blasint n_out = blasint(arch_.sizes[l]), n_in = blasint(arch_.sizes[l - 1]);
        blas::gemm(false, false, blasint(B), n_in, n_out, T(1), delta_[l].data(), n_out,
                   params + weight_offsets_[l - 1], n_in, T(0), delta_[l - 1].data(), n_in);
        multiply_by_derivative(arch_.hidden, T(arch_.leaky_slope), z_[l - 1].data(),
                               delta_[l - 1].data(), B * std::size_t(n_in));
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

    double sgd_step_unlocked(T *params, const T *X, const T *Y, std::size_t B, T lr, T lmbda,
                             std::size_t n_total) {
        forward(params, X, B);
        const double total = output_error(Y, B);
        const T step = lr / T(B);
        const T decay = T(1) - lr * lmbda / T(n_total);
        for (std::size_t l = n_layers(); l >= 1; --l) {
            // BP2 needs W^l before it is updated.
            if (l > 1) backpropagate_error(params, l, B);
            const T *a_prev = l == 1 ? X : a_[l - 1].data();
            weight_update(l, a_prev, B, -step, decay, params + weight_offsets_[l - 1]);
            bias_update(l, B, -step, T(1), params + bias_offsets_[l - 1]);
        }
        return total / double(B);
    }

    void check_order(const std::int64_t *order, std::size_t n) const {
        for (std::size_t i = 0; i < n; ++i) {
            if (order[i] < 0 || std::uint64_t(order[i]) >= n) {
                throw std::invalid_argument("order: index " + std::to_string(order[i]) +
                                            " at position " + std::to_string(i) +
                                            " is outside [0, " + std::to_string(n) + ")");
            }
        }
    }

    // Copies the rows order[0..B) of X and Y into the reused batch buffers.
    void gather_batch(const T *X, const T *Y, const std::int64_t *order, std::size_t B) {
        const std::size_t n_in = n_inputs(), n_out = n_outputs();
        if (batch_x_.size() < B * n_in) batch_x_.resize(B * n_in);
        if (batch_y_.size() < B * n_out) batch_y_.resize(B * n_out);
        for (std::size_t i = 0; i < B; ++i) {
            const std::size_t row = std::size_t(order[i]);
            std::memcpy(batch_x_.data() + i * n_in, X + row * n_in, n_in * sizeof(T));
            std::memcpy(batch_y_.data() + i * n_out, Y + row * n_out, n_out * sizeof(T));
        }
    }

    Architecture arch_;
    std::size_t n_params_ = 0;
    std::vector<std::size_t> weight_offsets_, bias_offsets_;  // per layer l = 1..L, at l-1
    std::size_t capacity_ = 0;                                // rows the workspaces hold
    std::vector<std::vector<T>> z_, a_, delta_;               // index l = 1..L; (B, n_l)
    std::vector<T> batch_x_, batch_y_;                        // gathered rows of a batch
    std::mutex mutex_;  // one computation at a time: the workspaces are shared
};

}  // namespace deltaprop
