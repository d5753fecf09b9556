#pragma once
// matmul: [..., m, k] @ [..., k, n] -> [..., m, n], batch axes broadcast like NumPy.
// Backward: dA = dC @ B^T and dB = A^T @ dC, each summed over the batch axes its operand was
// broadcast along. All products go through cpu::gemm.

#include <tensortape/autodiff/eval.hpp>
#include <tensortape/autodiff/function.hpp>
#include <tensortape/backend/cpu/gemm.hpp>
#include <tensortape/backend/cpu/reduce.hpp>

namespace tensortape {

namespace detail {

// C[b] = op(A[b]) op(B[b]) over broadcast batch axes. a_shape/b_shape are the operands' shapes as
// stored; ta/tb say whether each is used transposed.
template <Floating T>
Tensor<T> batched_gemm(const Tensor<T>& a, bool ta, const Tensor<T>& b, bool tb) {
    const Shape& as = a.shape();
    const Shape& bs = b.shape();
    const std::int64_t m = ta ? as[as.rank() - 1] : as[as.rank() - 2];
    const std::int64_t k = ta ? as[as.rank() - 2] : as[as.rank() - 1];
    const std::int64_t n = tb ? bs[bs.rank() - 2] : bs[bs.rank() - 1];
    const Shape abatch(as.begin(), as.end() - 2), bbatch(bs.begin(), bs.end() - 2);
    const Shape batch = broadcast_shapes("matmul", abatch, bbatch);
    Shape os = batch;
    os.push_back(m);
    os.push_back(n);
    Tensor<T> out(os);
    const Tensor<T> ac = a.contiguous(), bc = b.contiguous();
    const auto L = cpu::make_layout<3>(batch, {contiguous_strides(batch), broadcast_strides(abatch, contiguous_strides(abatch), batch),
                                               broadcast_strides(bbatch, contiguous_strides(bbatch), batch)});
    const std::int64_t amat = as[as.rank() - 2] * as[as.rank() - 1], bmat = bs[bs.rank() - 2] * bs[bs.rank() - 1];
    for (std::int64_t r = 0; r < L.rows; ++r) {
        const auto off = L.row_offsets(r);
        for (std::int64_t j = 0; j < L.cols; ++j) {
            const T* ap = ac.data() + (off[1] + j * L.strides[1].back()) * amat;
            const T* bp = bc.data() + (off[2] + j * L.strides[2].back()) * bmat;
            T* cp = out.data() + (off[0] + j) * m * n;
            cpu::gemm<T>(ta, tb, m, n, k, T(1), ap, as[as.rank() - 1], bp, bs[bs.rank() - 1], T(0), cp, n);
        }
    }
    return out;
}

template <Floating T>
Var<T> matmul(const Var<T>& a, const Var<T>& b) {
    const Shape as = a.shape(), bs = b.shape();
    if (as.rank() < 2 || bs.rank() < 2)
        fail<shape_error>("matmul", "operands must have at least 2 axes, got ", as, " and ", bs);
    if (as.back() != bs[bs.rank() - 2])
        fail<shape_error>("matmul", "inner dimensions differ: ", as, " @ ", bs, " (", as.back(), " vs ", bs[bs.rank() - 2], ")");
    Tensor<T> out = detail::batched_gemm(a.value(), false, b.value(), false);
    return record<T>("matmul", std::move(out), {a, b}, [](BackwardContext& ctx, const Tensor<T>& g, std::span<const Var<T>> in) {
        const Var<T>& a = in[0];
        const Var<T>& b = in[1];
        if (a.requires_grad()) {
            Tensor<T> ga = detail::batched_gemm(g, false, b.value(), true);
            ctx.accumulate(a.node(), cpu::sum_to(ga, a.shape()));
        }
        if (b.requires_grad()) {
            Tensor<T> gb = detail::batched_gemm(a.value(), true, g, false);
            ctx.accumulate(b.node(), cpu::sum_to(gb, b.shape()));
        }
    });
}

}  // namespace detail

// Takes Vars, expressions (evaluated first) or constant tensors; at least one must be a Var or
// an expression.
template <class X, class Y>
    requires(Differentiable<X> || Differentiable<Y>) && Operand<X> && Operand<Y> && std::same_as<operand_value_t<X>, operand_value_t<Y>>
auto matmul(X&& a, Y&& b) {
    return detail::matmul(eval(std::forward<X>(a)), eval(std::forward<Y>(b)));
}

}  // namespace tensortape
