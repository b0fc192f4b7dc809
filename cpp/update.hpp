// Where a batch's step goes and how each layer's update follows it: the route of the
// optimizer's rule (the weights themselves, the velocity or a gradient buffer), the
// destination BP3 and BP4 write, and the update of a layer once its step is there.
// The element-wise updates themselves are in optimizers.hpp. No Python here.
#pragma once

#include <algorithm>
#include <cstddef>

#include "blas.hpp"
#include "mlp.hpp"
#include "optimizers.hpp"
#include "sparse_training.hpp"
#include "team.hpp"

namespace deltaprop {

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

// The factors of a step: BP3 and BP4 write alpha times the gradient (a gradient buffer,
// the velocity), or fold weight_step (-lr alpha, rounded as the caller needs it) times
// the gradient into W itself.
template <class T> struct StepScale {
    T alpha;
    T weight_step;
};

// A batch's step under way: the parameters and optimizer state it updates, by which
// rule and route, and where BP3 and BP4 write it.
template <class T> struct Step {
    T *params;
    OptimizerState<T> &state;
    const UpdateRule &rule;
    Route<T> route;
    GradientDestination<T> into;
    bool more_follow;  // another batch of the same sequence comes next (see begin_sequence)
    LazyVelocity<T> *lazy_first_layer = nullptr;  // momentum on sparse X: W^1's touched rows
};

template <class T> class Updates {
  public:
    explicit Updates(Mlp<T> &mlp) : mlp_(mlp) {}

    // The step of a batch by `rule`, BP3 and BP4 scaled by `scale`: its destination is a
    // gradient buffer, the velocity (which holds mu V already: see begin_sequence), or the
    // weights with their L2 decay.
    Step<T> begin(T *params, OptimizerState<T> &state, const UpdateRule &rule, StepScale<T> scale,
                  bool more_follow) {
        using Into = typename Route<T>::Into;
        const Route<T> route = route_of<T>(rule);
        GradientDestination<T> into{};
        switch (route.into) {
            case Into::weights:
                into = {params, scale.weight_step, T(1 - rule.lr * rule.l2), T(1)};
                break;
            case Into::velocity: into = {state.first, scale.alpha, T(1), T(1)}; break;
            case Into::buffer:
                if (gradient_.size() < mlp_.n_params()) gradient_.resize(mlp_.n_params());
                into = {gradient_.data(), scale.alpha, T(0), T(0)};
                break;
        }
        return {params, state, rule, route, into, more_follow};
    }

    // Layer l's update once its step is in the destination (and summed): momentum's step,
    // or the update that reads the gradient (plain SGD is done: the GEMM wrote the new W).
    // False: the update left optimizer state non-finite.
    bool finish_layer(const Step<T> &step, std::size_t l) const {
        using Into = typename Route<T>::Into;
        switch (step.route.into) {
            case Into::weights: return true;
            case Into::velocity:
                if (l == 1 && step.lazy_first_layer) {
                    const std::size_t first = mlp_.layer(1).weights;
                    step.lazy_first_layer->step(step.params + first, step.state.first + first,
                                                step.more_follow);
                    velocity_step(step.params, step.state.first, step.rule, l, step.more_follow,
                                  false);
                    return true;
                }
                velocity_step(step.params, step.state.first, step.rule, l, step.more_follow);
                return true;
            case Into::buffer:
                return update_layer(step.params, step.state, step.rule, step.route.update,
                                    step.into.out, l);
        }
        return true;
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

  private:
    // Momentum's step for layer l, right after BP4 and BP3 added its gradient to the
    // velocity (the update is memory-bound: W^l and V^l are still in cache). Only the
    // weights are regularised. The last batch of a call leaves V itself, the others mu V.
    // weights_too: false when LazyVelocity steps W^1's weights (their touched rows).
    void velocity_step(T *params, T *velocity, const UpdateRule &rule, std::size_t l,
                       bool more_follow, bool weights_too = true) const {
        const LayerParams &layer = mlp_.layer(l);
        const T lr = T(rule.lr), l2 = T(rule.l2), l1 = T(rule.l1);
        const T decay = more_follow ? T(rule.momentum) : T(1);
        T *weights = params + layer.weights, *weights_velocity = velocity + layer.weights;
        if (weights_too) {
            bf16 *copy = mlp_.weight_copy(l);
            Team::instance().parallel_for(
                layer.biases - layer.weights, kElementsPerJob, blas::get_num_threads(),
                [=](std::size_t begin, std::size_t end) {
                    momentum_step(weights + begin, weights_velocity + begin, end - begin, lr, l2,
                                  l1, decay);
                    if (copy) Mlp<T>::round_part(weights + begin, copy + begin, end - begin);
                });
            if (copy) mlp_.mark_weight_copy_refreshed(l);
        }
        momentum_step(params + layer.biases, velocity + layer.biases, layer.end - layer.biases, lr,
                      T(0), T(0), decay);
    }

    // Parameters [begin, end) of the flat buffer.
    struct Segment {
        std::size_t begin, end;
    };

    // Layer l's weights (regularised) and biases; false as finish_layer.
    bool update_layer(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                      GradientUpdate<T> update, const T *gradient, std::size_t l) const {
        const LayerParams &layer = mlp_.layer(l);
        const Segment weights{layer.weights, layer.biases}, biases{layer.biases, layer.end};
        bf16 *copy = mlp_.weight_copy(l);
        const bool weights_finite =
            update_segment(params, state, rule, update, gradient, weights, true, copy);
        if (copy) mlp_.mark_weight_copy_refreshed(l);
        return update_segment(params, state, rule, update, gradient, biases, false) &&
               weights_finite;
    }

    // The update is element-wise: the team shares the segment.
    static bool update_segment(T *params, OptimizerState<T> &state, const UpdateRule &rule,
                               GradientUpdate<T> update, const T *gradient, Segment at,
                               bool regularise, bf16 *copy = nullptr) {
        const auto update_part = [&](std::size_t begin, std::size_t end) {
            const std::size_t from = at.begin + begin;
            T *first = state.first ? state.first + from : nullptr;
            T *second = state.second ? state.second + from : nullptr;
            const bool finite = update(rule, *state.step, params + from, gradient + from, first,
                                       second, end - begin, regularise);
            if (copy) Mlp<T>::round_part(params + from, copy + begin, end - begin);
            return finite;
        };
        return Team::instance().parallel_all(at.end - at.begin, kElementsPerJob,
                                             blas::get_num_threads(), update_part);
    }

    Mlp<T> &mlp_;  // its bfloat16 weight copies, which the updates refresh
    Buffer<T> gradient_;  // ∂C/∂params of the batch, for the updates that read it
};

}  // namespace deltaprop
