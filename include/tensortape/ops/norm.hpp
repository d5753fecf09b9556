#pragma once
// Normalisation ops: batch_norm (over all axes but the channel axis 1: [N, C] or [N, C, H, W])
// and layer_norm (over the trailing axes of `normalized` shape). Both keep the per-group mean
// and inverse standard deviation for a closed-form backward.

#include <tensortape/autodiff/eval.hpp>
#include <tensortape/autodiff/function.hpp>

#include <cmath>
#include <optional>

namespace tensortape {

namespace detail {

// x viewed as [outer, groups, inner]; statistics per group over outer*inner values.
struct NormLayout {
    std::int64_t outer, groups, inner;
    std::int64_t count() const { return outer * inner; }
};

// xhat = (x - mean) * invstd; y = gamma * xhat + beta; all per group g.
template <Floating T>
void norm_apply(const T* x, T* y, const NormLayout& L, const T* mean, const T* invstd, const T* gamma, const T* beta) {
    for (std::int64_t o = 0; o < L.outer; ++o)
        for (std::int64_t g = 0; g < L.groups; ++g) {
            const T a = invstd[g] * (gamma ? gamma[g] : T(1));
            const T c = (beta ? beta[g] : T(0)) - mean[g] * a;
            const T* xp = x + (o * L.groups + g) * L.inner;
            T* yp = y + (o * L.groups + g) * L.inner;
            for (std::int64_t i = 0; i < L.inner; ++i) yp[i] = xp[i] * a + c;
        }
}

template <Floating T>
void norm_stats(const T* x, const NormLayout& L, std::vector<double>& mean, std::vector<double>& var) {
    mean.assign(static_cast<std::size_t>(L.groups), 0.0);
    var.assign(static_cast<std::size_t>(L.groups), 0.0);
    for (std::int64_t o = 0; o < L.outer; ++o)
        for (std::int64_t g = 0; g < L.groups; ++g) {
            const T* xp = x + (o * L.groups + g) * L.inner;
            double s = 0;
            for (std::int64_t i = 0; i < L.inner; ++i) s += xp[i];
            mean[static_cast<std::size_t>(g)] += s;
        }
    for (auto& m : mean) m /= static_cast<double>(L.count());
    for (std::int64_t o = 0; o < L.outer; ++o)
        for (std::int64_t g = 0; g < L.groups; ++g) {
            const T* xp = x + (o * L.groups + g) * L.inner;
            const double m = mean[static_cast<std::size_t>(g)];
            double s = 0;
            for (std::int64_t i = 0; i < L.inner; ++i) s += (xp[i] - m) * (xp[i] - m);
            var[static_cast<std::size_t>(g)] += s;
        }
    for (auto& v : var) v /= static_cast<double>(L.count());
}

// Backward of xhat-normalisation with batch statistics: for each group,
// dx = invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = gamma * dy.
template <Floating T>
void norm_backward(const T* x, const T* dy, const NormLayout& L, const T* mean, const T* invstd, const T* gamma, T* dx, T* dgamma,
                   T* dbeta) {
    std::vector<double> sum_dy(static_cast<std::size_t>(L.groups), 0.0), sum_dy_xhat(static_cast<std::size_t>(L.groups), 0.0);
    for (std::int64_t o = 0; o < L.outer; ++o)
        for (std::int64_t g = 0; g < L.groups; ++g) {
            const std::int64_t base = (o * L.groups + g) * L.inner;
            for (std::int64_t i = 0; i < L.inner; ++i) {
                const double xhat = (x[base + i] - mean[g]) * invstd[g];
                sum_dy[static_cast<std::size_t>(g)] += dy[base + i];
                sum_dy_xhat[static_cast<std::size_t>(g)] += dy[base + i] * xhat;
            }
        }
    if (dgamma)
        for (std::int64_t g = 0; g < L.groups; ++g) dgamma[g] = static_cast<T>(sum_dy_xhat[static_cast<std::size_t>(g)]);
    if (dbeta)
        for (std::int64_t g = 0; g < L.groups; ++g) dbeta[g] = static_cast<T>(sum_dy[static_cast<std::size_t>(g)]);
    if (!dx) return;
    const double n = static_cast<double>(L.count());
    for (std::int64_t o = 0; o < L.outer; ++o)
        for (std::int64_t g = 0; g < L.groups; ++g) {
            const std::int64_t base = (o * L.groups + g) * L.inner;
            const double gm = gamma ? gamma[g] : 1.0;
            const double m1 = sum_dy[static_cast<std::size_t>(g)] / n, m2 = sum_dy_xhat[static_cast<std::size_t>(g)] / n;
            for (std::int64_t i = 0; i < L.inner; ++i) {
                const double xhat = (x[base + i] - mean[g]) * invstd[g];
                dx[base + i] = static_cast<T>(gm * invstd[g] * (dy[base + i] - m1 - xhat * m2));
            }
        }
}

}  // namespace detail

struct BatchNormOptions {
    bool training = true;
    double momentum = 0.1;  // running = (1 - momentum) * running + momentum * batch, like PyTorch
    double eps = 1e-5;
};

// Batch normalisation over axis 1 of [N, C] or [N, C, H, W]. In training it normalises with the
// batch statistics and updates running_mean/running_var (unbiased variance) in place; in
// evaluation it uses them. gamma and beta are [C].
template <Floating T>
Var<T> batch_norm(const Var<T>& x, const Var<T>& gamma, const Var<T>& beta, Tensor<T>& running_mean, Tensor<T>& running_var,
                  const BatchNormOptions& o = {}) {
    const Shape& s = x.shape();
    if (s.rank() != 2 && s.rank() != 4) fail<shape_error>("batch_norm", "input must be [N, C] or [N, C, H, W], got shape ", s);
    const std::int64_t c = s[1];
    for (const Shape* p : {&gamma.shape(), &beta.shape(), &running_mean.shape(), &running_var.shape()})
        if (*p != Shape{c}) fail<shape_error>("batch_norm", "parameter of shape ", *p, " for ", c, " channels (expected [", c, "])");
    const detail::NormLayout L{s[0], c, s.rank() == 4 ? s[2] * s[3] : 1};
    if (o.training && L.count() < 2) fail<value_error>("batch_norm", "training needs more than one value per channel, input shape ", s);
    const Tensor<T> xc = x.value().contiguous();
    Tensor<T> mean(Shape{c}), invstd(Shape{c});
    if (o.training) {
        std::vector<double> m, v;
        detail::norm_stats(xc.data(), L, m, v);
        const double unbias = static_cast<double>(L.count()) / static_cast<double>(L.count() - 1);
        for (std::int64_t g = 0; g < c; ++g) {
            mean.data()[g] = static_cast<T>(m[static_cast<std::size_t>(g)]);
            invstd.data()[g] = static_cast<T>(1.0 / std::sqrt(v[static_cast<std::size_t>(g)] + o.eps));
            running_mean.data()[g] = static_cast<T>((1 - o.momentum) * running_mean.data()[g] + o.momentum * m[static_cast<std::size_t>(g)]);
            running_var.data()[g] =
                static_cast<T>((1 - o.momentum) * running_var.data()[g] + o.momentum * v[static_cast<std::size_t>(g)] * unbias);
        }
    } else {
        for (std::int64_t g = 0; g < c; ++g) {
            mean.data()[g] = running_mean.data()[g];
            invstd.data()[g] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(running_var.data()[g]) + o.eps));
        }
    }
    Tensor<T> y(s);
    detail::norm_apply(xc.data(), y.data(), L, mean.data(), invstd.data(), gamma.value().data(), beta.value().data());
    const bool training = o.training;
    return record<T>("batch_norm", std::move(y), {x, gamma, beta},
                     [L, mean, invstd, training](BackwardContext& ctx, const Tensor<T>& gy, std::span<const Var<T>> in) {
                         const Tensor<T> dy = gy.contiguous();
                         const Tensor<T> xv = in[0].value().contiguous();
                         Tensor<T> dx = in[0].requires_grad() ? Tensor<T>(in[0].shape()) : Tensor<T>();
                         Tensor<T> dg(Shape{L.groups}), db(Shape{L.groups});
                         if (training) {
                             detail::norm_backward(xv.data(), dy.data(), L, mean.data(), invstd.data(), in[1].value().data(),
                                                   dx.defined() ? dx.data() : nullptr, dg.data(), db.data());
                         } else {  // fixed statistics: an affine map per channel
                             detail::norm_backward<T>(xv.data(), dy.data(), L, mean.data(), invstd.data(), in[1].value().data(), nullptr,
                                                      dg.data(), db.data());
                             if (dx.defined())
                                 for (std::int64_t o2 = 0; o2 < L.outer; ++o2)
                                     for (std::int64_t g = 0; g < L.groups; ++g)
                                         for (std::int64_t i = 0; i < L.inner; ++i) {
                                             const std::int64_t k = (o2 * L.groups + g) * L.inner + i;
                                             dx.data()[k] = dy.data()[k] * invstd.data()[g] * in[1].value().data()[g];
                                         }
                         }
                         if (dx.defined()) ctx.accumulate(in[0].node(), std::move(dx));
                         if (in[1].requires_grad()) ctx.accumulate(in[1].node(), std::move(dg));
                         if (in[2].requires_grad()) ctx.accumulate(in[2].node(), std::move(db));
                     });
}

// Layer normalisation over the trailing axes whose extents gamma and beta have.
template <Floating T>
Var<T> layer_norm(const Var<T>& x, const Var<T>& gamma, const Var<T>& beta, double eps = 1e-5) {
    const Shape& s = x.shape();
    const Shape& ns = gamma.shape();
    bool ok = ns.rank() >= 1 && ns.rank() <= s.rank() && beta.shape() == ns;
    for (int i = 0; ok && i < ns.rank(); ++i) ok = s[s.rank() - ns.rank() + i] == ns[i];
    if (!ok) fail<shape_error>("layer_norm", "gamma ", ns, " and beta ", beta.shape(), " must both match the trailing axes of input ", s);
    const std::int64_t inner = ns.numel(), rows = s.numel() / std::max<std::int64_t>(1, inner);
    // Each row is its own group: view as [1, rows, inner] for the statistics...
    const detail::NormLayout stats{1, rows, inner};
    const Tensor<T> xc = x.value().contiguous();
    std::vector<double> m, v;
    detail::norm_stats(xc.data(), stats, m, v);
    Tensor<T> mean(Shape{rows}), invstd(Shape{rows});
    for (std::int64_t r = 0; r < rows; ++r) {
        mean.data()[r] = static_cast<T>(m[static_cast<std::size_t>(r)]);
        invstd.data()[r] = static_cast<T>(1.0 / std::sqrt(v[static_cast<std::size_t>(r)] + eps));
    }
    // ...and apply the elementwise affine per position within a row.
    Tensor<T> y(s);
    const T* g = gamma.value().data();
    const T* b = beta.value().data();
    for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t i = 0; i < inner; ++i) {
            const std::int64_t k = r * inner + i;
            y.data()[k] = (xc.data()[k] - mean.data()[r]) * invstd.data()[r] * g[i] + b[i];
        }
    return record<T>("layer_norm", std::move(y), {x, gamma, beta},
                     [rows, inner, mean, invstd](BackwardContext& ctx, const Tensor<T>& gy, std::span<const Var<T>> in) {
                         const Tensor<T> dy = gy.contiguous();
                         const Tensor<T> xv = in[0].value().contiguous();
                         const T* g = in[1].value().data();
                         Tensor<T> dg = zeros<T>(in[1].shape()), db = zeros<T>(in[1].shape());
                         Tensor<T> dx = in[0].requires_grad() ? Tensor<T>(in[0].shape()) : Tensor<T>();
                         for (std::int64_t r = 0; r < rows; ++r) {
                             double s1 = 0, s2 = 0;
                             for (std::int64_t i = 0; i < inner; ++i) {
                                 const std::int64_t k = r * inner + i;
                                 const double xhat = (xv.data()[k] - mean.data()[r]) * invstd.data()[r];
                                 dg.data()[i] += static_cast<T>(dy.data()[k] * xhat);
                                 db.data()[i] += dy.data()[k];
                                 const double dxhat = dy.data()[k] * g[i];
                                 s1 += dxhat;
                                 s2 += dxhat * xhat;
                             }
                             if (!dx.defined()) continue;
                             for (std::int64_t i = 0; i < inner; ++i) {
                                 const std::int64_t k = r * inner + i;
                                 const double xhat = (xv.data()[k] - mean.data()[r]) * invstd.data()[r];
                                 const double dxhat = dy.data()[k] * g[i];
                                 dx.data()[k] = static_cast<T>(invstd.data()[r] * (dxhat - s1 / inner - xhat * s2 / inner));
                             }
                         }
                         if (dx.defined()) ctx.accumulate(in[0].node(), std::move(dx));
                         if (in[1].requires_grad()) ctx.accumulate(in[1].node(), std::move(dg));
                         if (in[2].requires_grad()) ctx.accumulate(in[2].node(), std::move(db));
                     });
}

// Rows of `table` [num, dim] picked by integer indices of any shape: output [..., dim].
template <Floating T, std::integral I>
Var<T> embedding(const Var<T>& table, const Tensor<I>& indices) {
    if (table.rank() != 2) fail<shape_error>("embedding", "table must be [num, dim], got shape ", table.shape());
    const std::int64_t num = table.shape()[0], dim = table.shape()[1];
    const Tensor<I> idx = indices.contiguous();
    for (std::int64_t i = 0; i < idx.numel(); ++i)
        if (idx.data()[i] < 0 || static_cast<std::int64_t>(idx.data()[i]) >= num)
            fail<value_error>("embedding", "index ", +idx.data()[i], " at position ", i, " is outside [0, ", num, ")");
    Shape os = idx.shape();
    os.push_back(dim);
    Tensor<T> y(os);
    const T* t = table.value().data();
    for (std::int64_t i = 0; i < idx.numel(); ++i)
        std::copy_n(t + static_cast<std::int64_t>(idx.data()[i]) * dim, dim, y.data() + i * dim);
    return record<T>("embedding", std::move(y), {table}, [idx, dim](BackwardContext& ctx, const Tensor<T>& gy, std::span<const Var<T>> in) {
        const Tensor<T> g = gy.contiguous();
        Tensor<T> gt = zeros<T>(in[0].shape());
        for (std::int64_t i = 0; i < idx.numel(); ++i) {
            T* row = gt.data() + static_cast<std::int64_t>(idx.data()[i]) * dim;
            for (std::int64_t j = 0; j < dim; ++j) row[j] += g.data()[i * dim + j];
        }
        ctx.accumulate(in[0].node(), std::move(gt));
    });
}

}  // namespace tensortape
