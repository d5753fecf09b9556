#pragma once
// NumPy's .npy format (numpy.lib.format):
//
//   6 bytes    "\x93NUMPY"
//   2 bytes    version major, minor: 1.0 (2-byte header length), 2.0 and 3.0 (4-byte length)
//   2/4 bytes  header length, little-endian
//   header     a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
//              padded with spaces and ended by '\n' so that the data starts 64-byte aligned
//   data       the elements, C order unless fortran_order
//
// The writer emits version 1.0, the reader takes 1.0 to 3.0. The header is parsed as the small
// literal subset NumPy itself writes (quoted strings, True/False, tuples of integers), not as
// Python.

#include <tensortape/core/error.hpp>
#include <tensortape/core/shape.hpp>
#include <tensortape/core/tensor.hpp>
#include <tensortape/io/common.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>

namespace tensortape::io {

namespace detail {

// The descr NumPy writes for T: single-byte types have no byte order ('|').
template <Element T>
constexpr std::string_view npy_descr() {
    if constexpr (std::is_same_v<T, float>) return "<f4";
    else if constexpr (std::is_same_v<T, double>) return "<f8";
    else if constexpr (std::is_same_v<T, std::int32_t>) return "<i4";
    else if constexpr (std::is_same_v<T, std::int64_t>) return "<i8";
    else if constexpr (std::is_same_v<T, std::uint8_t>) return "|u1";
    else static_assert(sizeof(T) == 0, "tensortape: no .npy descr for this element type");
}

struct NpyHeader {
    std::string descr;
    bool fortran_order = false;
    Shape shape;
};

// Parses the header dict. NumPy requires exactly the keys descr, fortran_order and shape.
class NpyHeaderParser {
public:
    NpyHeaderParser(std::string_view text, std::string_view op, std::string_view where)
        : s_(text), op_(op), where_(where) {}

    NpyHeader parse() {
        NpyHeader h;
        bool have[3] = {};
        skip_ws();
        expect('{');
        while (true) {
            skip_ws();
            if (peek() == '}') break;
            const std::size_t key_at = pos_;
            const std::string key = string();
            skip_ws();
            expect(':');
            skip_ws();
            int k;
            if (key == "descr") {
                k = 0;
                if (peek() == '[')
                    error(pos_, "structured dtypes (a list as 'descr') are not supported; save a plain numeric array");
                h.descr = string();
            } else if (key == "fortran_order") {
                k = 1;
                h.fortran_order = boolean();
            } else if (key == "shape") {
                k = 2;
                h.shape = tuple();
            } else {
                error(key_at, "unexpected key '" + key + "' (expected 'descr', 'fortran_order' and 'shape')");
            }
            if (have[k]) error(key_at, "duplicate key '" + key + "'");
            have[k] = true;
            skip_ws();
            if (peek() == ',') {
                ++pos_;
                continue;
            }
            if (peek() != '}') error(pos_, "expected ',' or '}' in the header dict, found " + found());
        }
        ++pos_;
        skip_ws();
        if (pos_ != s_.size()) error(pos_, "unexpected " + found() + " after the header dict");
        static constexpr const char* names[3] = {"descr", "fortran_order", "shape"};
        for (int k = 0; k < 3; ++k)
            if (!have[k]) error(s_.size(), std::string("the header dict has no '") + names[k] + "' key");
        return h;
    }

private:
    [[noreturn]] void error(std::size_t at, const std::string& what) const {
        fail<io_error>(op_, where_, ": invalid header at byte ", at, ": ", what);
    }
    char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
    std::string found() const {
        if (pos_ >= s_.size()) return "end of header";
        const auto c = static_cast<unsigned char>(s_[pos_]);
        if (c >= 0x20 && c < 0x7F) return std::string("'") + static_cast<char>(c) + "'";
        return "byte " + std::to_string(c);
    }
    void skip_ws() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
    }
    void expect(char c) {
        if (peek() != c) error(pos_, std::string("expected '") + c + "', found " + found());
        ++pos_;
    }
    // A quoted string without escapes: NumPy's keys and descrs never need them.
    std::string string() {
        const char q = peek();
        if (q != '\'' && q != '"') error(pos_, "expected a quoted string, found " + found());
        const std::size_t start = ++pos_;
        while (pos_ < s_.size() && s_[pos_] != q) {
            if (s_[pos_] == '\\') error(pos_, "escapes in strings are not supported");
            ++pos_;
        }
        if (pos_ >= s_.size()) error(start - 1, "unterminated string");
        return std::string(s_.substr(start, pos_++ - start));
    }
    bool boolean() {
        if (s_.substr(pos_, 4) == "True") return pos_ += 4, true;
        if (s_.substr(pos_, 5) == "False") return pos_ += 5, false;
        error(pos_, "expected True or False for 'fortran_order', found " + found());
    }
    // "()", "(3,)", "(2, 3)", "(2, 3,)"; a one-element tuple needs its comma, as in Python.
    Shape tuple() {
        const std::size_t start = pos_;
        expect('(');
        Shape shape;
        bool trailing_comma = false;
        while (true) {
            skip_ws();
            if (peek() == ')') break;
            if (peek() < '0' || peek() > '9') error(pos_, "expected a non-negative integer in 'shape', found " + found());
            std::int64_t n = 0;
            while (peek() >= '0' && peek() <= '9') {
                if (n > (std::numeric_limits<std::int64_t>::max() - (peek() - '0')) / 10)
                    error(pos_, "extent in 'shape' does not fit in 64 bits");
                n = n * 10 + (s_[pos_++] - '0');
            }
            if (peek() == 'L') ++pos_;  // Python 2 wrote long integers as 3L
            if (shape.rank() == max_rank)
                error(start, "'shape' has more than " + std::to_string(max_rank) + " axes, tensortape's maximum rank");
            shape.push_back(n);
            skip_ws();
            trailing_comma = peek() == ',';
            if (!trailing_comma) break;
            ++pos_;
        }
        skip_ws();
        expect(')');
        if (shape.rank() == 1 && !trailing_comma) error(start, "'shape' must be a tuple, such as (3,), not a parenthesised integer");
        return shape;
    }

    std::string_view s_;
    std::string_view op_;
    std::string_view where_;
    std::size_t pos_ = 0;
};

}  // namespace detail

// Writes t as a version 1.0 .npy file in C order (whatever t's strides), atomically: readers see
// either the previous file or the complete new one.
template <Element T>
void save_npy(const std::string& path, const Tensor<T>& t) {
    constexpr std::string_view op = "save_npy";
    if (!t.defined()) fail<io_error>(op, "file '", path, "': the tensor is undefined (a default-constructed Tensor)");
    std::string h = "{'descr': '";
    h += detail::npy_descr<T>();
    h += "', 'fortran_order': False, 'shape': (";
    for (int d = 0; d < t.rank(); ++d) h += std::to_string(t.shape()[d]) + (t.rank() == 1 ? "," : d + 1 < t.rank() ? ", " : "");
    h += "), }";
    // 10 bytes of preamble (magic, version, 2-byte length); at most 8 axes keep the header far
    // below version 1.0's 65535-byte limit.
    const std::size_t total = (10 + h.size() + 1 + 63) / 64 * 64;
    h.append(total - 10 - h.size() - 1, ' ');
    h += '\n';
    const std::size_t hlen = h.size();
    const unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<unsigned char>(hlen & 0xFF),
                                   static_cast<unsigned char>(hlen >> 8)};
    const Tensor<T> c = t.contiguous();
    detail::AtomicWriter out(op, path);
    out.write(pre, sizeof pre);
    out.write(h.data(), h.size());
    out.write(c.data(), static_cast<std::uint64_t>(c.numel()) * sizeof(T));
    out.commit();
}

// Reads a .npy file whose dtype is exactly T (e.g. '<f4' for float) in C order. Mismatches are
// io_errors naming the file, the descr found and the one T needs: no silent conversions.
template <Element T>
Tensor<T> load_npy(const std::string& path) {
    constexpr std::string_view op = "load_npy";
    const std::string where = "file '" + path + "'";
    const detail::InputFile in(op, path);
    const std::uint64_t size = in.size();
    if (size < 10) fail<io_error>(op, where, ": the file is ", size, " bytes, too short for a .npy preamble");
    unsigned char pre[12] = {};
    in.read_at(pre, size >= 12 ? 12 : 10, 0, "the preamble");
    if (std::memcmp(pre, "\x93NUMPY", 6) != 0) fail<io_error>(op, where, ": not a .npy file (no \\x93NUMPY magic)");
    const int major = pre[6], minor = pre[7];
    if (major < 1 || major > 3 || minor != 0)
        fail<io_error>(op, where, ": unsupported .npy version ", major, ".", minor, " (expected 1.0, 2.0 or 3.0)");
    std::uint64_t header_start = 10, hlen = pre[8] | (static_cast<std::uint64_t>(pre[9]) << 8);
    if (major >= 2) {
        if (size < 12) fail<io_error>(op, where, ": the file is ", size, " bytes, too short for a version ", major, " preamble");
        header_start = 12;
        hlen |= (static_cast<std::uint64_t>(pre[10]) << 16) | (static_cast<std::uint64_t>(pre[11]) << 24);
    }
    if (hlen > size - header_start)
        fail<io_error>(op, where, ": header length ", hlen, " runs past the end of the file (", size, " bytes)");
    std::string text(static_cast<std::size_t>(hlen), '\0');
    in.read_at(text.data(), hlen, header_start, "the header");
    const detail::NpyHeader h = detail::NpyHeaderParser(text, op, where).parse();

    constexpr std::string_view want = detail::npy_descr<T>();
    // Single-byte types have no byte order, so every order mark means the same array.
    const bool same = h.descr == want || (sizeof(T) == 1 && h.descr.size() == 3 && h.descr.substr(1) == want.substr(1) &&
                                           (h.descr[0] == '<' || h.descr[0] == '>' || h.descr[0] == '='));
    if (!same)
        fail<io_error>(op, where, ": the array has descr '", h.descr, "', expected '", want, "' for ",
                       dtype_name(dtype_of<T>()), (h.descr.size() > 0 && h.descr[0] == '>' ? " (big-endian data is not supported)" : ""));
    if (h.fortran_order)
        fail<io_error>(op, where, ": fortran_order is True (column-major data), which is not supported; "
                                  "save a C-ordered array, e.g. numpy.save(path, numpy.ascontiguousarray(a))");

    const std::uint64_t data_start = header_start + hlen;
    const std::uint64_t have = size - data_start;
    std::uint64_t need = 0;
    bool fits = true;
    // Overflow-checked, since the shape is untrusted.
    if (std::find(h.shape.begin(), h.shape.end(), 0) == h.shape.end()) {
        constexpr auto limit = std::numeric_limits<std::uint64_t>::max();
        std::uint64_t elems = 1;
        for (int a = 0; a < h.shape.rank() && fits; ++a)
            fits = detail::mul_within(elems, static_cast<std::uint64_t>(h.shape[a]), limit, elems);
        fits = fits && detail::mul_within(elems, sizeof(T), limit, need);
    }
    if (!fits || need != have)
        fail<io_error>(op, where, ": the data section is ", have, " bytes, expected ",
                       fits ? std::to_string(need) : std::string("more than 2^64"), " for shape ", h.shape, " of '",
                       h.descr, "'");
    Tensor<T> out(h.shape);
    if (need > 0) in.read_at(out.data(), need, data_start, "the data");
    return out;
}

}  // namespace tensortape::io
