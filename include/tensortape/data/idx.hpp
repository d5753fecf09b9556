#pragma once
// Reader for the IDX format of MNIST and Fashion-MNIST: two zero bytes, a type byte, a
// dimension count, that many big-endian uint32 extents, then the elements in big-endian order.
// Gzip-compressed files are recognised by their magic bytes rather than their name, because
// the data sets are distributed both ways and renamed freely.

#include <tensortape/core/error.hpp>
#include <tensortape/core/shape.hpp>
#include <tensortape/core/tensor.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <ostream>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/stat.h>

// The macro says the build links zlib; the header alone would compile but fail to link.
#if defined(TENSORTAPE_HAS_ZLIB) && TENSORTAPE_HAS_ZLIB
#if __has_include(<zlib.h>)
#include <zlib.h>
#define TENSORTAPE_DETAIL_USE_ZLIB 1
#else
#error "tensortape: TENSORTAPE_HAS_ZLIB is set but <zlib.h> cannot be found"
#endif
#else
#define TENSORTAPE_DETAIL_USE_ZLIB 0
#endif

namespace tensortape::data {

// A file that cannot be read or does not hold what it should.
class data_error : public tensortape::error {
public:
    using error::error;
};

namespace idx_type {
inline constexpr std::uint8_t ubyte = 0x08;
inline constexpr std::uint8_t sbyte = 0x09;
inline constexpr std::uint8_t int16 = 0x0B;
inline constexpr std::uint8_t int32 = 0x0C;
inline constexpr std::uint8_t float32 = 0x0D;
inline constexpr std::uint8_t float64 = 0x0E;
}  // namespace idx_type

// Bytes per element of an IDX type code, 0 for a code the format does not define.
constexpr std::size_t idx_element_size(std::uint8_t type) {
    switch (type) {
        case idx_type::ubyte:
        case idx_type::sbyte: return 1;
        case idx_type::int16: return 2;
        case idx_type::int32:
        case idx_type::float32: return 4;
        case idx_type::float64: return 8;
        default: return 0;
    }
}

constexpr const char* idx_type_name(std::uint8_t type) {
    switch (type) {
        case idx_type::ubyte: return "ubyte";
        case idx_type::sbyte: return "sbyte";
        case idx_type::int16: return "int16";
        case idx_type::int32: return "int32";
        case idx_type::float32: return "float32";
        case idx_type::float64: return "float64";
        default: return "unknown";
    }
}

struct IdxArray {
    std::uint8_t type = 0;            // an idx_type code
    std::vector<std::int64_t> dims;   // 1 to 8 extents
    std::vector<std::uint8_t> bytes;  // the elements, already in host byte order

    std::int64_t numel() const {
        std::int64_t n = 1;
        for (auto d : dims) n *= d;
        return n;
    }
};

namespace detail {

inline constexpr int idx_max_dims = 8;

struct HexByte {
    unsigned value;
    friend std::ostream& operator<<(std::ostream& os, HexByte b) {
        static constexpr char digits[] = "0123456789abcdef";
        return os << "0x" << digits[(b.value >> 4) & 15] << digits[b.value & 15];
    }
};

inline std::string quoted(const std::string& path) { return "'" + path + "'"; }

inline std::vector<std::uint8_t> read_file_bytes(const char* op, const std::string& path) {
    errno = 0;
    struct Close {
        void operator()(std::FILE* f) const { std::fclose(f); }
    };
    const std::unique_ptr<std::FILE, Close> f(std::fopen(path.c_str(), "rb"));
    if (!f) fail<data_error>(op, "cannot open ", quoted(path), ": ", std::strerror(errno));
    std::vector<std::uint8_t> out;
    struct stat st {};
    if (::fstat(::fileno(f.get()), &st) == 0 && st.st_size > 0) out.reserve(static_cast<std::size_t>(st.st_size));
    errno = 0;
    std::uint8_t chunk[1 << 16];
    std::size_t n = 0;
    do {
        n = std::fread(chunk, 1, sizeof chunk, f.get());
        out.insert(out.end(), chunk, chunk + n);
    } while (n == sizeof chunk);
    // fread reports a directory (EISDIR) or an I/O failure only through ferror and errno.
    if (std::ferror(f.get())) fail<data_error>(op, "cannot read ", quoted(path), ": ", std::strerror(errno ? errno : EIO));
    return out;
}

inline bool is_gzip(const std::vector<std::uint8_t>& b) { return b.size() >= 2 && b[0] == 0x1f && b[1] == 0x8b; }

#if TENSORTAPE_DETAIL_USE_ZLIB

// Inflates every gzip member in memory (gzip(1) writes several when files are concatenated).
inline std::vector<std::uint8_t> gunzip(const char* op, const std::string& path, const std::vector<std::uint8_t>& in) {
    std::vector<std::uint8_t> out;
    // The trailer's size is only modulo 2^32 and may be corrupt; deflate cannot expand more
    // than about 1032:1, which bounds the reservation.
    if (in.size() >= 18) {
        const std::size_t tail = in.size() - 4;
        const std::uint64_t isize = std::uint64_t(in[tail]) | std::uint64_t(in[tail + 1]) << 8 |
                                    std::uint64_t(in[tail + 2]) << 16 | std::uint64_t(in[tail + 3]) << 24;
        // One spare byte lets the call that reaches the end of the stream report it.
        out.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(isize, std::uint64_t(in.size()) * 1032)) + 1);
    }
    z_stream zs{};
    // 16 + MAX_WBITS: gzip wrapper only, so a raw zlib stream is reported rather than guessed at.
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        fail<data_error>(op, "cannot initialise zlib to read ", quoted(path));
    struct End {
        z_stream* s;
        ~End() { inflateEnd(s); }
    } end{&zs};

    std::size_t pos = 0;
    while (true) {
        std::size_t produced = out.size();
        int rc = Z_OK;
        do {
            if (out.capacity() == out.size()) out.reserve(std::max<std::size_t>(out.capacity() * 2, 1u << 20));
            out.resize(out.capacity());
            const std::size_t in_chunk = std::min<std::size_t>(in.size() - pos, std::numeric_limits<uInt>::max());
            const std::size_t out_chunk = std::min<std::size_t>(out.size() - produced, std::numeric_limits<uInt>::max());
            zs.next_in = const_cast<Bytef*>(in.data() + pos);
            zs.avail_in = static_cast<uInt>(in_chunk);
            zs.next_out = out.data() + produced;
            zs.avail_out = static_cast<uInt>(out_chunk);
            rc = inflate(&zs, Z_NO_FLUSH);
            const std::size_t consumed = in_chunk - zs.avail_in, made = out_chunk - zs.avail_out;
            pos += consumed;
            produced += made;
            out.resize(produced);
            if (rc == Z_BUF_ERROR && pos == in.size())
                fail<data_error>(op, "gzip stream of ", quoted(path), " ends early after ", in.size(),
                                 " compressed bytes (", produced, " bytes decompressed): the file is truncated");
            // Z_BUF_ERROR with input and room left means inflate is stuck, which is no better.
            if (rc != Z_OK && rc != Z_STREAM_END && !(rc == Z_BUF_ERROR && (consumed || made)))
                fail<data_error>(op, "corrupt gzip stream in ", quoted(path), " at compressed byte ", pos, ": ",
                                 zs.msg ? zs.msg : "zlib error", " (zlib code ", rc, ")");
        } while (rc != Z_STREAM_END);

        if (pos == in.size()) break;
        if (in.size() - pos >= 2 && in[pos] == 0x1f && in[pos + 1] == 0x8b) {
            inflateReset(&zs);
            continue;
        }
        // gzip(1) accepts zero padding after the last member, so tar-like padding is not an error.
        std::size_t k = pos;
        while (k < in.size() && in[k] == 0) ++k;
        if (k == in.size()) break;
        fail<data_error>(op, quoted(path), " has ", in.size() - pos, " bytes after the end of its gzip stream",
                         " (at compressed byte ", pos, "), expected another gzip member or nothing");
    }
    return out;
}

#endif

template <class U>
U load_big_endian(const std::uint8_t* p) {
    using Bits = std::conditional_t<sizeof(U) == 1, std::uint8_t,
                 std::conditional_t<sizeof(U) == 2, std::uint16_t,
                 std::conditional_t<sizeof(U) == 4, std::uint32_t, std::uint64_t>>>;
    Bits bits = 0;
    for (std::size_t i = 0; i < sizeof(U); ++i) bits = static_cast<Bits>((bits << 8) | p[i]);
    return std::bit_cast<U>(bits);
}

// Calls f.template operator()<E>(bytes, n) with E the payload's element type; elements are read
// with memcpy, since the buffer holds bytes, not objects of type E.
template <class F>
void visit_idx(const IdxArray& a, F&& f) {
    const auto n = static_cast<std::size_t>(a.numel());
    const std::uint8_t* p = a.bytes.data();
    switch (a.type) {
        case idx_type::ubyte: return f.template operator()<std::uint8_t>(p, n);
        case idx_type::sbyte: return f.template operator()<std::int8_t>(p, n);
        case idx_type::int16: return f.template operator()<std::int16_t>(p, n);
        case idx_type::int32: return f.template operator()<std::int32_t>(p, n);
        case idx_type::float32: return f.template operator()<float>(p, n);
        case idx_type::float64: return f.template operator()<double>(p, n);
        default: fail<data_error>("read_idx", "unknown IDX type code ", HexByte{a.type});
    }
}

template <class E>
E load_host(const std::uint8_t* p, std::size_t i) {
    E v;
    std::memcpy(&v, p + i * sizeof(E), sizeof(E));
    return v;
}

// Converts a value to T, refusing what T cannot hold exactly where T is an integer: a silent
// wrap or truncation would corrupt labels without a trace.
template <Element T, class E>
T convert_idx_value(const char* op, const std::string& path, E v, std::size_t index) {
    if constexpr (std::is_integral_v<T>) {
        bool ok;
        if constexpr (std::is_floating_point_v<E>) {
            // 2^digits is exact in E, unlike numeric_limits<T>::max() for 64-bit T.
            const E bound = std::ldexp(E(1), std::numeric_limits<T>::digits);
            ok = std::isfinite(v) && std::trunc(v) == v && v < bound && v >= (std::is_signed_v<T> ? -bound : E(0));
        } else {
            ok = std::in_range<T>(v);
        }
        if (!ok)
            fail<data_error>(op, quoted(path), ": element ", index, " is ", +v, ", which ", dtype_name(dtype_of<T>()),
                             " cannot hold");
    }
    return static_cast<T>(v);
}

// Checks the header and returns the array; `path` only names the file in messages.
inline IdxArray parse_idx(const char* op, const std::string& path, std::vector<std::uint8_t> file, bool was_gzip) {
    const char* what = was_gzip ? " (after gzip decompression)" : "";
    if (file.size() < 4)
        fail<data_error>(op, quoted(path), " is ", file.size(), " bytes long", what,
                         ", too short for the 4-byte IDX header");
    if (file[0] != 0 || file[1] != 0)
        fail<data_error>(op, quoted(path), " is not an IDX file: it starts with bytes ", HexByte{file[0]}, " ",
                         HexByte{file[1]}, what, ", expected 0x00 0x00");
    IdxArray a;
    a.type = file[2];
    const std::size_t esize = idx_element_size(a.type);
    if (esize == 0)
        fail<data_error>(op, quoted(path), ": unknown IDX type code ", HexByte{a.type},
                         ", expected 0x08 (ubyte), 0x09 (sbyte), 0x0b (int16), 0x0c (int32), 0x0d (float32) or 0x0e (float64)");
    const int ndims = file[3];
    if (ndims < 1 || ndims > idx_max_dims)
        fail<data_error>(op, quoted(path), ": header declares ", ndims, " dimensions, expected 1 to ", idx_max_dims);
    const std::size_t header = 4 + 4 * static_cast<std::size_t>(ndims);
    if (file.size() < header)
        fail<data_error>(op, quoted(path), ": header declares ", ndims, " dimensions (", header,
                         " header bytes) but the file", what, " has only ", file.size(), " bytes");

    const std::uint64_t payload = file.size() - header;
    // Saturating product: dims from a corrupt header can exceed 64 bits, and the comparison with
    // the payload must happen before anything of that size is allocated.
    const std::uint64_t limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    std::uint64_t needed = esize;
    bool saturated = false;
    Shape shown;
    for (int i = 0; i < ndims; ++i) {
        const std::uint64_t d = load_big_endian<std::uint32_t>(file.data() + 4 + 4 * i);
        a.dims.push_back(static_cast<std::int64_t>(d));
        shown.push_back(static_cast<std::int64_t>(d));
        if (saturated || needed == 0) continue;
        if (d != 0 && needed > limit / d) saturated = true;
        else needed *= d;
    }
    if (std::find(a.dims.begin(), a.dims.end(), 0) != a.dims.end()) {
        needed = 0;
        saturated = false;
    }
    if (saturated)
        fail<data_error>(op, quoted(path), ": dims ", shown, " of ", idx_type_name(a.type), " describe more than ",
                         limit, " bytes of data but the file", what, " holds ", payload, " after the header (corrupt header?)");
    if (needed > payload)
        fail<data_error>(op, quoted(path), ": dims ", shown, " of ", idx_type_name(a.type), " need ", needed,
                         " bytes of data but the file", what, " holds ", payload,
                         " after the header: the file is truncated (or its header is corrupt)");
    if (needed < payload)
        fail<data_error>(op, quoted(path), ": dims ", shown, " of ", idx_type_name(a.type), " need ", needed,
                         " bytes of data but the file", what, " holds ", payload, " after the header: ", payload - needed,
                         " bytes of trailing garbage");

    // Reusing the file's buffer avoids a second copy of what can be the whole data set.
    file.erase(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(header));
    a.bytes = std::move(file);
    if constexpr (std::endian::native == std::endian::little) {
        if (esize == 1) return a;
        std::uint8_t* p = a.bytes.data();
        for (std::uint64_t i = 0; i < payload; i += esize) std::reverse(p + i, p + i + esize);
    }
    return a;
}

inline IdxArray read_idx(const char* op, const std::string& path) {
    std::vector<std::uint8_t> file = read_file_bytes(op, path);
    if (is_gzip(file)) {
#if TENSORTAPE_DETAIL_USE_ZLIB
        return parse_idx(op, path, gunzip(op, path, file), true);
#else
        fail<data_error>(op, quoted(path), " is gzip-compressed but tensortape was built without zlib support",
                         " (link zlib and define TENSORTAPE_HAS_ZLIB=1, or decompress the file with gunzip)");
#endif
    }
    return parse_idx(op, path, std::move(file), false);
}

template <Element T>
Tensor<T> to_tensor(const char* op, const std::string& path, const IdxArray& a, const Shape& shape, T scale) {
    Tensor<T> out(shape);
    T* dst = out.data();
    visit_idx(a, [&]<class E>(const std::uint8_t* src, std::size_t n) {
        if constexpr (std::is_same_v<E, T>) {
            if (scale == T(1)) {
                if (n) std::memcpy(dst, src, n * sizeof(T));
                return;
            }
        }
        for (std::size_t i = 0; i < n; ++i) {
            const E v = load_host<E>(src, i);
            if constexpr (std::is_floating_point_v<T>) dst[i] = static_cast<T>(v) * scale;
            else dst[i] = convert_idx_value<T>(op, path, v, i);
        }
    });
    return out;
}

}  // namespace detail

// Reads an IDX file, plain or gzip-compressed.
inline IdxArray read_idx(const std::string& path) { return detail::read_idx("read_idx", path); }

// Reads an IDX file into a tensor of its dims, converting each element to T. Integer targets
// refuse values they cannot hold exactly.
template <Element T>
Tensor<T> read_idx_tensor(const std::string& path) {
    const IdxArray a = detail::read_idx("read_idx_tensor", path);
    return detail::to_tensor<T>("read_idx_tensor", path, a, Shape(a.dims), T(1));
}

}  // namespace tensortape::data
