// The only file that knows BLAS symbol names. OpenBLAS comes from the
// scipy-openblas32 wheel, whose symbols carry a `scipy_` prefix and whose
// integers (blasint) are 32-bit. Callers pass std::size_t; the conversion and its
// check happen here.
#pragma once

#include <cblas.h>

#include <climits>
#include <cstddef>
#include <stdexcept>
#include <string>

#include "team.hpp"

namespace deltaprop::blas {

// Every size handed to BLAS must fit its 32-bit integer; BLAS itself never
// reports an overflow, it computes garbage. Callers check their sizes once up front
// (a clear message before any work); gemm checks again before each call.
inline void check_fits(std::size_t value, const char *what) {
    if (value > static_cast<std::size_t>(INT_MAX)) {
        throw std::invalid_argument(std::string(what) + " = " + std::to_string(value) +
                                    " exceeds the BLAS 32-bit integer limit");
    }
}

inline blasint checked_int(std::size_t value, const char *what) {
    check_fits(value, what);
    return static_cast<blasint>(value);
}

inline CBLAS_TRANSPOSE transpose(bool trans) { return trans ? CblasTrans : CblasNoTrans; }

// Row-major C = alpha * op(A) * op(B) + beta * C, where op(A) is (M, K),
// op(B) is (K, N) and C is (M, N); lda, ldb, ldc are the row strides.
inline void gemm(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K,
                 float alpha, const float *A, std::size_t lda, const float *B, std::size_t ldb,
                 float beta, float *C, std::size_t ldc) {
    scipy_cblas_sgemm(CblasRowMajor, transpose(trans_a), transpose(trans_b), checked_int(M, "M"),
                      checked_int(N, "N"), checked_int(K, "K"), alpha, A, checked_int(lda, "lda"),
                      B, checked_int(ldb, "ldb"), beta, C, checked_int(ldc, "ldc"));
}

inline void gemm(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K,
                 double alpha, const double *A, std::size_t lda, const double *B, std::size_t ldb,
                 double beta, double *C, std::size_t ldc) {
    scipy_cblas_dgemm(CblasRowMajor, transpose(trans_a), transpose(trans_b), checked_int(M, "M"),
                      checked_int(N, "N"), checked_int(K, "K"), alpha, A, checked_int(lda, "lda"),
                      B, checked_int(ldb, "ldb"), beta, C, checked_int(ldc, "ldc"));
}

// Row-major y = alpha * op(A) x + beta y, where A is (M, N) with row stride lda, op(A) is A
// or A^T, and x, y are contiguous vectors of op(A)'s column and row counts.
inline void gemv(bool trans, std::size_t M, std::size_t N, float alpha, const float *A,
                 std::size_t lda, const float *x, float beta, float *y) {
    scipy_cblas_sgemv(CblasRowMajor, transpose(trans), checked_int(M, "M"), checked_int(N, "N"),
                      alpha, A, checked_int(lda, "lda"), x, 1, beta, y, 1);
}

inline void gemv(bool trans, std::size_t M, std::size_t N, double alpha, const double *A,
                 std::size_t lda, const double *x, double beta, double *y) {
    scipy_cblas_dgemv(CblasRowMajor, transpose(trans), checked_int(M, "M"), checked_int(N, "N"),
                      alpha, A, checked_int(lda, "lda"), x, 1, beta, y, 1);
}

inline void set_num_threads(int n) { scipy_openblas_set_num_threads(n); }
inline int get_num_threads() { return scipy_openblas_get_num_threads(); }

// OpenBLAS's threading backend: its parallel regions (numjobs jobs of jobsize bytes
// each, run at once) on the core's team of threads.
inline void run_on_team(int /*sync*/, openblas_dojob_callback dojob, int numjobs,
                        std::size_t jobsize, void *jobs, int dojob_data) {
    struct Region {
        openblas_dojob_callback dojob;
        char *jobs;
        std::size_t jobsize;
        int data;
    } region{dojob, static_cast<char *>(jobs), jobsize, dojob_data};
    Team::instance().run(
        numjobs,
        [](void *context, int index) {
            const Region &r = *static_cast<const Region *>(context);
            r.dojob(index, r.jobs + std::size_t(index) * r.jobsize, r.data);
        },
        &region);
}

// Called once, before any BLAS call: OpenBLAS's parallel work goes to the core's team.
inline void use_team() { scipy_openblas_set_threads_callback_function(run_on_team); }

}  // namespace deltaprop::blas
