#pragma once
// In-memory data sets, a batching loader with a reproducible shuffle, and the MNIST loader.
// Examples are rows along axis 0 of x and y; every copy of rows is one memcpy per row (or per
// run of rows), which is what makes batching cheap next to a training step.

#include <tensortape/core/error.hpp>
#include <tensortape/core/random.hpp>
#include <tensortape/core/shape.hpp>
#include <tensortape/core/tensor.hpp>
#include <tensortape/data/idx.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <sys/stat.h>

namespace tensortape::data {

// Where the Debian package dataset-fashion-mnist installs the four gzip'd IDX files.
inline constexpr const char* default_fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";

namespace detail {

// Elements in one row (everything after axis 0).
template <Element T>
std::size_t row_elements(const Tensor<T>& t) {
    std::size_t n = 1;
    for (int i = 1; i < t.rank(); ++i) n *= static_cast<std::size_t>(t.shape()[i]);
    return n;
}

template <Element T>
Shape with_rows(const Tensor<T>& t, std::int64_t rows) {
    Shape s = t.shape();
    s[0] = rows;
    return s;
}

// Copies rows[k] of src into row k of dst; both contiguous with equal row sizes.
template <Element T>
void copy_rows(const Tensor<T>& src, std::span<const std::int64_t> rows, T* dst) {
    const std::size_t n = row_elements(src);
    if (n == 0) return;
    const T* s = src.data();
    for (const std::int64_t r : rows) {
        std::memcpy(dst, s + static_cast<std::size_t>(r) * n, n * sizeof(T));
        dst += n;
    }
}

}  // namespace detail

template <Floating T>
struct Dataset {
    Tensor<T> x;  // inputs, one example per row of axis 0
    Tensor<T> y;  // class indices (as T) or targets, one per row of axis 0

    // The checked way to build one: both defined, of rank >= 1, with as many rows as each other.
    // Non-contiguous inputs are copied once here so that batching can memcpy rows.
    static Dataset make(Tensor<T> x, Tensor<T> y) {
        if (!x.defined() || !y.defined())
            fail<value_error>("Dataset::make", !x.defined() ? "x" : "y", " is an undefined tensor");
        if (x.rank() < 1 || y.rank() < 1)
            fail<shape_error>("Dataset::make", "x and y need an axis 0 of examples, got shapes ", x.shape(), " and ",
                              y.shape());
        if (x.shape()[0] != y.shape()[0])
            fail<shape_error>("Dataset::make", "x has ", x.shape()[0], " examples (shape ", x.shape(), ") but y has ",
                              y.shape()[0], " (shape ", y.shape(), "); they must agree on axis 0");
        return Dataset{x.contiguous(), y.contiguous()};
    }

    std::int64_t size() const { return x.defined() && x.rank() > 0 ? x.shape()[0] : 0; }

    // Rows [begin, end) as a data set that shares their storage (no copy: a range of rows of a
    // contiguous tensor is contiguous, so it batches like any other). Splitting 60,000 images
    // into train and validation thus costs no memory.
    Dataset slice(std::int64_t begin, std::int64_t end) const {
        check("Dataset::slice");
        if (begin < 0 || end < begin || end > size())
            fail<value_error>("Dataset::slice", "rows [", begin, ", ", end, ") are not within the ", size(),
                              " examples (need 0 <= begin <= end <= ", size(), ")");
        return Dataset{x.contiguous().slice(0, begin, end), y.contiguous().slice(0, begin, end)};
    }

    // The given rows, in the given order (repeats allowed), as a new data set.
    Dataset gather(std::span<const std::int64_t> rows) const {
        check("Dataset::gather");
        for (std::size_t k = 0; k < rows.size(); ++k)
            if (rows[k] < 0 || rows[k] >= size())
                fail<value_error>("Dataset::gather", "row ", rows[k], " (at position ", k, ") is out of range for ",
                                  size(), " examples");
        const auto n = static_cast<std::int64_t>(rows.size());
        Dataset out{Tensor<T>(detail::with_rows(x, n)), Tensor<T>(detail::with_rows(y, n))};
        detail::copy_rows(x.contiguous(), rows, out.x.data());
        detail::copy_rows(y.contiguous(), rows, out.y.data());
        return out;
    }

private:
    void check(const char* op) const {
        if (!x.defined() || !y.defined() || x.rank() < 1 || y.rank() < 1 || x.shape()[0] != y.shape()[0])
            fail<shape_error>(op, "x and y must be defined and agree on axis 0, got shapes ", x.shape(), " and ",
                              y.shape(), " (build data sets with Dataset::make)");
    }
};

// The first `first_fraction` of the examples and the rest, in order and unshuffled. Keras's
// validation_split v corresponds to split(d, 1 - v).second. The first part has
// round(first_fraction * size) examples.
template <Floating T>
std::pair<Dataset<T>, Dataset<T>> split(const Dataset<T>& d, double first_fraction) {
    if (!(first_fraction > 0.0 && first_fraction < 1.0))
        fail<value_error>("split", "first_fraction must lie strictly between 0 and 1, got ", first_fraction);
    const std::int64_t n = d.size();
    const auto first = static_cast<std::int64_t>(std::llround(first_fraction * static_cast<double>(n)));
    if (first == 0 || first == n)
        fail<value_error>("split", "splitting ", n, " examples at fraction ", first_fraction, " leaves the ",
                          first == 0 ? "first" : "second", " part empty");
    return {d.slice(0, first), d.slice(first, n)};
}

// Which share of each batch a data-parallel rank reads.
struct Shard {
    int rank = 0;
    int size = 1;
};

// Batches over a data set. The data set's tensors are shared, not copied. Epoch 0 is ready on
// construction; call start_epoch(e) before each later epoch.
//
// With a Shard of several ranks (the distributed sampler), batch_size is the global batch: every
// rank draws the same order from the shared seed and takes its contiguous part of each batch,
// rank r rows [b*r/size, b*(r+1)/size). So N replicas together see exactly the batches one
// process would, split into N micro-batches in rank order. A last batch with fewer rows than
// ranks is dropped, so that no rank gets an empty one.
template <Floating T>
class DataLoader {
public:
    DataLoader(const Dataset<T>& d, std::int64_t batch_size, bool shuffle, std::uint64_t seed, Shard shard = {})
        : batch_size_(batch_size), shuffle_(shuffle), seed_(seed), shard_(shard) {
        if (!d.x.defined() || !d.y.defined() || d.x.rank() < 1 || d.y.rank() < 1 || d.x.shape()[0] != d.y.shape()[0])
            fail<shape_error>("DataLoader", "x and y must be defined and agree on axis 0, got shapes ", d.x.shape(),
                              " and ", d.y.shape(), " (build data sets with Dataset::make)");
        if (batch_size <= 0) fail<value_error>("DataLoader", "batch_size must be positive, got ", batch_size);
        if (d.size() == 0) fail<value_error>("DataLoader", "the data set has no examples");
        if (shard.size < 1 || shard.rank < 0 || shard.rank >= shard.size)
            fail<value_error>("DataLoader", "shard rank ", shard.rank, " of ", shard.size, " is not a valid rank");
        if (d.size() < shard.size || batch_size < shard.size)
            fail<value_error>("DataLoader", "a batch of ", std::min(d.size(), batch_size), " examples cannot be shared by ", shard.size,
                              " ranks (data set of ", d.size(), ", batch_size ", batch_size, ")");
        data_ = Dataset<T>{d.x.contiguous(), d.y.contiguous()};
        order_.resize(static_cast<std::size_t>(d.size()));
        start_epoch(0);
    }

    std::int64_t size() const { return data_.size(); }
    std::int64_t batch_size() const { return batch_size_; }
    // Batches per epoch; the last one is short when batch_size does not divide size().
    std::int64_t batches() const {
        const std::int64_t rest = size() % batch_size_;
        return size() / batch_size_ + (rest > 0 && rest >= shard_.size ? 1 : 0);
    }
    const Shard& shard() const { return shard_; }
    // Rows of the whole batch (all ranks together) that the last next() took a part of.
    std::int64_t global_batch_rows() const { return global_rows_; }

    // Rewinds and, when shuffling, draws the epoch's order from (seed, epoch) alone, so an epoch
    // can be replayed, or a run resumed, without replaying the ones before it.
    void start_epoch(int epoch) {
        std::iota(order_.begin(), order_.end(), std::int64_t{0});
        if (shuffle_) {
            Generator gen(mix(seed_, static_cast<std::uint64_t>(static_cast<std::int64_t>(epoch))));
            for (std::size_t i = order_.size() - 1; i > 0; --i)
                std::swap(order_[i], order_[static_cast<std::size_t>(gen.below(i + 1))]);
        }
        pos_ = 0;
    }

    // The example order of the current epoch.
    std::span<const std::int64_t> order() const { return order_; }

    // Fills the next batch; false once the epoch is exhausted. A batch tensor's storage is
    // written in place when it already has the batch's shape and nothing else shares it, so a
    // steady-state loop allocates nothing; a tensor still referenced elsewhere (say, by a graph)
    // is replaced rather than overwritten under its other owners.
    bool next(Tensor<T>& xb, Tensor<T>& yb) {
        const std::int64_t n = size();
        const std::int64_t b = std::min(batch_size_, n - pos_);
        if (b <= 0 || b < shard_.size) return false;
        const std::int64_t first = b * shard_.rank / shard_.size, last = b * (shard_.rank + 1) / shard_.size;
        const std::span<const std::int64_t> rows(order_.data() + pos_ + first, static_cast<std::size_t>(last - first));
        fill(data_.x, rows, xb);
        fill(data_.y, rows, yb);
        pos_ += b;
        global_rows_ = b;
        return true;
    }

private:
    static std::uint64_t mix(std::uint64_t seed, std::uint64_t epoch) {
        // Generator's own seeding steps by the golden ratio, so seeds that differ by a multiple
        // of it give shifted, overlapping states; hashing epoch first keeps epochs apart.
        std::uint64_t z = epoch + 0x632be59bd9b4e019ULL;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return seed ^ z ^ (z >> 31);
    }

    static void fill(const Tensor<T>& src, std::span<const std::int64_t> rows, Tensor<T>& dst) {
        const Shape shape = detail::with_rows(src, static_cast<std::int64_t>(rows.size()));
        const bool reusable = dst.defined() && dst.shape() == shape && dst.is_contiguous() &&
                              dst.storage().use_count() == 1;
        if (!reusable) dst = Tensor<T>(shape);
        detail::copy_rows(src, rows, dst.data());
    }

    Dataset<T> data_;
    std::int64_t batch_size_;
    bool shuffle_;
    std::uint64_t seed_;
    Shard shard_;
    std::vector<std::int64_t> order_;
    std::int64_t pos_ = 0, global_rows_ = 0;
};

template <Floating T>
struct MnistData {
    Dataset<T> train, test;
};

namespace detail {

// stat() rather than <filesystem>: that header alone adds half a second to every file that
// includes tensortape.
inline bool is_file_type(const std::string& path, unsigned type) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && (st.st_mode & S_IFMT) == type;
}

// The plain file when present, else the gzip'd one.
inline std::string find_mnist_file(const std::string& dir, const std::string& name) {
    const std::string base = dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
    if (is_file_type(base, S_IFREG)) return base;
    const std::string gz = base + ".gz";
    if (is_file_type(gz, S_IFREG)) return gz;
    const bool has_dir = is_file_type(dir, S_IFDIR);
    fail<data_error>("load_mnist", "found neither ", quoted(base), " nor ", quoted(gz), has_dir ? "" : " (the directory does not exist)");
}

template <Floating T>
Dataset<T> load_mnist_pair(const std::string& dir, const char* images_name, const char* labels_name) {
    const char* op = "load_mnist";
    const std::string images_path = find_mnist_file(dir, images_name);
    const std::string labels_path = find_mnist_file(dir, labels_name);

    const IdxArray images = read_idx(op, images_path);
    if (images.type != idx_type::ubyte || images.dims.size() != 3)
        fail<data_error>(op, quoted(images_path), ": expected ubyte images of dims [N, rows, cols], found ",
                         idx_type_name(images.type), " of dims ", Shape(images.dims));
    const IdxArray labels = read_idx(op, labels_path);
    if (labels.dims.size() != 1)
        fail<data_error>(op, quoted(labels_path), ": expected labels of dims [N], found dims ", Shape(labels.dims));
    if (labels.dims[0] != images.dims[0])
        fail<data_error>(op, quoted(images_path), " holds ", images.dims[0], " images but ", quoted(labels_path),
                         " holds ", labels.dims[0], " labels");

    Tensor<T> x = to_tensor<T>(op, images_path, images, Shape{images.dims[0], 1, images.dims[1], images.dims[2]},
                               T(1) / T(255));
    // Through uint8 so that a label outside 0..255 (possible only in a non-ubyte file) is refused.
    const Tensor<std::uint8_t> labels_u8 = to_tensor<std::uint8_t>(op, labels_path, labels, Shape(labels.dims), 1);
    return Dataset<T>::make(std::move(x), labels_u8.template cast<T>());
}

}  // namespace detail

// Loads MNIST or Fashion-MNIST from the four standard IDX files in `dir`, each plain or with
// ".gz" appended. Images become x of shape [N, 1, rows, cols] scaled to [0, 1]; labels become
// y of shape [N], as given.
template <Floating T>
MnistData<T> load_mnist(const std::string& dir) {
    return MnistData<T>{detail::load_mnist_pair<T>(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                        detail::load_mnist_pair<T>(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")};
}

}  // namespace tensortape::data
