// The multilayer perceptron's math on raw pointers: the batched forward pass,
// backpropagation (BP1-BP4), and predict, cost and gradients built on them. No
// Python here, and no training loop (trainer.hpp).
//
// Parameters live in one flat buffer owned by the caller, layer after layer:
// W^l, row-major (n_l, n_{l-1}), then b^l (n_l,), for l = 1..L. Gradients use
// the same layout. Batches are row-major: X is (B, n_0), Y is (B, n_L).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "activations.hpp"
#include "blas.hpp"
#include "matmul.hpp"
#include "output_layer.hpp"
#include "sparse.hpp"
#include "team.hpp"

namespace deltaprop {

struct Architecture {
    std::vector<std::size_t> sizes;  // n_0, n_1, ..., n_L
    std::vector<Activation> hidden;  // σ of the hidden layers 1..L-1, one each
    Activation output;
    Cost cost;
    std::vector<double> leaky_slopes;  // "leaky_relu"'s slope of hidden layers 1..L-1
};

// Predicting or evaluating many samples runs chunks of rows whose workspace takes
// about this many bytes: large GEMMs, bounded memory.
constexpr std::size_t kChunkBytes = std::size_t(16) << 20;
// More parameters than any machine holds, and few enough for every size computation.
constexpr std::size_t kMaxParams = std::size_t(1) << 48;

// The cost summed over a batch's samples (each times its sample_weight, when given)
// and the sum of their sample_weight (B when not given).
struct CostAndSampleWeight {
    double cost;
    double sample_weight;
};

template <class T> bool all_finite(const T *values, std::size_t count) {
    decltype(not_finite_bit(T(0))) not_finite = 0;
    for (std::size_t k = 0; k < count; ++k) not_finite |= not_finite_bit(values[k]);
    return not_finite == 0;
}

// all_finite on up to `threads` threads of the team, for a user's X: the pass is
// memory-bound, and one core does not draw the memory's whole bandwidth (about 2x on 2
// cores).
template <class T> bool all_finite(const T *values, std::size_t count, int threads) {
    return Team::instance().parallel_all(count, kElementsPerJob, threads,
                                         [values](std::size_t begin, std::size_t end) {
                                             return all_finite(values + begin, end - begin);
                                         });
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

// Inverted-dropout masks of a batch's hidden layers: masks[l] is (B, n_l) for
// l = 1..L-1, every entry 0 or 1 / (1 - rate).
template <class T> using DropoutMasks = std::vector<Buffer<T>>;

// Where backward() puts ∂C/∂W^l and ∂C/∂b^l, laid out like the parameters:
// W^l's place <- alpha (δ^l)^T a^{l-1} + weight_beta W^l's place (BP4), and
// b^l's place <- alpha sum_rows(δ^l) + bias_beta b^l's place (BP3).
template <class T> struct GradientDestination {
    T *out;  // a gradient buffer, the parameters themselves or an optimizer's velocity
    T alpha;
    T weight_beta;
    T bias_beta;
};

// Where layer l's parameters sit in the flat buffer: W^l in [weights, biases), b^l in
// [biases, end).
struct LayerParams {
    std::size_t weights, biases, end;
};

template <class T> class Mlp {
  public:
    explicit Mlp(Architecture arch) : arch_(std::move(arch)) {
        validate();
        std::size_t offset = 0;
        for (std::size_t l = 1; l < arch_.sizes.size(); ++l) {
            // Layer sizes are below 2^31, so one layer's count cannot overflow; the sum can.
            const std::size_t count = arch_.sizes[l] * arch_.sizes[l - 1] + arch_.sizes[l];
            if (count > kMaxParams - offset) {
                throw std::invalid_argument("sizes: more than 2^48 parameters");
            }
            const std::size_t biases = offset + arch_.sizes[l] * arch_.sizes[l - 1];
            layers_.push_back({offset, biases, offset + count});
            offset += count;
        }
        n_params_ = offset;
        z_.resize(n_layers() + 1);
        a_.resize(n_layers() + 1);
        delta_.resize(n_layers() + 1);
        derivative_.resize(n_layers() + 1);
        a16_.resize(n_layers() + 1);
        delta16_.resize(n_layers() + 1);
        w16_.resize(n_layers() + 1);
        w16_refreshed_.assign(n_layers() + 1, false);
    }

    // The precision of the forward pass's, BP2's and BP4's GEMMs (see matmul.hpp);
    // bfloat16 for float32 networks only.
    MatmulPrecision matmul_precision() const { return precision_; }
    void set_matmul_precision(MatmulPrecision precision) {
        if (precision == MatmulPrecision::bfloat16 && !std::is_same_v<T, float>) {
            throw std::invalid_argument(
                "matmul_precision: 'bfloat16' needs a float32 network (float64 computes in "
                "float64)");
        }
        precision_ = precision;
        forget_refreshed_weight_copies();
        if (precision == MatmulPrecision::bfloat16) {
            for (std::size_t l = 1; l <= n_layers(); ++l) {
                w16_[l].resize(arch_.sizes[l] * arch_.sizes[l - 1]);
            }
        }
        capacity_ = 0;  // reserve_rows sizes the bfloat16 copies next time
    }

    // bfloat16 precision: the copy of W^l that an update may refresh as it writes W^l,
    // while W^l is in cache; nullptr otherwise, and for W^1 when the last forward pass's
    // input was sparse (its product reads W^1 itself). Marked refreshed, the next forward
    // pass uses it as it is; the trainer forgets the marks when a call starts and ends and
    // when it restores parameters, so that no other writer of W^l meets a stale copy.
    bf16 *weight_copy(std::size_t l) {
        if (!bfloat16() || (l == 1 && first_input_sparse_)) return nullptr;
        return w16_[l].data();
    }
    void mark_weight_copy_refreshed(std::size_t l) { w16_refreshed_[l] = true; }
    void forget_refreshed_weight_copies() {
        std::fill(w16_refreshed_.begin(), w16_refreshed_.end(), false);
    }

    // to_bf16 of one job's part of a float32 network's values, on its thread.
    static void round_part(const T *from, bf16 *to, std::size_t count) {
        if constexpr (std::is_same_v<T, float>) to_bf16(from, to, count);
    }

    const Architecture &architecture() const { return arch_; }
    std::size_t n_layers() const { return arch_.sizes.size() - 1; }
    std::size_t n_units(std::size_t l) const { return arch_.sizes[l]; }
    std::size_t n_inputs() const { return arch_.sizes.front(); }
    std::size_t n_outputs() const { return arch_.sizes.back(); }
    std::size_t n_params() const { return n_params_; }
    const LayerParams &layer(std::size_t l) const { return layers_[l - 1]; }
    Activation activation(std::size_t l) const { return activation_of(l); }
    // z^l and δ^l (B, n_l) of the last forward() and backward(), as the trainer left them.
    const T *z(std::size_t l) const { return z_[l].data(); }
    const T *delta(std::size_t l) const { return delta_[l].data(); }

    // Whether the parameters (and every array laid out like them) hold W^1 transposed,
    // (n_0, n_1): set while training on sparse X (sparse_training.hpp), whose two
    // products then read and write rows of it.
    bool first_layer_transposed() const { return first_layer_transposed_; }
    void set_first_layer_transposed(bool transposed) { first_layer_transposed_ = transposed; }

    // out (n, n_L) = a^L for the n rows of X.
    void predict(const T *params, Input<T> X, std::size_t n, T *out) {
        const std::size_t chunk = chunk_rows();
        for (std::size_t start = 0; start < n; start += chunk) {
            const std::size_t B = std::min(chunk, n - start);
            require_finite(forward(params, X.from(start, n_inputs()), B, nullptr, false));
            std::memcpy(out + start * n_outputs(), a_[n_layers()].data(),
                        B * n_outputs() * sizeof(T));
        }
    }

    // A look inside the forward and backward passes of n rows: z^l and a^l, l = 1..L,
    // into z_out and a_out, and with targets Y (else nullptr) δ^l = ∂C_x/∂z^l of each
    // row's cost (BP1, then BP2 down to l = 1) into delta_out. Each output holds the
    // layers one after another, layer l as an (n, n_l) block.
    void layers(const T *params, Input<T> X, const T *Y, std::size_t n, T *z_out, T *a_out,
                T *delta_out) {
        const std::size_t chunk = chunk_rows();
        for (std::size_t start = 0; start < n; start += chunk) {
            const std::size_t B = std::min(chunk, n - start);
            require_finite(forward(params, X.from(start, n_inputs()), B, nullptr, Y != nullptr));
            if (Y != nullptr) {
                require_finite_result(std::isfinite(output_error(Y + start * n_outputs(), B)));
                round_output_error(B);
                for (std::size_t l = n_layers(); l > 1; --l) backpropagate_error(params, l, B);
            }
            std::size_t offset = 0;  // of layer l's block
            for (std::size_t l = 1; l <= n_layers(); ++l) {
                const std::size_t at = offset + start * arch_.sizes[l];
                const std::size_t bytes = B * arch_.sizes[l] * sizeof(T);
                std::memcpy(z_out + at, z_[l].data(), bytes);
                std::memcpy(a_out + at, a_[l].data(), bytes);
                if (Y != nullptr) std::memcpy(delta_out + at, delta_[l].data(), bytes);
                offset += n * arch_.sizes[l];
            }
        }
    }

    // Mean cost over the n rows (without any regularisation term).
    double cost(const T *params, Input<T> X, const T *Y, std::size_t n) {
        double total = 0;
        const std::size_t chunk = chunk_rows();
        for (std::size_t start = 0; start < n; start += chunk) {
            const std::size_t B = std::min(chunk, n - start);
            require_finite(forward(params, X.from(start, n_inputs()), B, nullptr, false));
            total += output_error(Y + start * n_outputs(), B);
        }
        require_finite_result(std::isfinite(total));
        return total / double(n);
    }

    // The full-batch objective over all n rows, in chunks of bounded workspace: the
    // (sample-weighted) mean cost plus l2/2 ||W||^2 + l1 ||W||_1 over the weights (not the
    // biases), and its gradient into grads. Each chunk's BP4 and BP3 accumulate into grads
    // (beta = 1 after the first), scaled by the chunk's share of the total sample weight.
    double objective(const T *params, Input<T> X, const T *Y, const T *sample_weight, std::size_t n,
                     double l2, double l1, T *grads) {
        double total_weight = double(n);
        if (sample_weight != nullptr) {
            total_weight = 0;
            for (std::size_t i = 0; i < n; ++i) total_weight += double(sample_weight[i]);
        }
        if (!(total_weight > 0)) {
            throw std::invalid_argument("sample_weight: the weights must have a positive sum");
        }
        double cost = 0;
        const std::size_t chunk = chunk_rows();
        for (std::size_t start = 0; start < n; start += chunk) {
            const std::size_t B = std::min(chunk, n - start);
            require_finite(forward(params, X.from(start, n_inputs()), B, nullptr, true));
            const CostAndSampleWeight seen = output_error(
                Y + start * n_outputs(), sample_weight ? sample_weight + start : nullptr, B);
            cost += seen.cost;
            // BP1 gave row i the factor w_i B / (chunk's weight): alpha makes it w_i / total.
            const T alpha = T(seen.sample_weight / total_weight / double(B));
            const T beta = start == 0 ? T(0) : T(1);
            backward(params, X.from(start, n_inputs()), B, {grads, alpha, beta, beta});
        }
        cost = cost / total_weight + regularise(params, l2, l1, grads);
        require_finite_result(std::isfinite(cost) && all_finite(grads, n_params()));
        return cost;
    }

    // Batch-averaged gradients of the cost into grads (the parameter layout);
    // returns the mean cost of the batch.
    double gradients(const T *params, Input<T> X, const T *Y, std::size_t B, T *grads) {
        require_finite(forward(params, X, B, nullptr, true));
        const double total = output_error(Y, B);
        backward(params, X, B, {grads, T(1) / T(B), T(0), T(0)});
        require_finite_result(std::isfinite(total) && all_finite(grads, n_params()));
        return total / double(B);
    }

    // l2/2 ||W||^2 + l1 ||W||_1 over every W^l (biases are not regularised); its gradient
    // l2 W + l1 sign(W) is added to grads.
    double regularise(const T *params, double l2, double l1, T *grads) const {
        if (l2 == 0 && l1 == 0) return 0;
        double penalty = 0;
        for (std::size_t l = 1; l <= n_layers(); ++l) {
            const LayerParams &at = layer(l);
            for (std::size_t k = at.weights; k < at.biases; ++k) {
                const double w = double(params[k]);
                penalty += 0.5 * l2 * w * w + l1 * std::abs(w);
                grads[k] += T(l2) * params[k] + T(l1) * sign(params[k]);
            }
        }
        return penalty;
    }

    // z^l = a^{l-1} (W^l)^T + b^l, a^l = σ(z^l) for l = 1..L, one GEMM each.
    // a^{l-1} is (B, n_{l-1}), W^l is (n_l, n_{l-1}), z^l and a^l are (B, n_l).
    // With `masks` (training only), hidden a^l is multiplied by masks[l].
    // Returns whether every z was finite. With `for_training`, sigmoid layers also keep
    // σ'(z) for the backward pass (one exp for both). The masks are kept for BP2 too.
    bool forward(const T *params, Input<T> X, std::size_t B, const DropoutMasks<T> *masks,
                 bool for_training) {
        reserve_rows(B);
        masks_ = masks;
        derivatives_kept_ = for_training;
        first_input_sparse_ = X.sparse != nullptr;
        const T *a_prev = X.dense;
        if (bfloat16() && X.dense) round_to_bf16(X.dense, a16_[0].data(), B * n_inputs());
        bool finite = true;
        for (std::size_t l = 1; l <= n_layers(); ++l) {
            const std::size_t n_out = arch_.sizes[l], n_in = arch_.sizes[l - 1];
            const T *W = params + layer(l).weights;
            if (l == 1 && X.sparse && first_layer_transposed_) {
                sparse_forward_transposed(X, B, W, n_out, z_[1].data());  // W holds (W^1)^T
            } else if (l == 1 && X.sparse) {
                // Sparse X: z^1 = X (W^1)^T, sparse x dense, in the dtype's precision.
                sparse_forward(X, B, W, n_out, n_in, z_[1].data());
            } else if (bfloat16()) {
                // The bfloat16 copy of W^l, refreshed from the parameters of this pass (the
                // previous update changed them) unless that update refreshed it as it wrote
                // W^l; BP2 reads it too.
                if (!w16_refreshed_[l]) round_to_bf16(W, w16_[l].data(), n_out * n_in);
                w16_refreshed_[l] = false;
                gemm_bf16(false, true, B, n_out, n_in, T(1), {a16_[l - 1].data(), n_in, B},
                          {w16_[l].data(), n_in, n_out}, T(0), z_[l].data(), n_out);
            } else if (B == 1) {
                // One row (a single prediction): z = W a, a matrix-vector product. GEMM would
                // first copy ("pack") all of W for that one row, several times the arithmetic.
                blas::gemv(false, n_out, n_in, T(1), W, n_in, a_prev, T(0), z_[l].data());
            } else {
                blas::gemm(false, true, B, n_out, n_in, T(1), a_prev, n_in, W, n_in, T(0),
                           z_[l].data(), n_out);
            }
            finite &= activate_layer(params, l, B);
            a_prev = a_[l].data();
        }
        return finite;
    }

    // BP1 into δ^L after forward(); without sample_weight (nullptr) the cost is the sum
    // over the B rows, each with sample_weight 1.
    CostAndSampleWeight output_error(const T *Y, const T *sample_weight, std::size_t B) {
        if (sample_weight == nullptr) return {output_error(Y, B), double(B)};
        return sample_weighted_output_error(Y, sample_weight, B);
    }

    bool output_error_is_finite(std::size_t B) const {
        return all_finite(delta_[n_layers()].data(), B * n_outputs());
    }

    // BP2-BP4 after BP1, layer by layer from L down to 1: δ^{l-1} (BP2), then ∂C/∂W^l
    // (BP4) and ∂C/∂b^l (BP3) into `into`, then after_layer(l). X is (B, n_0) = a^0.
    // When `into` is the parameters (or after_layer changes them), W^l changes only after
    // BP2 has used it for δ^{l-1}: the order BP2, BP4, BP3 keeps that.
    template <class AfterLayer>
    void backward(const T *params, Input<T> X, std::size_t B, const GradientDestination<T> &into,
                  AfterLayer &&after_layer) {
        round_output_error(B);
        for (std::size_t l = n_layers(); l >= 1; --l) {
            if (l > 1) backpropagate_error(params, l, B);
            const T *a_prev = l == 1 ? X.dense : a_[l - 1].data();
            if (l == 1 && X.sparse && first_layer_transposed_) {  // into (W^1)^T's layout
                sparse_weight_gradient_transposed(X, B, delta_[1].data(), n_units(1), n_inputs(),
                                                  into.alpha, into.weight_beta,
                                                  into.out + layer(1).weights);
            } else if (l == 1 && X.sparse) {  // BP4 of sparse X: dense x sparse
                sparse_weight_gradient(X, B, delta_[1].data(), n_units(1), n_inputs(), into.alpha,
                                       into.weight_beta, into.out + layer(1).weights);
            } else {
                weight_gradient(l, a_prev, B, into.alpha, into.weight_beta,
                                into.out + layer(l).weights);
            }
            bias_gradient(l, B, into.alpha, into.bias_beta, into.out + layer(l).biases);
            after_layer(l);
        }
    }

    void backward(const T *params, Input<T> X, std::size_t B, const GradientDestination<T> &into) {
        backward(params, X, B, into, [](std::size_t) {});
    }

  private:
    // Finite inputs, targets and parameters can still overflow the cost or a δ (an
    // identity output 1e200 away from its target): never hand back non-finite numbers.
    static void require_finite_result(bool finite) {
        if (!finite) {
            throw std::domain_error(
                "the cost or its gradient overflowed (is not finite): the inputs, targets or "
                "parameters are too large");
        }
    }

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
            blas::check_fits(n, "layer size");
        }
        const std::size_t n_hidden = arch_.sizes.size() - 2;
        if (arch_.hidden.size() != n_hidden || arch_.leaky_slopes.size() != n_hidden) {
            throw std::invalid_argument("activation, leaky_slope: expected one per hidden layer (" +
                                        std::to_string(n_hidden) + ")");
        }
        for (Activation f : arch_.hidden) {
            if (f == Activation::softmax) {
                throw std::invalid_argument("activation: softmax is only available as the output");
            }
        }
        check_pairing(arch_.output, arch_.cost, arch_.sizes.back());
    }

    Activation activation_of(std::size_t l) const {
        return l == n_layers() ? arch_.output : arch_.hidden[l - 1];
    }

    // The slope of layer l's "leaky_relu" (the output is never one).
    double leaky_slope_of(std::size_t l) const {
        return l == n_layers() ? 0.0 : arch_.leaky_slopes[l - 1];
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
        blas::check_fits(B, "batch size");
        for (std::size_t l = 1; l <= n_layers(); ++l) {
            const std::size_t count = B * arch_.sizes[l];
            blas::check_fits(count, "batch size * layer size");
            z_[l].resize(count);
            a_[l].resize(count);
            delta_[l].resize(count);
            if (activation_of(l) == Activation::sigmoid) derivative_[l].resize(count);
            if (bfloat16()) delta16_[l].resize(count);
            if (bfloat16() && l < n_layers()) a16_[l].resize(count);
        }
        if (bfloat16()) a16_[0].resize(B * n_inputs());
        capacity_ = B;
    }

    // Where the forward pass keeps σ'(z^l) (sigmoid layers, training), else nullptr.
    T *kept_derivative(std::size_t l) {
        if (!derivatives_kept_ || activation_of(l) != Activation::sigmoid) return nullptr;
        return derivative_[l].data();
    }

    // BP1 into δ^L; returns the summed cost of the batch. z^L, a^L, Y, δ^L are (B, n_L).
    double output_error(const T *Y, std::size_t B) {
        const std::size_t L = n_layers();
        return output_cost_and_delta(arch_.output, arch_.cost, z_[L].data(), a_[L].data(), Y,
                                     delta_[L].data(), B, n_outputs(), kept_derivative(L));
    }

    // BP1 for a batch with sample_weight w_i ((B,)): the cost is sum_i w_i C_i, and δ^L's
    // rows are scaled by w_i B / sum(w), so that the 1/B of BP3 and BP4 gives the gradient
    // of the mean cost weighted by sample_weight, sum_i w_i C_i / sum(w).
    CostAndSampleWeight sample_weighted_output_error(const T *Y, const T *sample_weight,
                                                     std::size_t B) {
        const std::size_t L = n_layers(), n = n_outputs();
        CostAndSampleWeight seen{0, 0};
        const T *derivative = kept_derivative(L);
        for (std::size_t i = 0; i < B; ++i) {
            const double row_cost =
                output_cost_and_delta(arch_.output, arch_.cost, z_[L].data() + i * n,
                                      a_[L].data() + i * n, Y + i * n, delta_[L].data() + i * n,
                                      std::size_t(1), n, derivative ? derivative + i * n : nullptr);
            seen.cost += double(sample_weight[i]) * row_cost;
            seen.sample_weight += double(sample_weight[i]);
        }
        for (std::size_t i = 0; i < B; ++i) {
            const T scale = seen.sample_weight > 0
                                ? T(double(sample_weight[i]) * double(B) / seen.sample_weight)
                                : T(0);
            T *delta_row = delta_[L].data() + i * n;
            for (std::size_t j = 0; j < n; ++j) delta_row[j] *= scale;
        }
        return seen;
    }

    // BP2: δ^{l-1} = (δ^l W^l) ⊙ σ'(z^{l-1}), with σ layer l-1's own activation; δ^l is
    // (B, n_l), W^l is (n_l, n_{l-1}), δ^{l-1} is (B, n_{l-1}). A dropout mask on a^{l-1}
    // is part of its derivative.
    void backpropagate_error(const T *params, std::size_t l, std::size_t B) {
        const std::size_t n_out = arch_.sizes[l], n_in = arch_.sizes[l - 1];
        const std::size_t count = B * n_in;
        T *delta = delta_[l - 1].data();
        if (bfloat16()) {
            gemm_bf16(false, false, B, n_in, n_out, T(1), {delta16_[l].data(), n_out, B},
                      {w16_[l].data(), n_in, n_out}, T(0), delta, n_in);
        } else {
            blas::gemm(false, false, B, n_in, n_out, T(1), delta_[l].data(), n_out,
                       params + layer(l).weights, n_in, T(0), delta, n_in);
        }
        const T *derivative = kept_derivative(l - 1), *z = z_[l - 1].data();
        const T *mask = masks_ ? (*masks_)[l - 1].data() : nullptr;
        // δ^{l-1}'s bfloat16 copy for the next BP2 and BP4, made while δ^{l-1} is in cache.
        bf16 *delta16 = bfloat16() ? delta16_[l - 1].data() : nullptr;
        Team::instance().parallel_for(
            count, kElementsPerJob, blas::get_num_threads(),
            [&](std::size_t begin, std::size_t end) {
                if (derivative) {
                    multiply(delta + begin, derivative + begin, end - begin);
                } else {
                    multiply_by_derivative(activation_of(l - 1), T(leaky_slope_of(l - 1)),
                                           z + begin, delta + begin, end - begin);
                }
                if (mask) multiply(delta + begin, mask + begin, end - begin);
                if (delta16) round_part(delta + begin, delta16 + begin, end - begin);
            });
    }

    // z^l += b^l, a^l = σ(z^l) (times the dropout mask of a hidden layer) for B rows, rows
    // shared among the team; whether every z was finite.
    bool activate_layer(const T *params, std::size_t l, std::size_t B) {
        const std::size_t n = arch_.sizes[l];
        const Activation f = activation_of(l);
        const T *b = params + layer(l).biases, *mask = nullptr;
        if (masks_ && l < n_layers()) mask = (*masks_)[l].data();
        T *z = z_[l].data(), *a = a_[l].data(), *derivative = kept_derivative(l);
        // a^l's bfloat16 copy, the next layer's input and BP4's, made while a^l is in cache.
        bf16 *a16 = bfloat16() && l < n_layers() ? a16_[l].data() : nullptr;
        const auto activate_rows = [&](std::size_t begin, std::size_t end) {
            const std::size_t at = begin * n, rows = end - begin;
            T *d = derivative ? derivative + at : nullptr;
            const bool finite =
                add_bias_and_activate(f, T(leaky_slope_of(l)), b, z + at, a + at, rows, n, d);
            if (mask) multiply(a + at, mask + at, rows * n);
            if (a16) round_part(a + at, a16 + at, rows * n);
            return finite;
        };
        const std::size_t rows_per_job = std::max<std::size_t>(1, kElementsPerJob / n);
        return Team::instance().parallel_all(B, rows_per_job, blas::get_num_threads(),
                                             activate_rows);
    }

    // BP4 in one GEMM: dW <- alpha (δ^l)^T a^{l-1} + beta dW, where δ^l is (B, n_l),
    // a_prev = a^{l-1} is (B, n_{l-1}) and dW is (n_l, n_{l-1}).
    void weight_gradient(std::size_t l, const T *a_prev, std::size_t B, T alpha, T beta, T *dW) {
        const std::size_t n_out = arch_.sizes[l], n_in = arch_.sizes[l - 1];
        // B = 0 (a process of data-parallel training without rows): dW <- beta dW alone.
        if (bfloat16() && B > 0) {
            gemm_bf16(true, false, n_out, n_in, B, alpha, {delta16_[l].data(), n_out, B},
                      {a16_[l - 1].data(), n_in, B}, beta, dW, n_in);
            return;
        }
        blas::gemm(true, false, n_out, n_in, B, alpha, delta_[l].data(), n_out, a_prev, n_in, beta,
                   dW, n_in);
    }

    bool bfloat16() const {
        if constexpr (std::is_same_v<T, float>) return precision_ == MatmulPrecision::bfloat16;
        return false;
    }

    // δ^L's bfloat16 copy (bfloat16 precision), the operand of the first BP2 and BP4; the
    // hidden layers' copies are made by the passes that write their δ.
    void round_output_error(std::size_t B) {
        if (bfloat16()) {
            round_to_bf16(delta_[n_layers()].data(), delta16_[n_layers()].data(),
                          B * n_outputs());
        }
    }

    // The bfloat16 copy of `count` values (float32 networks only), on the team.
    void round_to_bf16(const T *from, bf16 *to, std::size_t count) const {
        if constexpr (std::is_same_v<T, float>) {
            to_bf16(from, to, count, blas::get_num_threads());
        }
    }

    // One GEMM with bfloat16 operands (see bfloat16_gemm); M = 0 or N = 0 does nothing.
    void gemm_bf16(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K,
                   T alpha, const Bfloat16Operand &A, const Bfloat16Operand &B, T beta, T *C,
                   std::size_t ldc) {
        if constexpr (std::is_same_v<T, float>) {
            if (M == 0 || N == 0) return;
            const std::size_t needed = A.stored_rows * A.ld + B.stored_rows * B.ld;
            if (!Bfloat16Path::instance().native() && scratch_.size() < needed) {
                scratch_.resize(needed);
            }
            bfloat16_gemm(trans_a, trans_b, M, N, K, alpha, A, B, beta, C, ldc,
                          blas::get_num_threads(), scratch_.data());
        }
    }

    // BP3: db <- alpha sum_rows(δ^l) + beta db; δ^l is (B, n_l), db is (n_l,).
    // The team shares the columns: each db[j] sums its rows in the same order.
    void bias_gradient(std::size_t l, std::size_t B, T alpha, T beta, T *db) {
        const std::size_t n = arch_.sizes[l];
        const T *delta = delta_[l].data();
        const auto sum_columns = [&](std::size_t begin, std::size_t end) {
            // As in BLAS, beta = 0 means db is not read: it may hold garbage or NaN.
            if (beta == T(0)) {
                std::fill(db + begin, db + end, T(0));
            } else if (beta != T(1)) {
                for (std::size_t j = begin; j < end; ++j) db[j] *= beta;
            }
            for (std::size_t i = 0; i < B; ++i) {
                const T *row = delta + i * n;
                for (std::size_t j = begin; j < end; ++j) db[j] += alpha * row[j];
            }
        };
        const std::size_t columns_per_job =
            std::max<std::size_t>(1, kElementsPerJob / std::max<std::size_t>(B, 1));
        Team::instance().parallel_for(n, columns_per_job, blas::get_num_threads(), sum_columns);
    }

    Architecture arch_;
    std::size_t n_params_ = 0;
    std::vector<LayerParams> layers_;         // layer l at l - 1
    std::size_t capacity_ = 0;                // rows the workspaces hold
    std::vector<Buffer<T>> z_, a_, delta_;    // index l = 1..L; (B, n_l)
    std::vector<Buffer<T>> derivative_;       // σ'(z^l) of sigmoid layers, (B, n_l)
    bool derivatives_kept_ = false;           // did forward() fill derivative_?
    const DropoutMasks<T> *masks_ = nullptr;  // the masks of forward(), for BP2
    MatmulPrecision precision_ = MatmulPrecision::highest;
    bool first_layer_transposed_ = false;  // see first_layer_transposed()
    // bfloat16 precision: copies of X = a^0 and hidden a^l (B, n_l), of δ^l (B, n_l) and
    // of W^l (n_l, n_{l-1}), index l; the fallback's float32 operands.
    std::vector<Buffer<bf16>> a16_, delta16_, w16_;
    std::vector<bool> w16_refreshed_;  // see weight_copy
    bool first_input_sparse_ = false;  // the last forward pass's X (see weight_copy)
    Buffer<float> scratch_;
};

}  // namespace deltaprop
