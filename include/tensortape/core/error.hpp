#pragma once
// Errors. Every message starts with "tensortape: <op>: " and names the shapes involved and what
// was expected, so a user can find the failing call without a debugger.

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace tensortape {

class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Shapes that cannot be combined (broadcasting, matmul inner dimensions, concatenation).
class shape_error : public error {
public:
    using error::error;
};

// A value outside what an op accepts (an axis out of range, a negative size, a bad label).
class value_error : public error {
public:
    using error::error;
};

// Misuse of the autodiff machinery (backward through a freed graph, a modified input).
class autodiff_error : public error {
public:
    using error::error;
};

namespace detail {

template <class... Parts>
std::string message(std::string_view op, Parts&&... parts) {
    std::ostringstream os;
    os << "tensortape: " << op << ": ";
    (os << ... << std::forward<Parts>(parts));
    return os.str();
}

}  // namespace detail

template <class E = error, class... Parts>
[[noreturn]] void fail(std::string_view op, Parts&&... parts) {
    throw E(detail::message(op, std::forward<Parts>(parts)...));
}

}  // namespace tensortape
