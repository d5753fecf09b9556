#pragma once
// The one entry point for matrix products: C = alpha * op(A) * op(B) + beta * C, row-major,
// followed by an optional epilogue (bias along rows or columns, then an activation) applied while
// the tile of C is still in registers.
//
// GotoBLAS/BLIS structure: B is packed into a KC x NC block of NR-wide column slivers, A into
// MC x KC blocks of MR-tall row slivers (zero-padded, so edges need no scalar code), and a
// register-blocked micro-kernel computes an MR x NR tile as a sum of KC rank-1 updates. The
// register tile is picked from the SIMD width the target flags allow: 8 x 48 floats on AVX-512
// (24 of the 32 vector registers hold the tile), 6 x 16 on AVX2 (12 of 16).
//
// Threads split the rows into equal blocks (at most MC each, a multiple of the threads in number)
// that share one packed B; with fewer than two MC blocks per thread, each thread instead owns a
// rectangle of C (a range of rows or of column slivers) and packs its own operands. Small products
// run on the calling thread.

#include <tensortape/backend/cpu/thread_pool.hpp>
#include <tensortape/core/allocator.hpp>
#include <tensortape/core/compat.hpp>
#include <tensortape/core/error.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>

#ifndef TENSORTAPE_GEMM_MR
#define TENSORTAPE_GEMM_MR 8
#define TENSORTAPE_GEMM_NV 3
#endif
#ifndef TENSORTAPE_GEMM_L1
#define TENSORTAPE_GEMM_L1 49152
#endif
#ifndef TENSORTAPE_GEMM_MC_SLIVERS
#define TENSORTAPE_GEMM_MC_SLIVERS 24
#endif

namespace tensortape::cpu {

enum class Activation : std::uint8_t { none, relu };

template <class T>
struct Epilogue {
    const T* row_bias = nullptr;  // row_bias[i] added to row i of C (conv: one per output channel)
    const T* col_bias = nullptr;  // col_bias[j] added to column j of C (dense: one per unit)
    Activation activation = Activation::none;

    bool empty() const { return !row_bias && !col_bias && activation == Activation::none; }
};

template <class T, int Vectors = (simd::width<T> * sizeof(T) >= 64 ? TENSORTAPE_GEMM_NV : 2)>
struct GemmShape {
    static constexpr int W = static_cast<int>(simd::width<T>);
    static constexpr int NV = Vectors;                             // vectors per tile row
    static constexpr int NR = NV * W;                              // tile columns
    static constexpr int MR = W * sizeof(T) >= 64 ? TENSORTAPE_GEMM_MR : 6;        // tile rows
    // Most depth of a packed block: a B sliver (KC x NR), reused by every A sliver of the block,
    // should stay in L1 (48 KiB here) while the A slivers stream past it.
    static constexpr std::int64_t KC = TENSORTAPE_GEMM_L1 / (NR * sizeof(T));
    static constexpr std::int64_t MC = MR * TENSORTAPE_GEMM_MC_SLIVERS;                    // rows of a packed A block
    static constexpr std::int64_t NC = NR * 96;                    // columns of a packed B block
};

namespace gemm_detail {

template <class T>
struct Operand {
    const T* p;
    std::int64_t ld;
    bool trans;
    T at(std::int64_t r, std::int64_t c) const { return trans ? p[c * ld + r] : p[r * ld + c]; }
};

#if defined(__AVX__)
// dst[k * ldd + r] = src[r * ld + k] for an 8x8 float block: unpack pairs, shuffle quads, swap
// 128-bit halves.
inline void transpose8x8(const float* src, std::int64_t ld, float* dst, std::int64_t ldd) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ld);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int h = 0; h < 8; h += 4) {
        r[h + 0] = _mm256_shuffle_ps(t[h + 0], t[h + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[h + 1] = _mm256_shuffle_ps(t[h + 0], t[h + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; ++i) {
        _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
    }
}
#endif

// A block (rows [i0, i0+mc), depth [p0, p0+kc)) into MR-row slivers, k-major within a sliver.
// Loops run along A's rows in memory; the scattered side is the sliver, which stays in L1.
template <class T>
void pack_a(const Operand<T>& a, std::int64_t i0, std::int64_t mc, std::int64_t p0, std::int64_t kc, T* dst) {
    constexpr int MR = GemmShape<T>::MR;
    for (std::int64_t ir = 0; ir < mc; ir += MR) {
        const int rows = static_cast<int>(std::min<std::int64_t>(MR, mc - ir));
        if (!a.trans) {
            // A full 8-row sliver is 8x8 transposes (64x10x128 spent half its time here).
            std::int64_t blocked = 0;
#if defined(__AVX__)
            if constexpr (std::is_same_v<T, float> && MR == 8) {
                if (rows == MR) {
                    blocked = kc / 8 * 8;
                    for (std::int64_t p = 0; p < blocked; p += 8) transpose8x8(a.p + (i0 + ir) * a.ld + p0 + p, a.ld, dst + p * MR, MR);
                }
            }
#endif
            for (int i = 0; i < rows; ++i) {
                const T* src = a.p + (i0 + ir + i) * a.ld + p0;
                for (std::int64_t p = blocked; p < kc; ++p) dst[p * MR + i] = src[p];
            }
            for (int i = rows; i < MR; ++i)
                for (std::int64_t p = 0; p < kc; ++p) dst[p * MR + i] = T(0);
        } else {
            for (std::int64_t p = 0; p < kc; ++p) {
                const T* src = a.p + (p0 + p) * a.ld + i0 + ir;
                for (int i = 0; i < rows; ++i) dst[p * MR + i] = src[i];
                for (int i = rows; i < MR; ++i) dst[p * MR + i] = T(0);
            }
        }
        dst += kc * MR;
    }
}

// B block (depth [p0, p0+kc), columns [j0, j0+nc)) into NR-column slivers, k-major.
template <class T, int NR>
void pack_b_sliver(const Operand<T>& b, std::int64_t p0, std::int64_t kc, std::int64_t j, std::int64_t cols, T* dst) {
    if (!b.trans) {
        // Whole vectors: a row of a sliver is a few of them, and a memcpy call per row (plus a
        // zero fill for an edge) cost as much as the arithmetic on a 121-pixel convolution.
        using V = simd::batch<T>;
        constexpr std::int64_t W = simd::width<T>;
        const std::int64_t full = cols / W, rest = cols % W;
        for (std::int64_t p = 0; p < kc; ++p) {
            const T* src = b.p + (p0 + p) * b.ld + j;
            T* d = dst + p * NR;
            std::int64_t v = 0;
            for (; v < full; ++v) V::load_unaligned(src + v * W).store_aligned(d + v * W);
            if (rest) simd::load_partial(src + v * W, static_cast<std::size_t>(rest)).store_aligned(d + v++ * W);
            for (; v < NR / W; ++v) V(T(0)).store_aligned(d + v * W);
        }
    } else {
        // Depth outer: the sliver is written in order while the NR source rows, read a step at a
        // time, stay in L1. (Column outer wrote with an NR-element stride and pushed the sliver
        // itself out of L1.) Float columns go 8 at a time, 8 deep, through registers; the
        // columns left over (a sliver narrower than 8) and the last depth steps go one by one.
        const T* src = b.p + j * b.ld + p0;
        std::int64_t blocked_depth = 0, blocked_cols = 0;
#if defined(__AVX__)
        if constexpr (std::is_same_v<T, float>) {
            blocked_depth = kc / 8 * 8;
            blocked_cols = cols / 8 * 8;
            for (std::int64_t p = 0; p < blocked_depth; p += 8)
                for (std::int64_t c = 0; c < blocked_cols; c += 8) transpose8x8(src + c * b.ld + p, b.ld, dst + p * NR + c, NR);
        }
#endif
        for (std::int64_t p = 0; p < kc; ++p) {
            T* d = dst + p * NR;
            for (std::int64_t c = p < blocked_depth ? blocked_cols : 0; c < cols; ++c) d[c] = src[c * b.ld + p];
            for (std::int64_t c = cols; c < NR; ++c) d[c] = T(0);
        }
    }
}

template <class B>
B activate(const B& v, Activation act) {
    if (act == Activation::relu) return simd::max(v, B(simd::scalar_t<B>(0)));
    return v;
}

// C tile (rows x cols valid) = alpha * A_sliver * B_sliver + beta * C, then the epilogue when
// `last` (the final depth block). beta == 0 never reads C, so C may hold NaNs. Edge tiles use
// the same vector code with masked loads and stores: no scalar cliff at the borders.
//
// NC (at most NV) is how many of the sliver's NV vectors are computed: a last sliver whose
// columns fit in fewer vectors (121 = 48 + 48 + 25 output pixels) skips the empty ones.
template <class T, int NV, int NC = NV>
void micro_kernel(std::int64_t kc, const T* __restrict a, const T* __restrict b, T* c, std::int64_t ldc, int rows, int cols,
                  T alpha, T beta, const Epilogue<T>& epi, std::int64_t i0, std::int64_t j0, bool last) {
    static_assert(NC >= 1 && NC <= NV);
    using S = GemmShape<T, NV>;
    using B = simd::batch<T>;
    constexpr int MR = S::MR, W = S::W, NR = S::NR;
    B acc[MR][NC];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NC; ++v) acc[i][v] = B(T(0));
    // The C tile is read (beta) and written after the loop: start bringing it in now.
    for (int i = 0; i < rows; ++i) __builtin_prefetch(c + i * ldc, 1);
#pragma GCC unroll 2
    for (std::int64_t p = 0; p < kc; ++p) {
        B bv[NC];
#pragma GCC unroll 4
        for (int v = 0; v < NC; ++v) bv[v] = B::load_aligned(b + p * NR + v * W);
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) {
            const B ai(a[p * MR + i]);
#pragma GCC unroll 4
            for (int v = 0; v < NC; ++v) acc[i][v] = simd::fma(ai, bv[v], acc[i][v]);
        }
    }
    const bool epilogue = last && !epi.empty();
    auto finish = [&](const B& x, int i, int v, const B& cold) {
        B r = x * B(alpha);
        if (beta != T(0)) r = simd::fma(B(beta), cold, r);
        if (epilogue) {
            if (epi.row_bias) r += B(epi.row_bias[i0 + i]);
            if (epi.col_bias) r += simd::load_partial(epi.col_bias + j0 + v * W, static_cast<std::size_t>(std::min(W, cols - v * W)));
            r = activate(r, epi.activation);
        }
        return r;
    };
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
        if (i >= rows) break;
#pragma GCC unroll 4
        for (int v = 0; v < NC; ++v) {
            T* cp = c + i * ldc + v * W;
            const int lanes = cols - v * W;
            if (lanes >= W) {
                const B cold = beta != T(0) ? B::load_unaligned(cp) : B(T(0));
                finish(acc[i][v], i, v, cold).store_unaligned(cp);
            } else if (lanes > 0) {
                const B cold = beta != T(0) ? simd::load_partial(cp, static_cast<std::size_t>(lanes)) : B(T(0));
                simd::store_partial(cp, finish(acc[i][v], i, v, cold), static_cast<std::size_t>(lanes));
            }
        }
    }
}


// One tile, with the kernel that computes only the vectors its columns need.
template <class T, int NV>
void tile(std::int64_t kc, const T* a, const T* b, T* c, std::int64_t ldc, int rows, int cols, T alpha, T beta, const Epilogue<T>& epi,
          std::int64_t i0, std::int64_t j0, bool last) {
    constexpr int W = GemmShape<T, NV>::W;
    if constexpr (NV >= 3) {
        if (cols <= W) return micro_kernel<T, NV, 1>(kc, a, b, c, ldc, rows, cols, alpha, beta, epi, i0, j0, last);
        if (cols <= 2 * W) return micro_kernel<T, NV, 2>(kc, a, b, c, ldc, rows, cols, alpha, beta, epi, i0, j0, last);
    } else if constexpr (NV == 2) {
        if (cols <= W) return micro_kernel<T, NV, 1>(kc, a, b, c, ldc, rows, cols, alpha, beta, epi, i0, j0, last);
    }
    micro_kernel<T, NV>(kc, a, b, c, ldc, rows, cols, alpha, beta, epi, i0, j0, last);
}

}  // namespace gemm_detail

// Below this many multiply-adds a product runs on the calling thread: waking a worker costs more.
inline constexpr std::int64_t gemm_parallel_threshold = 1 << 17;

namespace gemm_detail {

// Depth of the packed blocks for k: equal blocks, 288 = 144 + 144 rather than 256 + 32 (a thin
// block wastes a pass over C).
template <class T, int NV>
std::int64_t depth_block(std::int64_t k) {
    const std::int64_t blocks = (k + GemmShape<T, NV>::KC - 1) / GemmShape<T, NV>::KC;
    return (k + blocks - 1) / blocks;
}

// The threaded path for few row blocks (a dense layer's batch, a convolution's output channels,
// a product too short to give every thread two MC blocks). Each thread owns one rectangle of C
// for the whole product, packs the A and B it needs itself and never waits for the others: one
// hand-off in all. (Splitting columns inside each depth block made every task pack all of A
// again and meet the others twice per block; a shared packed A cost a second hand-off, which
// made 64x169x288 slower on two threads than on one.) The split goes along whichever of rows
// or column slivers leaves the busiest thread fewer tiles; a thread then repeats the packing
// of the other operand, which is the smaller cost for these shapes.
template <class T, int NV>
void gemm_grid(const Operand<T>& A, const Operand<T>& Bm, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, T beta, T* c,
               std::int64_t ldc, const Epilogue<T>& epi, const T* prepacked, int threads) {
    using S = GemmShape<T, NV>;
    const std::int64_t kc_max = depth_block<T, NV>(k);
    const std::int64_t m_padded = (m + S::MR - 1) / S::MR * S::MR;
    const std::int64_t row_slivers = m_padded / S::MR, col_slivers = (n + S::NR - 1) / S::NR;
    auto busiest = [&](std::int64_t units) { return (units + threads - 1) / threads; };
    const bool split_rows = busiest(row_slivers) * col_slivers < row_slivers * busiest(col_slivers);
    parallel_for(threads, [&](std::int64_t t) {
        const std::int64_t units = split_rows ? row_slivers : col_slivers;
        const std::int64_t u0 = units * t / threads, u1 = units * (t + 1) / threads;
        if (u0 >= u1) return;
        const std::int64_t r_begin = split_rows ? u0 : 0, r_end = split_rows ? u1 : row_slivers;
        const std::int64_t s_begin = split_rows ? 0 : u0, s_end = split_rows ? col_slivers : u1;
        const std::int64_t i0 = r_begin * S::MR, rows_here = std::min(m, r_end * S::MR) - i0;
        const std::int64_t chunk = std::min<std::int64_t>(S::NC / S::NR, s_end - s_begin);
        const std::size_t bbytes = static_cast<std::size_t>(chunk * S::NR * kc_max) * sizeof(T);
        const std::size_t abytes = prepacked ? 0 : static_cast<std::size_t>((r_end - r_begin) * S::MR * kc_max) * sizeof(T);
        T* bpack = static_cast<T*>(allocate_bytes(bbytes));
        T* own_a = prepacked ? nullptr : static_cast<T*>(allocate_bytes(abytes));
        for (std::int64_t pc = 0; pc < k; pc += kc_max) {
            const std::int64_t kc = std::min(kc_max, k - pc);
            const T beta_block = pc == 0 ? beta : T(1);
            const bool last = pc + kc >= k;
            const T* ablock = own_a;
            if (prepacked) ablock = prepacked + (pc / kc_max) * m_padded * kc_max + i0 * kc;
            else pack_a(A, i0, rows_here, pc, kc, own_a);
            for (std::int64_t s0 = s_begin; s0 < s_end; s0 += chunk) {
                const std::int64_t s1 = std::min(s_end, s0 + chunk);
                for (std::int64_t s = s0; s < s1; ++s)
                    pack_b_sliver<T, S::NR>(Bm, pc, kc, s * S::NR, std::min<std::int64_t>(S::NR, n - s * S::NR), bpack + (s - s0) * kc * S::NR);
                for (std::int64_t s = s0; s < s1; ++s) {
                    const std::int64_t j = s * S::NR;
                    const int cols = static_cast<int>(std::min<std::int64_t>(S::NR, n - j));
                    for (std::int64_t r = r_begin; r < r_end; ++r) {
                        const std::int64_t i = r * S::MR;
                        const int rows = static_cast<int>(std::min<std::int64_t>(S::MR, m - i));
                        tile<T, NV>(kc, ablock + (r - r_begin) * S::MR * kc, bpack + (s - s0) * kc * S::NR, c + i * ldc + j, ldc, rows,
                                    cols, alpha, beta_block, epi, i, j, last);
                    }
                }
            }
        }
        deallocate_bytes(bpack, bbytes);
        if (own_a) deallocate_bytes(own_a, abytes);
    });
}

// `prepacked`, when given, holds all of A packed by pack_all_a: the driver reads its blocks
// instead of packing A again (a convolution reuses its weights for every image).
template <class T, int NV>
void gemm_impl(const Operand<T>& A, const Operand<T>& Bm, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, T beta, T* c,
               std::int64_t ldc, const Epilogue<T>& epi, const T* prepacked = nullptr) {
    using S = GemmShape<T, NV>;
    const std::int64_t row_blocks_total = (m + S::MC - 1) / S::MC;
    const int pool = num_threads();
    const bool parallel = pool > 1 && m * n * k >= gemm_parallel_threshold;
    // With fewer than two MC blocks per thread the shared-B path below cannot balance its tasks
    // (and pays two hand-offs per depth block); each thread takes its own rectangle instead.
    if (parallel && row_blocks_total < 2 * pool) return gemm_grid<T, NV>(A, Bm, m, n, k, alpha, beta, c, ldc, epi, prepacked, pool);
    const int threads = parallel ? pool : 1;

    const std::int64_t nc_max = std::min<std::int64_t>(S::NC, (n + S::NR - 1) / S::NR * S::NR);
    const std::int64_t kc_max = depth_block<T, NV>(k);
    const std::int64_t m_padded = (m + S::MR - 1) / S::MR * S::MR;
    // Row blocks of equal height, as many as a multiple of the threads: 1024 rows as five blocks of
    // 192 and one of 64 left one thread a third more work than the other.
    std::int64_t row_blocks = row_blocks_total;
    if (parallel) row_blocks = (row_blocks + threads - 1) / threads * threads;
    const std::int64_t mc_block = ((m + row_blocks - 1) / row_blocks + S::MR - 1) / S::MR * S::MR;
    row_blocks = (m + mc_block - 1) / mc_block;
    const std::size_t bbytes = static_cast<std::size_t>(nc_max * kc_max) * sizeof(T);
    T* bpack = static_cast<T*>(allocate_bytes(bbytes));

    for (std::int64_t jc = 0; jc < n; jc += S::NC) {
        const std::int64_t nc = std::min<std::int64_t>(S::NC, n - jc);
        const std::int64_t slivers = (nc + S::NR - 1) / S::NR;
        for (std::int64_t pc = 0; pc < k; pc += kc_max) {
            const std::int64_t kc = std::min<std::int64_t>(kc_max, k - pc);
            const T beta_block = pc == 0 ? beta : T(1);
            const bool last = pc + kc >= k;
            auto pack_range = [&](std::int64_t s0, std::int64_t s1) {
                for (std::int64_t s = s0; s < s1; ++s)
                    pack_b_sliver<T, S::NR>(Bm, pc, kc, jc + s * S::NR, std::min<std::int64_t>(S::NR, nc - s * S::NR), bpack + s * kc * S::NR);
            };
            if (parallel && slivers >= 2 * threads) {
                const std::int64_t per = (slivers + threads - 1) / threads;
                parallel_for(threads, [&](std::int64_t t) { pack_range(t * per, std::min(slivers, (t + 1) * per)); });
            } else {
                pack_range(0, slivers);
            }

            // Tasks: row blocks of mc_block rows, each against every sliver of the packed B.
            auto task = [&](std::int64_t ib) {
                const std::int64_t ic = ib * mc_block, mc = std::min<std::int64_t>(mc_block, m - ic);
                const std::int64_t mr_slivers = (mc + S::MR - 1) / S::MR;
                const std::size_t abytes = static_cast<std::size_t>(mr_slivers * S::MR * kc) * sizeof(T);
                T* apack = nullptr;
                if (prepacked) {
                    apack = const_cast<T*>(prepacked) + (pc / kc_max) * m_padded * kc_max + ic * kc;
                } else {
                    apack = static_cast<T*>(allocate_bytes(abytes));
                    pack_a(A, ic, mc, pc, kc, apack);
                }
                for (std::int64_t s = 0; s < slivers; ++s) {
                    const std::int64_t j = jc + s * S::NR;
                    const int cols = static_cast<int>(std::min<std::int64_t>(S::NR, n - j));
                    for (std::int64_t r = 0; r < mr_slivers; ++r) {
                        const std::int64_t i = ic + r * S::MR;
                        const int rows = static_cast<int>(std::min<std::int64_t>(S::MR, m - i));
                        tile<T, NV>(kc, apack + r * S::MR * kc, bpack + s * kc * S::NR, c + i * ldc + j, ldc, rows, cols, alpha,
                                        beta_block, epi, i, j, last);
                    }
                }
                if (!prepacked) deallocate_bytes(apack, abytes);
            };
            if (parallel) parallel_for(row_blocks, task);
            else for (std::int64_t t = 0; t < row_blocks; ++t) task(t);
        }
    }
    deallocate_bytes(bpack, bbytes);
}

// All of A packed in the driver's block order: depth block by depth block, each the row slivers
// of every row.
template <class T, int NV>
void pack_all_a(const Operand<T>& A, std::int64_t m, std::int64_t k, T* dst) {
    using S = GemmShape<T, NV>;
    const std::int64_t kc_max = depth_block<T, NV>(k);
    const std::int64_t m_padded = (m + S::MR - 1) / S::MR * S::MR;
    for (std::int64_t pc = 0; pc < k; pc += kc_max) {
        const std::int64_t kc = std::min(kc_max, k - pc);
        pack_a(A, 0, m, pc, kc, dst + (pc / kc_max) * m_padded * kc_max);
    }
}

template <class T>
bool narrow(std::int64_t n) {
    return n <= static_cast<std::int64_t>(simd::width<T>);
}

}  // namespace gemm_detail

// op(A) packed once for many products with different B: C_i = op(A) * B_i. The packing depends
// on the width of B (`n`), which every product must share.
template <class T>
class PackedA {
public:
    PackedA(bool trans_a, std::int64_t m, std::int64_t k, const T* a, std::int64_t lda, std::int64_t n) : m_(m), k_(k), n_(n) {
        constexpr int MR = GemmShape<T>::MR;
        const std::int64_t m_padded = (m + MR - 1) / MR * MR;
        const gemm_detail::Operand<T> A{a, lda, trans_a};
        if (gemm_detail::narrow<T>(n)) {
            const std::int64_t kc = gemm_detail::depth_block<T, 1>(k);
            bytes_ = static_cast<std::size_t>(m_padded * kc * ((k + kc - 1) / kc)) * sizeof(T);
            data_ = static_cast<T*>(allocate_bytes(bytes_));
            gemm_detail::pack_all_a<T, 1>(A, m, k, data_);
        } else {
            const std::int64_t kc = gemm_detail::depth_block<T, GemmShape<T>::NV>(k);
            bytes_ = static_cast<std::size_t>(m_padded * kc * ((k + kc - 1) / kc)) * sizeof(T);
            data_ = static_cast<T*>(allocate_bytes(bytes_));
            gemm_detail::pack_all_a<T, GemmShape<T>::NV>(A, m, k, data_);
        }
    }
    ~PackedA() { deallocate_bytes(data_, bytes_); }
    PackedA(const PackedA&) = delete;
    PackedA& operator=(const PackedA&) = delete;

    std::int64_t m() const { return m_; }
    std::int64_t k() const { return k_; }
    std::int64_t n() const { return n_; }
    const T* data() const { return data_; }

private:
    std::int64_t m_, k_, n_;
    std::size_t bytes_ = 0;
    T* data_ = nullptr;
};

// C = alpha * A * op(B) + beta * C with A from PackedA; B is n columns wide, where n may differ
// from the width A was packed for only if both are narrow or both are not.
template <class T>
void gemm(const PackedA<T>& a, std::int64_t n, bool trans_b, const T* b, std::int64_t ldb, T alpha, T beta, T* c, std::int64_t ldc,
          const Epilogue<T>& epi = {}) {
    const std::int64_t m = a.m(), k = a.k();
    if (m <= 0 || n <= 0 || k <= 0) return;
    if (gemm_detail::narrow<T>(n) != gemm_detail::narrow<T>(a.n()))
        fail<value_error>("gemm", "A was packed for products ", a.n(), " wide, this one is ", n, " wide: repack A");
    const gemm_detail::Operand<T> A{nullptr, 0, false}, B{b, ldb, trans_b};
    if (gemm_detail::narrow<T>(n)) gemm_detail::gemm_impl<T, 1>(A, B, m, n, k, alpha, beta, c, ldc, epi, a.data());
    else gemm_detail::gemm_impl<T, GemmShape<T>::NV>(A, B, m, n, k, alpha, beta, c, ldc, epi, a.data());
}

template <class T>
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a, std::int64_t lda,
          const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc, const Epilogue<T>& epi = {}) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == T(0)) {
        // Nothing to multiply: C = beta * C, then the epilogue.
        for (std::int64_t i = 0; i < m; ++i)
            for (std::int64_t j = 0; j < n; ++j) {
                T r = beta == T(0) ? T(0) : beta * c[i * ldc + j];
                if (epi.row_bias) r += epi.row_bias[i];
                if (epi.col_bias) r += epi.col_bias[j];
                if (epi.activation == Activation::relu) r = r > T(0) ? r : T(0);
                c[i * ldc + j] = r;
            }
        return;
    }
    const gemm_detail::Operand<T> A{a, lda, trans_a}, B{b, ldb, trans_b};
    // A narrow C (a classifier layer's 10 outputs) gets a one-vector-wide tile, not a padded two.
    if (gemm_detail::narrow<T>(n)) gemm_detail::gemm_impl<T, 1>(A, B, m, n, k, alpha, beta, c, ldc, epi);
    else gemm_detail::gemm_impl<T, GemmShape<T>::NV>(A, B, m, n, k, alpha, beta, c, ldc, epi);
}

}  // namespace tensortape::cpu
