#pragma once
// Shapes and strides: small fixed-capacity arrays, so describing a tensor never allocates.
// Broadcasting follows NumPy: align trailing dimensions; each pair must be equal or contain a 1.

#include <tensortape/core/error.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <span>
#include <sstream>
#include <string>

namespace tensortape {

inline constexpr int max_rank = 8;

// A fixed-capacity list of up to max_rank signed 64-bit extents; used for shapes and strides.
class Dims {
public:
    using value_type = std::int64_t;

    constexpr Dims() = default;
    constexpr Dims(std::initializer_list<std::int64_t> dims) { assign(dims.begin(), dims.end()); }
    template <class It>
    constexpr Dims(It first, It last) { assign(first, last); }
    template <class Range>
        requires requires(const Range& r) { std::begin(r); std::end(r); }
    explicit constexpr Dims(const Range& r) { assign(std::begin(r), std::end(r)); }

    static constexpr Dims filled(int rank, std::int64_t value) {
        Dims d;
        d.resize(rank, value);
        return d;
    }

    constexpr int rank() const { return rank_; }
    constexpr std::size_t size() const { return static_cast<std::size_t>(rank_); }
    constexpr bool empty() const { return rank_ == 0; }
    constexpr std::int64_t& operator[](int i) { return d_[static_cast<std::size_t>(i)]; }
    constexpr std::int64_t operator[](int i) const { return d_[static_cast<std::size_t>(i)]; }
    constexpr std::int64_t* begin() { return d_.data(); }
    constexpr std::int64_t* end() { return d_.data() + rank_; }
    constexpr const std::int64_t* begin() const { return d_.data(); }
    constexpr const std::int64_t* end() const { return d_.data() + rank_; }
    constexpr const std::int64_t* data() const { return d_.data(); }
    constexpr std::int64_t back() const { return d_[static_cast<std::size_t>(rank_ - 1)]; }

    constexpr void resize(int rank, std::int64_t value = 0) {
        check_rank(rank);
        for (int i = rank_; i < rank; ++i) d_[static_cast<std::size_t>(i)] = value;
        rank_ = static_cast<std::uint8_t>(rank);
    }
    constexpr void push_back(std::int64_t v) {
        check_rank(rank_ + 1);
        d_[rank_++] = v;
    }
    constexpr void erase(int axis) {
        for (int i = axis; i + 1 < rank_; ++i) d_[static_cast<std::size_t>(i)] = d_[static_cast<std::size_t>(i + 1)];
        --rank_;
    }
    constexpr void insert(int axis, std::int64_t v) {
        check_rank(rank_ + 1);
        for (int i = rank_; i > axis; --i) d_[static_cast<std::size_t>(i)] = d_[static_cast<std::size_t>(i - 1)];
        d_[static_cast<std::size_t>(axis)] = v;
        ++rank_;
    }

    // Number of elements a shape describes (1 for rank 0).
    constexpr std::int64_t numel() const {
        std::int64_t n = 1;
        for (int i = 0; i < rank_; ++i) n *= d_[static_cast<std::size_t>(i)];
        return n;
    }

    friend constexpr bool operator==(const Dims& a, const Dims& b) {
        return a.rank_ == b.rank_ && std::equal(a.begin(), a.end(), b.begin());
    }

    std::string str() const {
        std::ostringstream os;
        os << *this;
        return os.str();
    }
    friend std::ostream& operator<<(std::ostream& os, const Dims& d) {
        os << '[';
        for (int i = 0; i < d.rank_; ++i) os << (i ? ", " : "") << d[i];
        return os << ']';
    }

private:
    template <class It>
    constexpr void assign(It first, It last) {
        rank_ = 0;
        for (; first != last; ++first) push_back(static_cast<std::int64_t>(*first));
    }
    static constexpr void check_rank(int rank) {
        if (rank < 0 || rank > max_rank)
            fail<value_error>("shape", "rank ", rank, " is outside 0..", max_rank);
    }

    std::array<std::int64_t, max_rank> d_{};
    std::uint8_t rank_ = 0;
};

using Shape = Dims;
using Strides = Dims;

// Row-major (C order) strides, in elements.
constexpr Strides contiguous_strides(const Shape& s) {
    Strides st = Strides::filled(s.rank(), 1);
    for (int i = s.rank() - 2; i >= 0; --i) st[i] = st[i + 1] * s[i + 1];
    return st;
}

// Whether every extent is non-negative; a shape is checked once where a tensor is made.
inline void check_shape(std::string_view op, const Shape& s) {
    for (auto d : s)
        if (d < 0) fail<value_error>(op, "negative extent in shape ", s);
}

inline bool can_broadcast(const Shape& a, const Shape& b) {
    const int r = std::max(a.rank(), b.rank());
    for (int i = 0; i < r; ++i) {
        const std::int64_t da = i < a.rank() ? a[a.rank() - 1 - i] : 1;
        const std::int64_t db = i < b.rank() ? b[b.rank() - 1 - i] : 1;
        if (da != db && da != 1 && db != 1) return false;
    }
    return true;
}

// The NumPy broadcast of two shapes; throws a shape_error naming `op` and both shapes.
inline Shape broadcast_shapes(std::string_view op, const Shape& a, const Shape& b) {
    if (a == b) return a;
    const int r = std::max(a.rank(), b.rank());
    Shape out = Shape::filled(r, 1);
    for (int i = 0; i < r; ++i) {
        const std::int64_t da = i < a.rank() ? a[a.rank() - 1 - i] : 1;
        const std::int64_t db = i < b.rank() ? b[b.rank() - 1 - i] : 1;
        if (da != db && da != 1 && db != 1)
            fail<shape_error>(op, "shapes ", a, " and ", b, " cannot be broadcast together (axis ", r - 1 - i,
                              " of the result: ", da, " vs ", db, ")");
        out[r - 1 - i] = da == 1 ? db : da;
    }
    return out;
}

// Strides that read a tensor of shape `from` (with strides `st`) as if it had the broadcast
// shape `to`: zero where `from` is 1 or missing. Assumes can_broadcast(from, to) and rank(to) >= rank(from).
constexpr Strides broadcast_strides(const Shape& from, const Strides& st, const Shape& to) {
    Strides out = Strides::filled(to.rank(), 0);
    const int off = to.rank() - from.rank();
    for (int i = 0; i < from.rank(); ++i)
        out[off + i] = (from[i] == 1 && to[off + i] != 1) ? 0 : st[i];
    return out;
}

// Normalises a possibly negative axis; throws a value_error naming `op` when out of range.
inline int normalize_axis(std::string_view op, int axis, int rank) {
    const int a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= rank) fail<value_error>(op, "axis ", axis, " is out of range for rank ", rank);
    return a;
}

}  // namespace tensortape
