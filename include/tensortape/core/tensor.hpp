#pragma once
// Tensor<T>: an n-dimensional view (shape, strides, offset) over shared, 64-byte-aligned storage.
// Copying a Tensor shares its storage, like a NumPy array handle; clone() copies the data.
// View operations (reshape of contiguous data, permute, slice, broadcast_to) never copy.

#include <tensortape/core/allocator.hpp>
#include <tensortape/core/error.hpp>
#include <tensortape/core/random.hpp>
#include <tensortape/core/shape.hpp>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

namespace tensortape {

// Element types a tensor may hold. Autodiff needs a floating type (see Floating).
template <class T>
concept Element = std::is_arithmetic_v<T> && !std::is_same_v<T, bool>;
template <class T>
concept Floating = std::same_as<T, float> || std::same_as<T, double>;

enum class DType { f32, f64, i32, i64, u8 };

template <class T>
constexpr DType dtype_of() {
    if constexpr (std::is_same_v<T, float>) return DType::f32;
    else if constexpr (std::is_same_v<T, double>) return DType::f64;
    else if constexpr (std::is_same_v<T, std::int32_t>) return DType::i32;
    else if constexpr (std::is_same_v<T, std::int64_t>) return DType::i64;
    else if constexpr (std::is_same_v<T, std::uint8_t>) return DType::u8;
    else static_assert(sizeof(T) == 0, "tensortape: unsupported element type");
}

constexpr const char* dtype_name(DType d) {
    switch (d) {
        case DType::f32: return "float32";
        case DType::f64: return "float64";
        case DType::i32: return "int32";
        case DType::i64: return "int64";
        case DType::u8: return "uint8";
    }
    return "?";
}

template <Element T>
class Tensor {
public:
    using value_type = T;

    // An undefined tensor: no storage. Used for "no gradient yet".
    Tensor() = default;

    // Uninitialised contents.
    explicit Tensor(const Shape& shape) : shape_(shape), strides_(contiguous_strides(shape)) {
        check_shape("Tensor", shape);
        const std::size_t bytes = static_cast<std::size_t>(shape.numel()) * sizeof(T);
        void* p = allocate_bytes(bytes);
        storage_ = std::shared_ptr<void>(p, [bytes](void* q) { deallocate_bytes(q, bytes); });
        data_ = static_cast<T*>(p);
    }

    // A tensor over memory it does not own; `keep_alive` (may be null) is held as long as any
    // view of it exists. The caller guarantees `data` outlives it when keep_alive is null.
    static Tensor borrow(T* data, const Shape& shape, const Strides& strides, std::shared_ptr<void> keep_alive = {}) {
        Tensor t;
        t.shape_ = shape;
        t.strides_ = strides;
        t.data_ = data;
        t.storage_ = keep_alive ? std::move(keep_alive) : std::shared_ptr<void>(data, [](void*) {});
        return t;
    }

    bool defined() const { return storage_ != nullptr; }
    const Shape& shape() const { return shape_; }
    const Strides& strides() const { return strides_; }
    int rank() const { return shape_.rank(); }
    std::int64_t numel() const { return shape_.numel(); }
    std::int64_t size(int axis) const { return shape_[normalize_axis("size", axis, rank())]; }
    static constexpr DType dtype() { return dtype_of<T>(); }

    T* data() { return data_; }
    const T* data() const { return data_; }
    std::span<T> span() {
        require_contiguous("span");
        return {data_, static_cast<std::size_t>(numel())};
    }
    std::span<const T> span() const {
        require_contiguous("span");
        return {data_, static_cast<std::size_t>(numel())};
    }
    const std::shared_ptr<void>& storage() const { return storage_; }
    bool shares_storage_with(const Tensor& o) const { return storage_ == o.storage_; }

    bool is_contiguous() const { return strides_ == contiguous_strides(shape_) || numel() <= 1; }

    // Element access by full index; checked.
    template <std::integral... I>
    T& operator()(I... idx) { return data_[offset_of({static_cast<std::int64_t>(idx)...})]; }
    template <std::integral... I>
    const T& operator()(I... idx) const { return data_[offset_of({static_cast<std::int64_t>(idx)...})]; }
    T& at(const Dims& idx) { return data_[offset_of(idx)]; }
    const T& at(const Dims& idx) const { return data_[offset_of(idx)]; }

    // The single value of a one-element tensor.
    T item() const {
        if (numel() != 1) fail<shape_error>("item", "expected one element, the tensor has shape ", shape_);
        return data_[0];
    }

    void fill(T v) { for_each([v](T& x) { x = v; }); }

    // Applies f to every element in row-major order.
    template <class F>
    void for_each(F&& f) {
        if (is_contiguous()) {
            for (std::int64_t i = 0, n = numel(); i < n; ++i) f(data_[i]);
            return;
        }
        strided_visit(shape_, strides_, [&](std::int64_t off) { f(data_[off]); });
    }
    template <class F>
    void for_each(F&& f) const {
        const_cast<Tensor*>(this)->for_each([&](T& x) { f(static_cast<const T&>(x)); });
    }

    // A contiguous copy of the data.
    Tensor clone() const {
        Tensor out(shape_);
        copy_to(out.data_);
        return out;
    }
    // Itself when already contiguous, else a contiguous copy.
    Tensor contiguous() const { return is_contiguous() ? *this : clone(); }

    // Writes the elements in row-major order to dst (numel() values).
    void copy_to(T* dst) const {
        if (is_contiguous()) {
            if (numel() > 0) std::memcpy(dst, data_, static_cast<std::size_t>(numel()) * sizeof(T));
            return;
        }
        strided_visit(shape_, strides_, [&](std::int64_t off) { *dst++ = data_[off]; });
    }
    // Copies the values of `src` (same shape) into this tensor's elements.
    void assign(const Tensor& src) {
        if (src.shape() != shape_)
            fail<shape_error>("assign", "source shape ", src.shape(), " differs from destination shape ", shape_);
        const Tensor s = src.contiguous();
        const T* p = s.data();
        for_each([&](T& x) { x = *p++; });
    }

    template <Element U>
    Tensor<U> cast() const {
        Tensor<U> out(shape_);
        U* d = out.data();
        for_each([&](const T& x) { *d++ = static_cast<U>(x); });
        return out;
    }

    // Same data, new shape; one extent may be -1. A view when contiguous, else a copy.
    Tensor reshape(Shape shape) const {
        int infer = -1;
        std::int64_t known = 1;
        for (int i = 0; i < shape.rank(); ++i) {
            if (shape[i] == -1) {
                if (infer >= 0) fail<value_error>("reshape", "more than one -1 in ", shape);
                infer = i;
            } else {
                known *= shape[i];
            }
        }
        if (infer >= 0) shape[infer] = known == 0 ? 0 : numel() / known;
        if (shape.numel() != numel())
            fail<shape_error>("reshape", "cannot reshape ", shape_, " (", numel(), " elements) to ", shape);
        Tensor src = contiguous();
        src.shape_ = shape;
        src.strides_ = contiguous_strides(shape);
        return src;
    }

    // A view with the axes reordered: result axis i is input axis perm[i].
    Tensor permute(const Dims& perm) const {
        if (perm.rank() != rank()) fail<value_error>("permute", "permutation ", perm, " does not match rank ", rank(), " of shape ", shape_);
        Tensor out = *this;
        bool seen[max_rank] = {};
        for (int i = 0; i < rank(); ++i) {
            const int a = normalize_axis("permute", static_cast<int>(perm[i]), rank());
            if (seen[a]) fail<value_error>("permute", "axis ", a, " repeated in ", perm);
            seen[a] = true;
            out.shape_[i] = shape_[a];
            out.strides_[i] = strides_[a];
        }
        return out;
    }
    // A view with two axes swapped.
    Tensor transpose(int a = -2, int b = -1) const {
        a = normalize_axis("transpose", a, rank());
        b = normalize_axis("transpose", b, rank());
        Dims perm = Dims::filled(rank(), 0);
        for (int i = 0; i < rank(); ++i) perm[i] = i;
        std::swap(perm[a], perm[b]);
        return permute(perm);
    }

    // A view of [start, stop) with a positive step along one axis; negative bounds count from the end.
    Tensor slice(int axis, std::int64_t start, std::int64_t stop, std::int64_t step = 1) const {
        axis = normalize_axis("slice", axis, rank());
        if (step <= 0) fail<value_error>("slice", "step must be positive, got ", step);
        const std::int64_t n = shape_[axis];
        if (start < 0) start += n;
        if (stop < 0) stop += n;
        start = std::clamp<std::int64_t>(start, 0, n);
        stop = std::clamp<std::int64_t>(stop, start, n);
        Tensor out = *this;
        out.data_ += start * strides_[axis];
        out.shape_[axis] = (stop - start + step - 1) / step;
        out.strides_[axis] *= step;
        return out;
    }

    // A read-only-in-spirit view that repeats this tensor along broadcast axes (zero strides).
    Tensor broadcast_to(const Shape& shape) const {
        if (shape.rank() < rank() || broadcast_shapes("broadcast_to", shape_, shape) != shape)
            fail<shape_error>("broadcast_to", "cannot broadcast shape ", shape_, " to ", shape);
        Tensor out = *this;
        out.strides_ = broadcast_strides(shape_, strides_, shape);
        out.shape_ = shape;
        return out;
    }

    // Inserts or removes an axis of extent 1.
    Tensor unsqueeze(int axis) const {
        axis = normalize_axis("unsqueeze", axis, rank() + 1);
        Tensor out = contiguous();
        out.shape_.insert(axis, 1);
        out.strides_ = contiguous_strides(out.shape_);
        return out;
    }
    Tensor squeeze(int axis) const {
        axis = normalize_axis("squeeze", axis, rank());
        if (shape_[axis] != 1) fail<shape_error>("squeeze", "axis ", axis, " of shape ", shape_, " has extent ", shape_[axis], ", expected 1");
        Tensor out = *this;
        out.shape_.erase(axis);
        out.strides_.erase(axis);
        return out;
    }

    // Visits the element offsets of a strided layout in row-major order.
    template <class F>
    static void strided_visit(const Shape& shape, const Strides& strides, F&& f) {
        const int r = shape.rank();
        if (shape.numel() == 0) return;
        if (r == 0) return f(std::int64_t{0});
        Dims idx = Dims::filled(r, 0);
        const std::int64_t inner = shape[r - 1], inner_stride = strides[r - 1];
        std::int64_t base = 0;
        while (true) {
            for (std::int64_t j = 0; j < inner; ++j) f(base + j * inner_stride);
            int k = r - 2;
            for (; k >= 0; --k) {
                base += strides[k];
                if (++idx[k] < shape[k]) break;
                base -= strides[k] * shape[k];
                idx[k] = 0;
            }
            if (k < 0) return;
        }
    }

private:
    template <Element>
    friend class Tensor;

    void require_contiguous(const char* op) const {
        if (!is_contiguous()) fail(op, "needs a contiguous tensor, got shape ", shape_, " with strides ", strides_);
    }

    std::int64_t offset_of(const Dims& idx) const {
        if (idx.rank() != rank()) fail<value_error>("index", idx.rank(), " indices for a tensor of shape ", shape_);
        std::int64_t off = 0;
        for (int i = 0; i < rank(); ++i) {
            std::int64_t k = idx[i] < 0 ? idx[i] + shape_[i] : idx[i];
            if (k < 0 || k >= shape_[i]) fail<value_error>("index", "index ", idx, " is out of bounds for shape ", shape_);
            off += k * strides_[i];
        }
        return off;
    }

    std::shared_ptr<void> storage_;
    T* data_ = nullptr;
    Shape shape_;
    Strides strides_;
};

// ---- creation -------------------------------------------------------------------------------

template <Element T>
Tensor<T> empty(const Shape& shape) { return Tensor<T>(shape); }

template <Element T>
Tensor<T> full(const Shape& shape, T value) {
    Tensor<T> t(shape);
    std::fill_n(t.data(), t.numel(), value);
    return t;
}
template <Element T>
Tensor<T> zeros(const Shape& shape) { return full<T>(shape, T(0)); }
template <Element T>
Tensor<T> ones(const Shape& shape) { return full<T>(shape, T(1)); }

template <Element T>
Tensor<T> zeros_like(const Tensor<T>& t) { return zeros<T>(t.shape()); }

// A 0-d tensor holding one value.
template <Element T>
Tensor<T> scalar_tensor(T value) { return full<T>(Shape{}, value); }

// [start, stop) in steps of step, as a 1-d tensor.
template <Element T>
Tensor<T> arange(T start, T stop, T step = T(1)) {
    if (step == T(0)) fail<value_error>("arange", "step must not be zero");
    const double n = std::ceil((static_cast<double>(stop) - static_cast<double>(start)) / static_cast<double>(step));
    Tensor<T> t(Shape{static_cast<std::int64_t>(std::max(0.0, n))});
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(start + static_cast<T>(i) * step);
    return t;
}
template <Element T>
Tensor<T> arange(T stop) { return arange<T>(T(0), stop, T(1)); }

// A tensor with the given values in row-major order.
template <Element T>
Tensor<T> from_values(const Shape& shape, std::initializer_list<T> values) {
    if (static_cast<std::int64_t>(values.size()) != shape.numel())
        fail<shape_error>("from_values", values.size(), " values for shape ", shape, " (", shape.numel(), " elements)");
    Tensor<T> t(shape);
    std::copy(values.begin(), values.end(), t.data());
    return t;
}
template <Element T>
Tensor<T> from_vector(const Shape& shape, std::span<const T> values) {
    if (static_cast<std::int64_t>(values.size()) != shape.numel())
        fail<shape_error>("from_vector", values.size(), " values for shape ", shape, " (", shape.numel(), " elements)");
    Tensor<T> t(shape);
    std::copy(values.begin(), values.end(), t.data());
    return t;
}

template <Floating T>
Tensor<T> uniform(const Shape& shape, T low, T high, Generator& gen = default_generator()) {
    Tensor<T> t(shape);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(low + (high - low) * gen.uniform());
    return t;
}
template <Floating T>
Tensor<T> normal(const Shape& shape, T mean, T stddev, Generator& gen = default_generator()) {
    Tensor<T> t(shape);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(mean + stddev * gen.normal());
    return t;
}
template <Floating T>
Tensor<T> rand(const Shape& shape, Generator& gen = default_generator()) { return uniform<T>(shape, T(0), T(1), gen); }
template <Floating T>
Tensor<T> randn(const Shape& shape, Generator& gen = default_generator()) { return normal<T>(shape, T(0), T(1), gen); }

// ---- joining ----------------------------------------------------------------------------------

// Joins tensors along an existing axis; all other extents must match.
template <Element T>
Tensor<T> concatenate(std::span<const Tensor<T>> parts, int axis = 0) {
    if (parts.empty()) fail<value_error>("concatenate", "needs at least one tensor");
    const Shape& first = parts[0].shape();
    axis = normalize_axis("concatenate", axis, first.rank());
    Shape out_shape = first;
    out_shape[axis] = 0;
    for (std::size_t k = 0; k < parts.size(); ++k) {
        const Shape& s = parts[k].shape();
        bool ok = s.rank() == first.rank();
        for (int i = 0; ok && i < s.rank(); ++i) ok = i == axis || s[i] == first[i];
        if (!ok)
            fail<shape_error>("concatenate", "tensor ", k, " has shape ", s, ", expected ", first,
                              " in every axis but ", axis);
        out_shape[axis] += s[axis];
    }
    Tensor<T> out(out_shape);
    std::int64_t at = 0;
    for (const auto& p : parts) {
        out.slice(axis, at, at + p.shape()[axis]).assign(p);
        at += p.shape()[axis];
    }
    return out;
}
template <Element T>
Tensor<T> concatenate(std::initializer_list<Tensor<T>> parts, int axis = 0) {
    return concatenate<T>(std::span<const Tensor<T>>(parts.begin(), parts.size()), axis);
}

// Joins tensors of one shape along a new axis.
template <Element T>
Tensor<T> stack(std::span<const Tensor<T>> parts, int axis = 0) {
    if (parts.empty()) fail<value_error>("stack", "needs at least one tensor");
    axis = normalize_axis("stack", axis, parts[0].rank() + 1);
    std::vector<Tensor<T>> expanded;
    expanded.reserve(parts.size());
    for (std::size_t k = 0; k < parts.size(); ++k) {
        if (parts[k].shape() != parts[0].shape())
            fail<shape_error>("stack", "tensor ", k, " has shape ", parts[k].shape(), ", expected ", parts[0].shape());
        expanded.push_back(parts[k].unsqueeze(axis));
    }
    return concatenate<T>(std::span<const Tensor<T>>(expanded), axis);
}
template <Element T>
Tensor<T> stack(std::initializer_list<Tensor<T>> parts, int axis = 0) {
    return stack<T>(std::span<const Tensor<T>>(parts.begin(), parts.size()), axis);
}

}  // namespace tensortape
