#pragma once
// Printing in NumPy's style: nested brackets, aligned columns, and "..." past 1000 elements.

#include <tensortape/core/tensor.hpp>

#include <algorithm>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

namespace tensortape {

namespace detail {

template <class T>
std::string format_element(T v) {
    std::ostringstream os;
    if constexpr (std::is_floating_point_v<T>) os << std::setprecision(6) << v;
    else os << +v;
    return os.str();
}

template <class T>
void print_axis(std::ostream& os, const Tensor<T>& t, Dims& idx, int axis, int width, bool summarize, int indent) {
    constexpr std::int64_t edge = 3;
    const std::int64_t n = t.shape()[axis];
    os << '[';
    for (std::int64_t i = 0; i < n; ++i) {
        if (summarize && n > 2 * edge && i == edge) {
            os << (axis + 1 == t.rank() ? "..., " : "...,\n" + std::string(static_cast<std::size_t>(indent + 1), ' '));
            i = n - edge;
        }
        idx[axis] = i;
        if (axis + 1 == t.rank()) {
            os << std::setw(width) << format_element(t.at(idx));
        } else {
            print_axis(os, t, idx, axis + 1, width, summarize, indent + 1);
        }
        if (i + 1 < n) {
            if (axis + 1 == t.rank()) os << ", ";
            else os << ",\n" << std::string(static_cast<std::size_t>(t.rank() - axis - 1), '\n').substr(1) << std::string(static_cast<std::size_t>(indent + 1), ' ');
        }
    }
    os << ']';
}

}  // namespace detail

template <Element T>
std::ostream& operator<<(std::ostream& os, const Tensor<T>& t) {
    if (!t.defined()) return os << "tensor(undefined)";
    const std::string prefix = "tensor(";
    if (t.rank() == 0) return os << prefix << detail::format_element(t.item()) << ", dtype=" << dtype_name(t.dtype()) << ')';
    const bool summarize = t.numel() > 1000;
    int width = 0;
    std::int64_t count = 0;
    t.for_each([&](const T& v) {
        if (++count <= 1000) width = std::max(width, static_cast<int>(detail::format_element(v).size()));
    });
    os << prefix;
    if (t.numel() == 0) {
        os << "[]";
    } else {
        Dims idx = Dims::filled(t.rank(), 0);
        detail::print_axis(os, t, idx, 0, width, summarize, static_cast<int>(prefix.size()));
    }
    return os << ", shape=" << t.shape() << ", dtype=" << dtype_name(t.dtype()) << ')';
}

}  // namespace tensortape
