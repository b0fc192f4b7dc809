// Parameter updates after a mini-batch: SGD, momentum, Nesterov momentum, Adam and
// Rprop, all one element-wise pass over a parameter segment, in place. Plain SGD and
// momentum take their gradient in the BP4 GEMM itself (update.hpp); the others read
// it from a gradient buffer.
// Semantics follow PyTorch's torch.optim (momentum buffers start at zero, so
// the first momentum step is plain SGD; Adam corrects its moments' bias).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "activations.hpp"

namespace deltaprop {

enum class Method { sgd, momentum, nesterov, adam, rprop };

inline Method parse_method(const std::string &name) {
    if (name == "sgd") return Method::sgd;
    if (name == "momentum") return Method::momentum;
    if (name == "nesterov") return Method::nesterov;
    if (name == "adam") return Method::adam;
    if (name == "rprop") return Method::rprop;
    throw std::invalid_argument("optimizer: unknown method '" + name + "'");
}

// Number of state arrays (each the size of the parameters) a method keeps.
inline int state_arrays(Method method) {
    switch (method) {
        case Method::sgd: return 0;
        case Method::momentum:
        case Method::nesterov: return 1;
        case Method::adam:
        case Method::rprop: return 2;
    }
    return 0;
}

// Hyper-parameters of an update, in double whatever the network's dtype.
struct UpdateRule {
    Method method = Method::sgd;
    double lr = 0.1;
    double momentum = 0;  // mu of momentum and Nesterov
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    // Regularisation of the weights (never the biases), added to their gradient:
    // g + l2 w + l1 sign(w). With Nielsen's lambda this is l2 = lambda / n.
    double l2 = 0;
    double l1 = 0;
    double decoupled_decay = 0;  // AdamW: w <- (1 - lr decay) w, outside the gradient
    // Rprop: a step grows by eta_plus while the gradient keeps its sign, shrinks by
    // eta_minus when it flips, and stays within [step_min, step_max].
    double eta_minus = 0.5, eta_plus = 1.2, step_min = 1e-6, step_max = 50;
};

inline void check_rule(const UpdateRule &rule) {
    const auto finite = [](double x) { return std::isfinite(x); };
    const bool ok = finite(rule.lr) && rule.lr > 0 && finite(rule.momentum) && rule.momentum >= 0 &&
                    rule.momentum < 1 && rule.beta1 >= 0 && rule.beta1 < 1 && rule.beta2 >= 0 &&
                    rule.beta2 < 1 && finite(rule.eps) && rule.eps > 0 && finite(rule.l2) &&
                    rule.l2 >= 0 && finite(rule.l1) && rule.l1 >= 0 &&
                    finite(rule.decoupled_decay) && rule.decoupled_decay >= 0 &&
                    rule.eta_minus > 0 && rule.eta_minus < 1 && finite(rule.eta_plus) &&
                    rule.eta_plus > 1 && rule.step_min > 0 && finite(rule.step_max) &&
                    rule.step_min <= rule.step_max;
    if (!ok) {
        throw std::invalid_argument(
            "rule: needs a finite lr > 0, momentum and betas in [0, 1), eps > 0, finite "
            "non-negative regularisation, 0 < eta_minus < 1 < eta_plus and "
            "0 < step_min <= step_max");
    }
}

// The optimizer's memory: velocity (momentum, Nesterov) or Adam's first and
// second moments, laid out like the parameters; *step counts the updates made
// (kept in the caller's memory, so that it always matches the parameters).
template <class T> struct OptimizerState {
    T *first = nullptr;
    T *second = nullptr;
    std::int64_t *step = nullptr;
};

// Optimizer state decays geometrically where the gradient stays zero (a dead ReLU
// unit: v <- mu v) and soon reaches subnormal numbers, on which x86 CPUs spend about a
// hundred cycles per operation, in these loops and in the GEMM that scales the
// velocity (an epoch of a [784, 256, 128, 10] network ran 2x slower after four
// epochs). State below the smallest normal number (1.2e-38 in float32) is set to
// zero; its share of a step is below that.
template <class T> inline T flush_subnormal(T x) {
    return std::abs(x) < std::numeric_limits<T>::min() ? T(0) : x;
}

template <class T> inline T regularised(T g, T w, T l2, T l1) { return g + l2 * w + l1 * sign(w); }

// Whether the values an update wrote are finite: the OR of their not_finite_bit, taken in
// the update's own pass (the loops are memory-bound; a second pass would cost more).
template <class T> using NotFiniteBits = decltype(not_finite_bit(T(0)));

// The updates that read a gradient buffer: one pass over `count` parameters w with
// gradient g (state pointers offset to the same segment). `regularise` is false for biases.
// Each returns false when it left optimizer state non-finite under finite parameters;
// non-finite parameters are seen by the next forward pass (or at the end of the call).
// Plain SGD and momentum need none: their BP4 GEMM writes W or the velocity itself.
template <class T>
using GradientUpdate = bool (*)(const UpdateRule &rule, std::int64_t step, T *w, const T *g,
                                T *first, T *second, std::size_t count, bool regularise);

// w <- w - lr (g + l2 w + l1 sign(w)): plain SGD when an L1 term keeps it out of the
// BP4 GEMM.
template <class T>
bool sgd_update(const UpdateRule &rule, std::int64_t, T *w, const T *g, T *, T *, std::size_t count,
                bool regularise) {
    const T l2 = regularise ? T(rule.l2) : T(0);
    const T l1 = regularise ? T(rule.l1) : T(0);
    const T lr = T(rule.lr);
    for (std::size_t i = 0; i < count; ++i) w[i] -= lr * regularised(g[i], w[i], l2, l1);
    return true;  // no state
}

// v <- mu v + g; w <- w - lr (g + mu v), g regularised.
template <class T>
bool nesterov_update(const UpdateRule &rule, std::int64_t, T *w, const T *g, T *velocity, T *,
                     std::size_t count, bool regularise) {
    const T l2 = regularise ? T(rule.l2) : T(0);
    const T l1 = regularise ? T(rule.l1) : T(0);
    const T lr = T(rule.lr), mu = T(rule.momentum);
    for (std::size_t i = 0; i < count; ++i) {
        const T gi = regularised(g[i], w[i], l2, l1);
        velocity[i] = flush_subnormal(mu * velocity[i] + gi);
        w[i] -= lr * (gi + mu * velocity[i]);
    }
    return true;  // a non-finite velocity makes w non-finite too
}

// m <- b1 m + (1-b1) g; v <- b2 v + (1-b2) g^2;
// w <- decay w - lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps), g regularised;
// decay is AdamW's 1 - lr decoupled_decay on the weights.
template <class T>
bool adam_update(const UpdateRule &rule, std::int64_t step, T *w, const T *g, T *m, T *v,
                 std::size_t count, bool regularise) {
    const T l2 = regularise ? T(rule.l2) : T(0);
    const T l1 = regularise ? T(rule.l1) : T(0);
    const T lr = T(rule.lr);
    const T b1 = T(rule.beta1), b2 = T(rule.beta2), eps = T(rule.eps);
    const T correction1 = T(1 - std::pow(rule.beta1, double(step)));
    const T sqrt_correction2 = T(std::sqrt(1 - std::pow(rule.beta2, double(step))));
    const T decay = regularise ? T(1 - rule.lr * rule.decoupled_decay) : T(1);
    NotFiniteBits<T> not_finite = 0;
    for (std::size_t i = 0; i < count; ++i) {
        const T gi = regularised(g[i], w[i], l2, l1);
        m[i] = flush_subnormal(b1 * m[i] + (T(1) - b1) * gi);
        v[i] = flush_subnormal(b2 * v[i] + (T(1) - b2) * gi * gi);
        const T denominator = std::sqrt(v[i]) / sqrt_correction2 + eps;
        w[i] = decay * w[i] - (lr / correction1) * m[i] / denominator;
        // g^2 can overflow v while w stays finite (it moves by lr m / sqrt(inf) = 0).
        not_finite |= not_finite_bit(v[i]);
    }
    return not_finite == 0;
}

// Rprop (torch.optim.Rprop): each parameter keeps its own step s (starting at lr) and
// its previous gradient p. With g regularised: s <- clamp(s eta, step_min, step_max),
// where eta is eta_plus if g p > 0, eta_minus if g p < 0, else 1; after a sign flip
// (g p < 0) g counts as 0: no move, and no flip seen at the next step; then
// w <- w - sign(g) s and p <- g. Only the signs of the gradients matter.
template <class T>
bool rprop_update(const UpdateRule &rule, std::int64_t, T *w, const T *g, T *previous, T *step,
                  std::size_t count, bool regularise) {
    const T l2 = regularise ? T(rule.l2) : T(0);
    const T l1 = regularise ? T(rule.l1) : T(0);
    const T eta_minus = T(rule.eta_minus), eta_plus = T(rule.eta_plus);
    const T step_min = T(rule.step_min), step_max = T(rule.step_max);
    for (std::size_t i = 0; i < count; ++i) {
        T gi = regularised(g[i], w[i], l2, l1);
        const T agreement = gi * previous[i];
        const T eta = agreement > T(0) ? eta_plus : (agreement < T(0) ? eta_minus : T(1));
        step[i] = std::min(std::max(step[i] * eta, step_min), step_max);
        if (agreement < T(0)) gi = T(0);
        w[i] -= sign(gi) * step[i];
        previous[i] = gi;
    }
    return true;  // steps are clamped; a non-finite w is seen by the next forward pass
}

// Momentum (v <- mu v + g; w <- w - lr v) once the BP4 GEMM has added the gradient to
// v, which held mu v already: v += l2 w + l1 sign(w), then w <- w - lr v, and v <- decay v
// (decay = mu keeps mu v for the next batch, 1 keeps v). Both flushed (flush_subnormal).
// A non-finite v makes w non-finite too, which the next forward pass sees.
template <class T> void momentum_step(T *w, T *v, std::size_t count, T lr, T l2, T l1, T decay) {
    if (l2 != T(0) || l1 != T(0)) {
        for (std::size_t k = 0; k < count; ++k) v[k] += l2 * w[k] + l1 * sign(w[k]);
    }
    for (std::size_t k = 0; k < count; ++k) {
        const T velocity = flush_subnormal(v[k]);
        w[k] -= lr * velocity;
        v[k] = flush_subnormal(decay * velocity);
    }
}

}  // namespace deltaprop
