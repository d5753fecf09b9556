#pragma once
// The iteration space of an elementwise kernel: an output of some shape and N operands read
// through broadcast strides. Axes are coalesced where every operand allows it, so a same-shape
// expression becomes one long row and a bias broadcast over a matrix becomes rows of the bias.
// After coalescing, the innermost stride of each contiguous operand is 1 or 0 (broadcast), which
// is all a vectorised row loop needs to know.
//
// Work is cut into fixed-size chunks (independent of the thread count), so a reduction's partial
// sums and therefore its result do not depend on how many threads ran it.

#include <tensortape/backend/cpu/thread_pool.hpp>
#include <tensortape/core/shape.hpp>

#include <array>
#include <cstdint>

namespace tensortape::cpu {

// Elements per chunk: big enough to amortise handing a chunk to a thread, small enough to
// balance two threads on a 100k-element tensor.
inline constexpr std::int64_t chunk_elements = 1 << 15;

template <int N>
struct Layout {
    Shape shape;                      // coalesced iteration shape, rank >= 1
    std::array<Strides, N> strides;   // per operand, in elements
    std::int64_t rows = 1;            // product of all but the last extent
    std::int64_t cols = 1;            // last extent

    // Operand offsets at the start of a row.
    std::array<std::int64_t, N> row_offsets(std::int64_t row) const {
        std::array<std::int64_t, N> off{};
        for (int d = shape.rank() - 2; d >= 0; --d) {
            const std::int64_t i = row % shape[d];
            row /= shape[d];
            for (int k = 0; k < N; ++k) off[k] += i * strides[k][d];
        }
        return off;
    }

    bool broadcasts(int k) const {
        for (int d = 0; d < shape.rank(); ++d)
            if (strides[k][d] == 0 && shape[d] > 1) return true;
        return false;
    }
};

// Builds the coalesced layout for an output of `shape` and operands with the given strides
// (already broadcast to `shape`).
template <int N>
Layout<N> make_layout(const Shape& shape, const std::array<Strides, N>& strides) {
    Layout<N> L;
    // Drop extent-1 axes: they contribute nothing to offsets.
    for (int d = 0; d < shape.rank(); ++d) {
        if (shape[d] == 1) continue;
        const int r = L.shape.rank();
        bool merge = r > 0;
        for (int k = 0; merge && k < N; ++k) merge = L.strides[k][r - 1] == strides[k][d] * shape[d];
        if (merge) {
            L.shape[r - 1] *= shape[d];
            for (int k = 0; k < N; ++k) L.strides[k][r - 1] = strides[k][d];
        } else {
            L.shape.push_back(shape[d]);
            for (int k = 0; k < N; ++k) L.strides[k].push_back(strides[k][d]);
        }
    }
    if (L.shape.rank() == 0) {
        L.shape.push_back(shape.numel());  // a scalar, or an empty tensor (numel 0)
        for (int k = 0; k < N; ++k) L.strides[k].push_back(1);
    }
    L.cols = L.shape.back();
    L.rows = L.shape.numel() / (L.cols == 0 ? 1 : L.cols);
    if (L.cols == 0) L.rows = 0;
    return L;
}

// A piece of work: rows [row0, row1), and within each row the columns [col0, col1).
struct Chunk {
    std::int64_t row0, row1, col0, col1;
    std::int64_t index;  // position in the plan: where a reduction stores this chunk's partial
};

struct ChunkPlan {
    std::int64_t rows, cols, rows_per_chunk, cols_per_chunk, count;
    Chunk operator[](std::int64_t i) const {
        if (cols_per_chunk < cols) {  // long rows: several chunks per row
            const std::int64_t per_row = (cols + cols_per_chunk - 1) / cols_per_chunk;
            const std::int64_t r = i / per_row, c = (i % per_row) * cols_per_chunk;
            return {r, r + 1, c, std::min(cols, c + cols_per_chunk), i};
        }
        const std::int64_t r = i * rows_per_chunk;
        return {r, std::min(rows, r + rows_per_chunk), 0, cols, i};
    }
};

// `align` keeps column chunk boundaries on SIMD-width multiples, so only a row's end has a tail.
inline ChunkPlan plan_chunks(std::int64_t rows, std::int64_t cols, std::int64_t align) {
    ChunkPlan p{rows, cols, 1, cols, 0};
    if (rows == 0 || cols == 0) return p;
    if (cols >= 2 * chunk_elements) {
        p.cols_per_chunk = chunk_elements / align * align;
        p.count = rows * ((cols + p.cols_per_chunk - 1) / p.cols_per_chunk);
    } else {
        p.rows_per_chunk = std::max<std::int64_t>(1, chunk_elements / cols);
        p.count = (rows + p.rows_per_chunk - 1) / p.rows_per_chunk;
    }
    return p;
}

// Calls f(chunk) for every chunk, on the pool when `parallel` and there is more than one chunk.
template <class F>
void for_each_chunk(const ChunkPlan& plan, bool parallel, F&& f) {
    if (!parallel || plan.count <= 1) {
        for (std::int64_t i = 0; i < plan.count; ++i) f(plan[i]);
        return;
    }
    parallel_for(plan.count, [&](std::int64_t i) { f(plan[i]); });
}

}  // namespace tensortape::cpu
