#pragma once
// The safetensors checkpoint format (https://github.com/huggingface/safetensors):
//
//   8 bytes   N, the header length, unsigned little-endian
//   N bytes   UTF-8 JSON: {"__metadata__": {string: string} (optional),
//                          "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
//   the rest  the data section; a tensor's bytes are [begin, end) of it, row-major, little-endian
//
// The reader checks a file as strictly as the reference implementation does (tensors packed
// with neither gaps nor overlaps and covering the whole data section, byte counts matching
// shapes) before it allocates for any tensor, so a corrupt or hostile file costs one header read
// and yields an io_error that names the file and the tensor. The writer pads the header with
// spaces so the data section starts 8-byte aligned, and lays tensors out by decreasing element
// size so that each also starts aligned for its type when the file is memory-mapped.

#include <tensortape/core/error.hpp>
#include <tensortape/core/shape.hpp>
#include <tensortape/core/tensor.hpp>
#include <tensortape/io/common.hpp>
#include <tensortape/io/json.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace tensortape::io {

// One named tensor of any element type, as stored in a checkpoint: `bytes` holds
// shape.numel() * element-size bytes in row-major order.
struct TensorEntry {
    std::string name;
    DType dtype = DType::f32;
    Shape shape;
    std::vector<std::byte> bytes;
};

namespace detail {

inline void check_extents(std::string_view op, const std::string& path, const TensorEntry& e) {
    for (auto d : e.shape)
        if (d < 0)
            fail<io_error>(op, path.empty() ? "" : "file '" + path + "': ", "tensor '", e.name, "' has a negative extent in shape ",
                           e.shape);
}

}  // namespace detail

// Largest header the reader accepts; the reference implementation uses the same bound. It stops
// a corrupt length field from making the reader allocate gigabytes before it finds the error.
inline constexpr std::uint64_t safetensors_max_header_bytes = 100'000'000;

// The dtype code a safetensors header uses for d.
constexpr std::string_view safetensors_dtype(DType d) {
    switch (d) {
        case DType::f32: return "F32";
        case DType::f64: return "F64";
        case DType::i32: return "I32";
        case DType::i64: return "I64";
        case DType::u8: return "U8";
    }
    return "?";
}

// A copy of t's elements (in row-major order, whatever its strides) under `name`.
template <Element T>
TensorEntry entry(std::string name, const Tensor<T>& t) {
    if (!t.defined()) fail<io_error>("entry", "tensor '", name, "' is undefined (a default-constructed Tensor)");
    TensorEntry e;
    e.name = std::move(name);
    e.dtype = dtype_of<T>();
    e.shape = t.shape();
    e.bytes.resize(static_cast<std::size_t>(t.numel()) * sizeof(T));
    if (t.numel() > 0) t.copy_to(reinterpret_cast<T*>(e.bytes.data()));
    return e;
}

// The entry's data as a new contiguous Tensor<T>; T must be the entry's element type exactly
// (no silent conversions: a float64 checkpoint loaded as float32 is far more often a bug).
template <Element T>
Tensor<T> as_tensor(const TensorEntry& e) {
    if (e.dtype != dtype_of<T>())
        fail<io_error>("as_tensor", "tensor '", e.name, "' has dtype ", safetensors_dtype(e.dtype), " (",
                       dtype_name(e.dtype), "), expected ", safetensors_dtype(dtype_of<T>()), " (",
                       dtype_name(dtype_of<T>()), ")");
    detail::check_extents("as_tensor", "", e);
    const auto need = static_cast<std::uint64_t>(e.shape.numel()) * sizeof(T);
    if (e.bytes.size() != need)
        fail<io_error>("as_tensor", "tensor '", e.name, "' has ", e.bytes.size(), " bytes, expected ", need,
                       " for shape ", e.shape, " of ", dtype_name(e.dtype));
    Tensor<T> out(e.shape);
    if (need > 0) std::memcpy(out.data(), e.bytes.data(), static_cast<std::size_t>(need));
    return out;
}

// What load_safetensors returns: the header's metadata and every tensor, in header order.
struct SafetensorsFile {
    std::string path;
    std::map<std::string, std::string> metadata;
    std::vector<TensorEntry> tensors;

    // The tensor called `name`, or null. A linear scan: checkpoints hold at most thousands of
    // tensors, and a plain vector keeps the struct free to edit.
    const TensorEntry* find(std::string_view name) const {
        for (const auto& t : tensors)
            if (t.name == name) return &t;
        return nullptr;
    }
    // The tensor called `name`; an io_error naming the file when there is none.
    const TensorEntry& at(std::string_view name) const {
        if (const TensorEntry* t = find(name)) return *t;
        fail<io_error>("SafetensorsFile::at", "file '", path, "' has no tensor '", name, "' (it holds ",
                       tensors.size(), " tensors)");
    }
};

namespace detail {

inline std::optional<DType> parse_safetensors_dtype(std::string_view s) {
    for (DType d : {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8})
        if (safetensors_dtype(d) == s) return d;
    return std::nullopt;
}

// Codes the format defines that have no tensortape element type, so that such a file gets
// "unsupported" rather than "unknown" (which would suggest a corrupt file).
inline bool is_other_safetensors_dtype(std::string_view s) {
    for (std::string_view k : {"BOOL", "I8", "I16", "U16", "U32", "U64", "F16", "BF16", "F8_E4M3", "F8_E5M2",
                               "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"})
        if (k == s) return true;
    return false;
}

inline void check_utf8(std::string_view op, const std::string& path, std::string_view what, std::string_view s) {
    const std::size_t at = utf8_error_at(s);
    if (at != std::string_view::npos)
        fail<io_error>(op, "file '", path, "': ", what, " is not valid UTF-8 (bad byte at offset ", at, ")");
}

}  // namespace detail

// Writes `tensors` and `metadata` to `path` atomically: readers see either the previous file or
// the complete new one. Names must be unique, valid UTF-8 and not "__metadata__".
inline void save_safetensors(const std::string& path, const std::vector<TensorEntry>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
    constexpr std::string_view op = "save_safetensors";
    std::set<std::string_view> names;
    for (const auto& t : tensors) {
        if (t.name == "__metadata__")
            fail<io_error>(op, "file '", path, "': \"__metadata__\" is reserved for metadata and cannot name a tensor");
        detail::check_utf8(op, path, "tensor name '" + t.name + "'", t.name);
        if (!names.insert(t.name).second) fail<io_error>(op, "file '", path, "': duplicate tensor name '", t.name, "'");
        detail::check_extents(op, path, t);
        const auto need = static_cast<std::uint64_t>(t.shape.numel()) * detail::itemsize(t.dtype);
        if (t.bytes.size() != need)
            fail<io_error>(op, "file '", path, "': tensor '", t.name, "' has ", t.bytes.size(), " bytes, expected ",
                           need, " for shape ", t.shape, " of ", dtype_name(t.dtype));
    }
    for (const auto& [k, v] : metadata) {
        detail::check_utf8(op, path, "metadata key '" + k + "'", k);
        detail::check_utf8(op, path, "metadata value of '" + k + "'", v);
    }

    // Data order: decreasing element size, ties in the caller's order, so no tensor starts
    // misaligned for its type. The header keeps the caller's order, which the loader returns.
    std::vector<std::size_t> order(tensors.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return detail::itemsize(tensors[a].dtype) > detail::itemsize(tensors[b].dtype);
    });
    std::vector<std::uint64_t> begin(tensors.size());
    std::uint64_t at = 0;
    for (std::size_t i : order) {
        begin[i] = at;
        at += tensors[i].bytes.size();
    }

    std::string h = "{";
    if (!metadata.empty()) {
        h += "\"__metadata__\":{";
        bool first = true;
        for (const auto& [k, v] : metadata) {
            if (!first) h += ',';
            first = false;
            detail::json::write_string(h, k);
            h += ':';
            detail::json::write_string(h, v);
        }
        h += '}';
    }
    for (std::size_t i = 0; i < tensors.size(); ++i) {
        const TensorEntry& t = tensors[i];
        if (h.size() > 1) h += ',';
        detail::json::write_string(h, t.name);
        h += ":{\"dtype\":\"";
        h += safetensors_dtype(t.dtype);
        h += "\",\"shape\":[";
        for (int d = 0; d < t.shape.rank(); ++d) {
            if (d) h += ',';
            h += std::to_string(t.shape[d]);
        }
        h += "],\"data_offsets\":[" + std::to_string(begin[i]) + "," + std::to_string(begin[i] + t.bytes.size()) + "]}";
    }
    h += '}';
    h.append((8 - h.size() % 8) % 8, ' ');
    if (h.size() > safetensors_max_header_bytes)
        fail<io_error>(op, "file '", path, "': the header would be ", h.size(), " bytes, more than readers accept (",
                       safetensors_max_header_bytes, ")");

    detail::AtomicWriter out(op, path);
    unsigned char len[8];
    for (int b = 0; b < 8; ++b) len[b] = static_cast<unsigned char>(static_cast<std::uint64_t>(h.size()) >> (8 * b));
    out.write(len, 8);
    out.write(h.data(), h.size());
    for (std::size_t i : order) out.write(tensors[i].bytes.data(), tensors[i].bytes.size());
    out.commit();
}

// Reads and validates a whole safetensors file. Every inconsistency is an io_error naming the
// file and, where there is one, the tensor; nothing is returned from a file that fails a check.
inline SafetensorsFile load_safetensors(const std::string& path) {
    using detail::json::Value;
    constexpr std::string_view op = "load_safetensors";
    const std::string where = "file '" + path + "'";

    const detail::InputFile in(op, path);
    const std::uint64_t size = in.size();
    if (size < 8)
        fail<io_error>(op, where, ": the file is ", size, " bytes, too short for the 8-byte header length");
    unsigned char len[8];
    in.read_at(len, 8, 0, "the header length");
    std::uint64_t n = 0;
    for (int b = 0; b < 8; ++b) n |= static_cast<std::uint64_t>(len[b]) << (8 * b);
    if (n > safetensors_max_header_bytes)
        fail<io_error>(op, where, ": header length ", n, " exceeds the limit of ", safetensors_max_header_bytes,
                       " bytes (is this a safetensors file?)");
    if (n > size - 8)
        fail<io_error>(op, where, ": header length ", n, " runs past the end of the file (", size,
                       " bytes leave at most ", size - 8, " for the header)");
    std::string text(static_cast<std::size_t>(n), '\0');
    in.read_at(text.data(), n, 8, "the header");
    const std::uint64_t data_start = 8 + n;
    const std::uint64_t data_size = size - data_start;

    const Value root = detail::json::parse(text, op, where + ": header");
    if (root.kind != Value::Kind::object)
        fail<io_error>(op, where, ": the header must be a JSON object, found ", detail::json::kind_name(root.kind));

    SafetensorsFile file;
    file.path = path;
    struct Range {
        std::uint64_t begin, end;
        std::size_t index;
    };
    std::vector<Range> ranges;
    std::set<std::string_view> seen;
    bool have_metadata = false;
    for (std::size_t i = 0; i < root.keys.size(); ++i) {
        const std::string& key = root.keys[i];
        const Value& v = root.items[i];
        if (key == "__metadata__") {
            if (have_metadata) fail<io_error>(op, where, ": duplicate \"__metadata__\" key");
            have_metadata = true;
            if (v.kind != Value::Kind::object)
                fail<io_error>(op, where, ": \"__metadata__\" must be an object of strings, found ",
                               detail::json::kind_name(v.kind));
            for (std::size_t j = 0; j < v.keys.size(); ++j) {
                if (v.items[j].kind != Value::Kind::string)
                    fail<io_error>(op, where, ": metadata '", v.keys[j], "' must be a string, found ",
                                   detail::json::kind_name(v.items[j].kind));
                if (!file.metadata.emplace(v.keys[j], v.items[j].string).second)
                    fail<io_error>(op, where, ": duplicate metadata key '", v.keys[j], "'");
            }
            continue;
        }
        if (!seen.insert(key).second) fail<io_error>(op, where, ": duplicate tensor name '", key, "'");
        const std::string tw = where + ": tensor '" + key + "'";
        if (v.kind != Value::Kind::object)
            fail<io_error>(op, tw, ": expected an object with dtype, shape and data_offsets, found ",
                           detail::json::kind_name(v.kind));
        const Value* fields[3] = {};  // dtype, shape, data_offsets
        constexpr std::string_view field_names[3] = {"dtype", "shape", "data_offsets"};
        for (std::size_t j = 0; j < v.keys.size(); ++j) {
            const auto f = std::find(std::begin(field_names), std::end(field_names), v.keys[j]);
            if (f == std::end(field_names))
                fail<io_error>(op, tw, ": unknown key \"", v.keys[j], "\" (expected dtype, shape and data_offsets)");
            const Value*& slot = fields[f - std::begin(field_names)];
            if (slot) fail<io_error>(op, tw, ": duplicate key \"", v.keys[j], "\"");
            slot = &v.items[j];
        }
        for (int f = 0; f < 3; ++f)
            if (!fields[f]) fail<io_error>(op, tw, ": missing \"", field_names[f], "\"");

        TensorEntry e;
        e.name = key;
        const Value& dt = *fields[0];
        if (dt.kind != Value::Kind::string)
            fail<io_error>(op, tw, ": \"dtype\" must be a string, found ", detail::json::kind_name(dt.kind));
        const auto d = detail::parse_safetensors_dtype(dt.string);
        if (!d) {
            if (detail::is_other_safetensors_dtype(dt.string))
                fail<io_error>(op, tw, ": dtype \"", dt.string,
                               "\" has no tensortape element type (supported: F32, F64, I32, I64, U8)");
            fail<io_error>(op, tw, ": unknown dtype \"", dt.string, "\" (expected F32, F64, I32, I64 or U8)");
        }
        e.dtype = *d;

        const Value& sh = *fields[1];
        if (sh.kind != Value::Kind::array)
            fail<io_error>(op, tw, ": \"shape\" must be an array of integers, found ", detail::json::kind_name(sh.kind));
        if (sh.items.size() > static_cast<std::size_t>(max_rank))
            fail<io_error>(op, tw, ": shape has rank ", sh.items.size(), ", tensortape supports at most ", max_rank);
        bool has_zero = false;
        for (const Value& x : sh.items) {
            if (x.kind != Value::Kind::integer)
                fail<io_error>(op, tw, ": \"shape\" must hold integers, found ", detail::json::kind_name(x.kind));
            if (x.integer < 0) fail<io_error>(op, tw, ": negative extent ", x.integer, " in shape");
            e.shape.push_back(x.integer);
            has_zero = has_zero || x.integer == 0;
        }

        const Value& off = *fields[2];
        if (off.kind != Value::Kind::array || off.items.size() != 2 || off.items[0].kind != Value::Kind::integer ||
            off.items[1].kind != Value::Kind::integer)
            fail<io_error>(op, tw, ": \"data_offsets\" must be an array of two integers [begin, end]");
        const std::int64_t b = off.items[0].integer, en = off.items[1].integer;
        if (b < 0 || en < b)
            fail<io_error>(op, tw, ": data_offsets [", b, ", ", en, "] are not a range (need 0 <= begin <= end)");
        if (static_cast<std::uint64_t>(en) > data_size)
            fail<io_error>(op, tw, ": data_offsets [", b, ", ", en, "] run past the end of the data section (",
                           data_size, " bytes)");

        // Overflow-checked, since the shape is untrusted.
        const std::uint64_t item = detail::itemsize(e.dtype);
        std::uint64_t need = has_zero ? 0 : item;
        for (int a = 0; a < e.shape.rank() && !has_zero; ++a)
            if (!detail::mul_within(need, static_cast<std::uint64_t>(e.shape[a]), std::numeric_limits<std::uint64_t>::max(), need))
                fail<io_error>(op, tw, ": shape ", e.shape, " of ", dt.string, " needs more than 2^64 bytes");
        const auto have = static_cast<std::uint64_t>(en - b);
        if (have != need)
            fail<io_error>(op, tw, ": data_offsets [", b, ", ", en, "] span ", have, " bytes, expected ", need,
                           " for shape ", e.shape, " of ", dt.string, " (", item, " bytes each)");
        ranges.push_back({static_cast<std::uint64_t>(b), static_cast<std::uint64_t>(en), file.tensors.size()});
        file.tensors.push_back(std::move(e));
    }

    std::sort(ranges.begin(), ranges.end(), [](const Range& x, const Range& y) {
        return x.begin != y.begin ? x.begin < y.begin : x.end < y.end;
    });
    std::uint64_t covered = 0;
    for (std::size_t k = 0; k < ranges.size(); ++k) {
        const Range& r = ranges[k];
        if (r.begin < covered) {
            const Range& p = ranges[k - 1];
            fail<io_error>(op, where, ": tensors '", file.tensors[p.index].name, "' (data_offsets [", p.begin, ", ",
                           p.end, "]) and '", file.tensors[r.index].name, "' (data_offsets [", r.begin, ", ", r.end,
                           "]) overlap");
        }
        if (r.begin > covered)
            fail<io_error>(op, where, ": bytes [", covered, ", ", r.begin, ") of the data section belong to no tensor "
                           "(before tensor '", file.tensors[r.index].name, "'); the format packs tensors without gaps");
        covered = r.end;
    }
    if (covered != data_size)
        fail<io_error>(op, where, ": the data section is ", data_size, " bytes but the tensors cover only ", covered,
                       "; the last ", data_size - covered, " bytes belong to no tensor");

    // Only now, with every size checked against the file, is memory allocated for the data.
    // Reading in offset order keeps the disk access sequential.
    for (const Range& r : ranges) {
        TensorEntry& e = file.tensors[r.index];
        e.bytes.resize(static_cast<std::size_t>(r.end - r.begin));
        if (!e.bytes.empty()) in.read_at(e.bytes.data(), e.bytes.size(), data_start + r.begin, "the data of tensor '" + e.name + "'");
    }
    return file;
}

}  // namespace tensortape::io
