// The GEMMs of the forward pass, BP2 and BP4 at the network's matmul precision:
// "highest" is blas::gemm in the network's dtype; "bfloat16" (float32 networks) rounds
// both operands to bfloat16 and accumulates in float32, through oneDNN where the CPU
// multiplies bfloat16 natively, else through a fallback that widens the rounded
// operands back to float32 (exactly) for blas::gemm: the same products up to the order
// of float32 summation. No Python here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "blas.hpp"
#include "onednn_matmul.hpp"
#include "team.hpp"

namespace deltaprop {

enum class MatmulPrecision { highest, bfloat16 };

inline MatmulPrecision parse_matmul_precision(const std::string &name) {
    if (name == "highest") return MatmulPrecision::highest;
    if (name == "bfloat16") return MatmulPrecision::bfloat16;
    throw std::invalid_argument("matmul_precision: expected 'highest' or 'bfloat16', got '" +
                                name + "'");
}

using onednn::bf16;

// float32 to bfloat16, rounded to nearest, ties to even (NaN stays NaN).
inline bf16 to_bf16(float value) {
    std::uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return bf16((bits >> 16) | 0x40u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return bf16(bits >> 16);
}

inline float to_float(bf16 value) {
    const std::uint32_t bits = std::uint32_t(value) << 16;
    float widened;
    std::memcpy(&widened, &bits, sizeof widened);
    return widened;
}

inline void to_bf16(const float *from, bf16 *to, std::size_t count) {
    for (std::size_t k = 0; k < count; ++k) to[k] = to_bf16(from[k]);
}

// to_bf16 over `count` values on up to `threads` threads of the team.
inline void to_bf16(const float *from, bf16 *to, std::size_t count, int threads) {
    Team::instance().parallel_for(count, kElementsPerJob, threads,
                                  [=](std::size_t begin, std::size_t end) {
                                      to_bf16(from + begin, to + begin, end - begin);
                                  });
}

// Which path runs bfloat16 products: oneDNN when it is loaded and the CPU is native,
// unless the fallback is forced (tests compare the two on one machine).
class Bfloat16Path {
  public:
    static Bfloat16Path &instance() {
        static Bfloat16Path path;
        return path;
    }
    void force_fallback(bool forced) { forced_ = forced; }
    bool native() const {
        return !forced_ && onednn::Matmul::instance().loaded() &&
               onednn::Matmul::instance().native();
    }

  private:
    bool forced_ = false;
};

// A bfloat16 operand of a GEMM: row-major storage of `stored_rows` rows at `ld` values
// per row (op's M or K rows, or its columns when transposed).
struct Bfloat16Operand {
    const bf16 *values;
    std::size_t ld;
    std::size_t stored_rows;
};

// Row-major C = alpha op(A) op(B) + beta C for bfloat16 A and B and float32 C, on up to
// `threads` threads. The fallback widens A and B into `scratch`, which holds at least
// A.stored_rows * A.ld + B.stored_rows * B.ld floats (Mlp::gemm_bf16 sizes it).
inline void bfloat16_gemm(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K,
                          float alpha, const Bfloat16Operand &A, const Bfloat16Operand &B,
                          float beta, float *C, std::size_t ldc, int threads, float *scratch) {
    if (Bfloat16Path::instance().native()) {
        onednn::Matmul::instance().gemm(trans_a, trans_b, M, N, K, alpha, A.values, A.ld, B.values,
                                        B.ld, beta, C, ldc, threads);
        return;
    }
    const std::size_t a_count = A.stored_rows * A.ld, b_count = B.stored_rows * B.ld;
    float *a = scratch, *b = scratch + a_count;
    const auto widen = [](const bf16 *from, float *to, std::size_t count, int n_threads) {
        Team::instance().parallel_for(count, kElementsPerJob, n_threads,
                                      [=](std::size_t begin, std::size_t end) {
                                          for (std::size_t k = begin; k < end; ++k) {
                                              to[k] = to_float(from[k]);
                                          }
                                      });
    };
    widen(A.values, a, a_count, threads);
    widen(B.values, b, b_count, threads);
    blas::gemm(trans_a, trans_b, M, N, K, alpha, a, A.ld, b, B.ld, beta, C, ldc);
}

}  // namespace deltaprop
