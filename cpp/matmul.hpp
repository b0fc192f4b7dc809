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

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

#if defined(__x86_64__)
// The same rounding as to_bf16(float), 16 (AVX-512) or 8 (AVX2) values at a time: the
// core is built for any x86-64, and these run where the CPU has the instructions. On
// D's batch the scalar loop over the bfloat16 copies of W and a took 13% of the epoch.
__attribute__((target("avx512f"))) inline std::size_t to_bf16_avx512(const float *from,
                                                                      bf16 *to,
                                                                      std::size_t count) {
    const __m512i half_ulp = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
    const __m512i magnitude = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i quiet = _mm512_set1_epi32(0x40);
    std::size_t k = 0;
    for (; k + 16 <= count; k += 16) {
        const __m512i bits = _mm512_loadu_si512(from + k);
        const __m512i high = _mm512_srli_epi32(bits, 16);
        const __m512i to_even = _mm512_add_epi32(half_ulp, _mm512_and_si512(high, one));
        const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, to_even), 16);
        const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(bits, magnitude), inf);
        const __m512i result = _mm512_mask_mov_epi32(rounded, nan, _mm512_or_si512(high, quiet));
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(to + k), _mm512_cvtepi32_epi16(result));
    }
    return k;
}

__attribute__((target("avx2"))) inline std::size_t to_bf16_avx2(const float *from, bf16 *to,
                                                                 std::size_t count) {
    const __m256i half_ulp = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
    const __m256i magnitude = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    const __m256i quiet = _mm256_set1_epi32(0x40);
    std::size_t k = 0;
    for (; k + 8 <= count; k += 8) {
        const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(from + k));
        const __m256i high = _mm256_srli_epi32(bits, 16);
        const __m256i to_even = _mm256_add_epi32(half_ulp, _mm256_and_si256(high, one));
        const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, to_even), 16);
        const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, magnitude), inf);
        const __m256i result = _mm256_blendv_epi8(rounded, _mm256_or_si256(high, quiet), nan);
        // Every lane holds a value below 2^16: packing saturates nothing. packus works
        // within 128-bit halves; the permute joins the two halves' low quarters.
        const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(result, result), 0xD8);
        _mm_storeu_si128(reinterpret_cast<__m128i *>(to + k), _mm256_castsi256_si128(packed));
    }
    return k;
}
#endif

// The instructions a rounding loop runs on: the widest the CPU has, or (tests) one named.
enum class RoundingKernel { scalar, avx2, avx512 };

inline bool cpu_has(RoundingKernel kernel) {
#if defined(__x86_64__)
    if (kernel == RoundingKernel::avx512) return __builtin_cpu_supports("avx512f");
    if (kernel == RoundingKernel::avx2) return __builtin_cpu_supports("avx2");
#endif
    return kernel == RoundingKernel::scalar;
}

inline RoundingKernel widest_rounding_kernel() {
    static const RoundingKernel widest = cpu_has(RoundingKernel::avx512) ? RoundingKernel::avx512
                                         : cpu_has(RoundingKernel::avx2) ? RoundingKernel::avx2
                                                                          : RoundingKernel::scalar;
    return widest;
}

// to_bf16(float) of `count` values with `kernel`, which the CPU must have.
inline void to_bf16(const float *from, bf16 *to, std::size_t count, RoundingKernel kernel) {
    std::size_t k = 0;
#if defined(__x86_64__)
    if (kernel == RoundingKernel::avx512) k = to_bf16_avx512(from, to, count);
    if (kernel == RoundingKernel::avx2) k = to_bf16_avx2(from, to, count);
#endif
    for (; k < count; ++k) to[k] = to_bf16(from[k]);
}

inline void to_bf16(const float *from, bf16 *to, std::size_t count) {
    to_bf16(from, to, count, widest_rounding_kernel());
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
