#pragma once
// Interop with xtensor, both ways.
//  - as_xtensor(t): a zero-copy xtensor view over a tensor's storage (any strides); writes through.
//  - from_xtensor(e): a tensor holding the value of any xtensor expression (evaluated once).
//  - borrow(xarray/xtensor container): a zero-copy tensor over a container's memory, which the
//    caller keeps alive.

#include <tensortape/core/compat.hpp>
#include <tensortape/core/tensor.hpp>

#include <vector>

namespace tensortape {

template <Element T>
auto as_xtensor(Tensor<T>& t) {
    std::vector<std::size_t> shape(t.shape().begin(), t.shape().end());
    std::vector<std::ptrdiff_t> strides(t.strides().begin(), t.strides().end());
    const std::size_t span = static_cast<std::size_t>(t.numel());
    return xt::adapt(t.data(), span, xt::no_ownership(), shape, strides);
}
template <Element T>
auto as_xtensor(const Tensor<T>& t) {
    std::vector<std::size_t> shape(t.shape().begin(), t.shape().end());
    std::vector<std::ptrdiff_t> strides(t.strides().begin(), t.strides().end());
    const std::size_t span = static_cast<std::size_t>(t.numel());
    return xt::adapt(t.data(), span, xt::no_ownership(), shape, strides);
}

template <class E>
    requires xt::is_xexpression<std::decay_t<E>>::value
auto from_xtensor(const E& expr) {
    using T = std::decay_t<typename std::decay_t<E>::value_type>;
    const auto& s = expr.shape();
    Tensor<T> out(Shape(s.begin(), s.end()));
    std::vector<std::size_t> shape(s.begin(), s.end());
    auto view = xt::adapt(out.data(), static_cast<std::size_t>(out.numel()), xt::no_ownership(), shape);
    view = expr;
    return out;
}

// Zero-copy: the tensor reads and writes the container's memory. Strides are taken from the
// container, so a column-major container works too.
template <class C>
    requires requires(C& c) { c.data(); c.shape(); c.strides(); }
auto borrow(C& container) {
    using T = typename C::value_type;
    const auto& s = container.shape();
    const auto& st = container.strides();
    Shape shape(s.begin(), s.end());
    Strides strides(st.begin(), st.end());
    // xtensor reports stride 0 for extent-1 axes; any value works there.
    return Tensor<T>::borrow(container.data(), shape, strides);
}

}  // namespace tensortape
