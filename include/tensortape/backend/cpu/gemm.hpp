#pragma once
// The one entry point for matrix products: C = alpha * op(A) * op(B) + beta * C, row-major.
// This is a plain correct kernel (a contiguous copy of transposed operands, then an i-k-j loop
// the compiler vectorises over j). The packed, register-blocked GEMM replaces the body of this
// function alone; every caller goes through it.

#include <cstdint>
#include <vector>

namespace tensortape::cpu {

template <class T>
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a, std::int64_t lda,
          const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
    for (std::int64_t i = 0; i < m; ++i) {
        T* ci = c + i * ldc;
        if (beta == T(0)) {
            for (std::int64_t j = 0; j < n; ++j) ci[j] = T(0);
        } else if (beta != T(1)) {
            for (std::int64_t j = 0; j < n; ++j) ci[j] *= beta;
        }
    }
    if (m == 0 || n == 0 || k == 0) return;
    // B as a contiguous k x n block, read row by row in the inner loop.
    std::vector<T> bt;
    const T* bp = b;
    std::int64_t ldbp = ldb;
    if (trans_b) {
        bt.resize(static_cast<std::size_t>(k * n));
        for (std::int64_t p = 0; p < k; ++p)
            for (std::int64_t j = 0; j < n; ++j) bt[static_cast<std::size_t>(p * n + j)] = b[j * ldb + p];
        bp = bt.data();
        ldbp = n;
    }
    for (std::int64_t i = 0; i < m; ++i) {
        T* ci = c + i * ldc;
        for (std::int64_t p = 0; p < k; ++p) {
            const T av = alpha * (trans_a ? a[p * lda + i] : a[i * lda + p]);
            const T* bpp = bp + p * ldbp;
            for (std::int64_t j = 0; j < n; ++j) ci[j] += av * bpp[j];
        }
    }
}

}  // namespace tensortape::cpu
