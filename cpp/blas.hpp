// The only file that knows BLAS symbol names. OpenBLAS comes from the
// scipy-openblas32 wheel, whose symbols carry a `scipy_` prefix and whose
// integers (blasint) are 32-bit.
#pragma once

#include <cblas.h>

#include <climits>
#include <cstddef>
#include <stdexcept>
#include <string>

namespace deltaprop::blas {

// Every size handed to BLAS must fit its 32-bit integer; BLAS itself never
// reports an overflow, it computes garbage.
inline blasint checked_int(std::size_t value, const char *what) {
    if (value > static_cast<std::size_t>(INT_MAX)) {
        throw std::invalid_argument(std::string(what) + " = " + std::to_string(value) +
                                    " exceeds the BLAS 32-bit integer limit");
    }
    return static_cast<blasint>(value);
}

// Row-major C = alpha * op(A) * op(B) + beta * C, where op(A) is (M, K),
// op(B) is (K, N) and C is (M, N); lda, ldb, ldc are the row strides.
inline void gemm(bool trans_a, bool trans_b, blasint M, blasint N, blasint K, float alpha,
                 const float *A, blasint lda, const float *B, blasint ldb, float beta, float *C,
                 blasint ldc) {
    scipy_cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                      trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta,
                      C, ldc);
}

inline void gemm(bool trans_a, bool trans_b, blasint M, blasint N, blasint K, double alpha,
                 const double *A, blasint lda, const double *B, blasint ldb, double beta,
                 double *C, blasint ldc) {
    scipy_cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                      trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta,
                      C, ldc);
}

inline void set_num_threads(int n) { scipy_openblas_set_num_threads(n); }
inline int get_num_threads() { return scipy_openblas_get_num_threads(); }

}  // namespace deltaprop::blas
