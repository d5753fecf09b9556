#pragma once
// Reductions over chosen axes. The output keeps the reduced axes with extent 1, so it reads as a
// broadcast operand of the input's shape: the input is walked in coalesced rows, and each row
// either folds into one output value (reduced innermost axis: a SIMD horizontal fold) or into a
// row of outputs (kept innermost axis: SIMD vertical folds).

#include <tensortape/backend/cpu/loop.hpp>
#include <tensortape/core/compat.hpp>
#include <tensortape/core/tensor.hpp>

#include <limits>

namespace tensortape::cpu {

struct SumFold {
    template <class T> static constexpr T identity() { return T(0); }
    template <class B> static B fold(B a, B b) { return a + b; }
    template <class T> static T fold_lanes(const simd::batch<T>& v) { return simd::reduce_add(v); }
};
struct MaxFold {
    template <class T> static constexpr T identity() { return -std::numeric_limits<T>::infinity(); }
    template <class B> static B fold(B a, B b) { return simd::max(a, b); }
    template <class T> static T fold_lanes(const simd::batch<T>& v) { return simd::reduce_max(v); }
};
struct MinFold {
    template <class T> static constexpr T identity() { return std::numeric_limits<T>::infinity(); }
    template <class B> static B fold(B a, B b) { return simd::min(a, b); }
    template <class T> static T fold_lanes(const simd::batch<T>& v) { return simd::reduce_min(v); }
};

// out (shape `kept`: the input's shape with reduced axes set to 1) = fold of `in` over those axes.
template <class Fold, class T>
void reduce(const Tensor<T>& in, Tensor<T>& out) {
    using B = simd::batch<T>;
    constexpr std::int64_t W = simd::width<T>;
    const Tensor<T> x = in.contiguous();
    std::fill_n(out.data(), out.numel(), Fold::template identity<T>());
    const Shape& s = x.shape();
    const auto L = make_layout<2>(s, {contiguous_strides(s), broadcast_strides(out.shape(), contiguous_strides(out.shape()), s)});
    const bool fold_row = L.strides[1].back() == 0;
    const T* xd = x.data();
    T* od = out.data();
    for (std::int64_t r = 0; r < L.rows; ++r) {
        const auto off = L.row_offsets(r);
        const T* xr = xd + off[0];
        T* o = od + off[1];
        std::int64_t j = 0;
        if (fold_row) {
            B acc(Fold::template identity<T>());
            for (; j + W <= L.cols; j += W) acc = Fold::fold(acc, simd::load<B>(xr + j));
            T t = Fold::template fold_lanes<T>(acc);
            for (; j < L.cols; ++j) t = Fold::fold(t, xr[j]);
            *o = Fold::fold(*o, t);
        } else {
            for (; j + W <= L.cols; j += W) simd::store<B>(o + j, Fold::fold(simd::load<B>(o + j), simd::load<B>(xr + j)));
            for (; j < L.cols; ++j) o[j] = Fold::fold(o[j], xr[j]);
        }
    }
}

// The shape with the given axes set to 1 (all axes when `axes` is empty).
inline Shape kept_shape(std::string_view op, const Shape& s, std::span<const int> axes) {
    Shape k = s;
    if (axes.empty()) {
        for (auto& d : k) d = 1;
        return k;
    }
    for (int a : axes) k[normalize_axis(op, a, s.rank())] = 1;
    return k;
}

// Sums `g` (shape `from`) down to `to`, the shape it was broadcast from: the gradient of a
// broadcast. `to` may have fewer axes.
template <class T>
Tensor<T> sum_to(const Tensor<T>& g, const Shape& to) {
    if (g.shape() == to) return g;
    const Shape& from = g.shape();
    Shape kept = Shape::filled(from.rank(), 1);
    const int off = from.rank() - to.rank();
    for (int i = 0; i < to.rank(); ++i) kept[off + i] = to[i] == 1 ? 1 : from[off + i];
    Tensor<T> out(kept);
    reduce<SumFold>(g, out);
    return out.reshape(to);
}

}  // namespace tensortape::cpu
