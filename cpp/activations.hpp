// Element-wise activations, their derivatives and the output costs, in the
// numerically stable forms the pure-Python reference uses too.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace deltaprop {

enum class Activation { sigmoid, tanh, relu, leaky_relu, identity, softmax };
enum class Cost { quadratic, cross_entropy, log_likelihood };

inline Activation parse_activation(const std::string &name, const char *argument) {
    if (name == "sigmoid") return Activation::sigmoid;
    if (name == "tanh") return Activation::tanh;
    if (name == "relu") return Activation::relu;
    if (name == "leaky_relu") return Activation::leaky_relu;
    if (name == "identity") return Activation::identity;
    if (name == "softmax") return Activation::softmax;
    throw std::invalid_argument(std::string(argument) + ": unknown activation '" + name + "'");
}

inline Cost parse_cost(const std::string &name) {
    if (name == "quadratic") return Cost::quadratic;
    if (name == "cross_entropy") return Cost::cross_entropy;
    if (name == "log_likelihood") return Cost::log_likelihood;
    throw std::invalid_argument("cost: unknown cost '" + name +
                                "', expected 'quadratic', 'cross_entropy' or 'log_likelihood'");
}

template <class T> inline T sigmoid(T z) {
    if (z >= T(0)) return T(1) / (T(1) + std::exp(-z));
    const T e = std::exp(z);
    return e / (T(1) + e);
}

// sigma'(z) = sigma(z) (1 - sigma(z)) = e / (1 + e)^2 with e = exp(-|z|); the
// textbook form loses all precision in 1 - sigma(z) once z is large.
template <class T> inline T sigmoid_prime(T z) {
    const T e = std::exp(-std::abs(z));
    const T one_plus_e = T(1) + e;
    return e / (one_plus_e * one_plus_e);
}

// a = σ(z) and σ'(z) = e / (1 + e)^2 from one exp, e = exp(-|z|).
template <class T> inline void sigmoid_and_prime(T z, T &a, T &derivative) {
    const T e = std::exp(-std::abs(z));
    const T s = T(1) / (T(1) + e);
    a = z >= T(0) ? s : e * s;
    derivative = e * s * s;
}

// tanh'(z) = 1 / cosh(z)^2, exact where 1 - tanh(z)^2 would cancel; cosh
// overflowing to inf gives the right limit 0.
template <class T> inline T tanh_prime(T z) {
    const T c = std::cosh(z);
    return T(1) / (c * c);
}

// softplus(x) = log(1 + exp(x)) without overflow; -softplus(-z) = log sigma(z).
template <class T> inline T softplus(T x) {
    return std::max(x, T(0)) + std::log1p(std::exp(-std::abs(x)));
}

template <class T> inline T activate(Activation f, T z, T slope) {
    switch (f) {
        case Activation::sigmoid: return sigmoid(z);
        case Activation::tanh: return std::tanh(z);
        case Activation::relu: return z > T(0) ? z : T(0);
        case Activation::leaky_relu: return z > T(0) ? z : slope * z;
        case Activation::identity:
        case Activation::softmax: break;  // softmax is not element-wise
    }
    return z;
}

template <class T> inline T derivative(Activation f, T z, T slope) {
    switch (f) {
        case Activation::sigmoid: return sigmoid_prime(z);
        case Activation::tanh: return tanh_prime(z);
        case Activation::relu: return z > T(0) ? T(1) : T(0);
        case Activation::leaky_relu: return z > T(0) ? T(1) : slope;
        case Activation::identity:
        case Activation::softmax: break;
    }
    return T(1);
}

template <class T> inline T sign(T x) { return T((x > T(0)) - (x < T(0))); }

// 1 when x is NaN or infinite, else 0: on the bit pattern (all exponent bits set), so
// that loops accumulating it with | vectorise.
template <class T> inline auto not_finite_bit(T x) {
    using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    constexpr Bits exponent = sizeof(T) == 4 ? Bits(0x7F800000u) : Bits(0x7FF0000000000000ull);
    Bits bits;
    std::memcpy(&bits, &x, sizeof(T));
    return Bits((bits & exponent) == exponent);
}

// The loops below take the activation out of the inner loop so that each
// branch is a simple, vectorisable pass.

// z[i, j] += b[j]; a[i, j] = f(z[i, j]).  z and a are (B, n), b is (n,). For a sigmoid,
// a non-null `derivative` (B, n) also receives σ'(z), from the same exp. Returns
// whether every z was finite (checked in the same pass).
template <class T>
bool add_bias_and_activate(Activation f, T slope, const T *b, T *z, T *a, std::size_t B,
                           std::size_t n, T *derivative = nullptr) {
    decltype(not_finite_bit(T(0))) not_finite = 0;
    for (std::size_t i = 0; i < B; ++i) {
        T *z_row = z + i * n;
        T *a_row = a + i * n;
        if (f == Activation::relu) {  // the hidden layers of most networks: one pass
            for (std::size_t j = 0; j < n; ++j) {
                const T zj = z_row[j] + b[j];
                z_row[j] = zj;
                not_finite |= not_finite_bit(zj);
                a_row[j] = zj > T(0) ? zj : T(0);
            }
            continue;
        }
        for (std::size_t j = 0; j < n; ++j) {
            z_row[j] += b[j];
            not_finite |= not_finite_bit(z_row[j]);
        }
        if (f == Activation::softmax) {
            const T m = *std::max_element(z_row, z_row + n);
            T sum = 0;
            for (std::size_t j = 0; j < n; ++j) sum += a_row[j] = std::exp(z_row[j] - m);
            for (std::size_t j = 0; j < n; ++j) a_row[j] /= sum;
            continue;
        }
        if (f == Activation::sigmoid && derivative != nullptr) {
            T *d_row = derivative + i * n;
            for (std::size_t j = 0; j < n; ++j) sigmoid_and_prime(z_row[j], a_row[j], d_row[j]);
        } else if (f == Activation::sigmoid) {
            for (std::size_t j = 0; j < n; ++j) a_row[j] = sigmoid(z_row[j]);
        } else {
            for (std::size_t j = 0; j < n; ++j) a_row[j] = activate(f, z_row[j], slope);
        }
    }
    return not_finite == 0;
}

// values[k] *= factors[k]: "⊙ σ'(z)" with σ'(z) kept from the forward pass, or "⊙ mask"
// with a dropout mask.
template <class T> void multiply(T *values, const T *factors, std::size_t count) {
    for (std::size_t k = 0; k < count; ++k) values[k] *= factors[k];
}

// delta[k] *= f'(z[k]) for the `count` entries: the "⊙ σ'(z)" of BP1 and BP2.
template <class T>
void multiply_by_derivative(Activation f, T slope, const T *z, T *delta, std::size_t count) {
    switch (f) {
        case Activation::identity: return;
        case Activation::relu:
            for (std::size_t k = 0; k < count; ++k) delta[k] = z[k] > T(0) ? delta[k] : T(0);
            return;
        case Activation::sigmoid:
            for (std::size_t k = 0; k < count; ++k) delta[k] *= sigmoid_prime(z[k]);
            return;
        default:
            for (std::size_t k = 0; k < count; ++k) delta[k] *= derivative(f, z[k], slope);
    }
}

}  // namespace deltaprop
