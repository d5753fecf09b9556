#include <doctest/doctest.h>
// Named on its own: the umbrella header <tensortape/tensortape.hpp> need not include it.
#include <tensortape/data/data.hpp>

#if defined(TENSORTAPE_HAS_ZLIB) && TENSORTAPE_HAS_ZLIB
#include <zlib.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numeric>
#include <set>
#include <string>
#include <vector>

namespace tt = tensortape;
namespace td = tensortape::data;
namespace fs = std::filesystem;

namespace {

constexpr bool have_zlib =
#if defined(TENSORTAPE_HAS_ZLIB) && TENSORTAPE_HAS_ZLIB
    true;
#else
    false;
#endif

using Bytes = std::vector<std::uint8_t>;

// A fresh directory under the system's temporary directory, removed with its contents.
class TempDir {
public:
    TempDir() {
        static std::atomic<unsigned> counter{0};
        const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
        path_ = fs::temp_directory_path() /
                ("tensortape_data_test_" + std::to_string(stamp) + "_" + std::to_string(counter++));
        fs::create_directories(path_);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    std::string file(const std::string& name) const { return (path_ / name).string(); }
    std::string str() const { return path_.string(); }

private:
    fs::path path_;
};

void put_be32(Bytes& b, std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(v >> s));
}

Bytes idx_file(std::uint8_t type, const std::vector<std::uint32_t>& dims, const Bytes& payload) {
    Bytes b{0, 0, type, static_cast<std::uint8_t>(dims.size())};
    for (auto d : dims) put_be32(b, d);
    b.insert(b.end(), payload.begin(), payload.end());
    return b;
}

Bytes iota_bytes(std::size_t n, std::uint8_t start = 0) {
    Bytes b(n);
    for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(start + i);
    return b;
}

void write_file(const std::string& path, const Bytes& b) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    REQUIRE(f.good());
}

Bytes read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Writes b gzip-compressed when zlib is available, else plain (the readers accept both).
void write_gz(const std::string& path, const Bytes& b) {
#if defined(TENSORTAPE_HAS_ZLIB) && TENSORTAPE_HAS_ZLIB
    gzFile f = gzopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    if (!b.empty()) REQUIRE(gzwrite(f, b.data(), static_cast<unsigned>(b.size())) == static_cast<int>(b.size()));
    REQUIRE(gzclose(f) == Z_OK);
#else
    write_file(path, b);
#endif
}

// A Contains matcher for the concatenated parts. Appending, rather than `"literal" + string`,
// sidesteps GCC 12's false -Wrestrict at -O3 on that operator.
template <class... Parts>
doctest::Contains has(const Parts&... parts) {
    std::string s;
    (s.append(parts), ...);
    return doctest::Contains(s.c_str());
}

}  // namespace

TEST_CASE("idx: plain and gzip'd ubyte files read back with their dims") {
    TempDir dir;
    const Bytes payload = iota_bytes(24);
    write_file(dir.file("a3"), idx_file(0x08, {2, 3, 4}, payload));
    write_gz(dir.file("a3.gz"), idx_file(0x08, {2, 3, 4}, payload));
    write_gz(dir.file("b1_no_suffix"), idx_file(0x08, {5}, iota_bytes(5, 250)));

    for (const char* name : {"a3", "a3.gz"}) {
        CAPTURE(name);
        const td::IdxArray a = td::read_idx(dir.file(name));
        CHECK(a.type == 0x08);
        CHECK(a.dims == std::vector<std::int64_t>{2, 3, 4});
        CHECK(a.bytes == payload);
        const auto t = td::read_idx_tensor<float>(dir.file(name));
        CHECK(t.shape() == tt::Shape{2, 3, 4});
        CHECK(t(0, 0, 0) == 0.f);
        CHECK(t(1, 2, 3) == 23.f);
        CHECK(td::read_idx_tensor<std::uint8_t>(dir.file(name))(1, 0, 1) == 13);
    }
    // Compression is detected from the bytes, not from a ".gz" in the name.
    const auto b = td::read_idx_tensor<double>(dir.file("b1_no_suffix"));
    CHECK(b.shape() == tt::Shape{5});
    CHECK(b(0) == 250.0);
    CHECK(b(4) == 254.0);

    // A zero extent is an empty array, not an error.
    write_file(dir.file("empty"), idx_file(0x08, {0, 7}, {}));
    CHECK(td::read_idx_tensor<float>(dir.file("empty")).shape() == tt::Shape{0, 7});
}

TEST_CASE("idx: multi-byte types are big-endian and convert to the element type") {
    TempDir dir;
    Bytes p;
    for (std::uint32_t v : {1u, 0xfffffffeu /* -2 */, 0x01020304u, 0x80000000u /* INT32_MIN */}) put_be32(p, v);
    write_file(dir.file("i32"), idx_file(0x0C, {2, 2}, p));
    const td::IdxArray a = td::read_idx(dir.file("i32"));
    CHECK(a.type == 0x0C);
    REQUIRE(a.bytes.size() == 16);
    std::int32_t host[4];
    std::memcpy(host, a.bytes.data(), 16);
    CHECK(host[0] == 1);
    CHECK(host[1] == -2);
    CHECK(host[2] == 0x01020304);
    CHECK(host[3] == INT32_MIN);
    const auto t = td::read_idx_tensor<std::int32_t>(dir.file("i32"));
    CHECK(t.shape() == tt::Shape{2, 2});
    CHECK(t(0, 1) == -2);
    CHECK(t(1, 1) == INT32_MIN);
    CHECK(td::read_idx_tensor<double>(dir.file("i32"))(1, 0) == 16909060.0);

    // 1.5f is 0x3fc00000, -2.0 is 0xc000000000000000, int16 -300 is 0xfed4, sbyte -5 is 0xfb.
    Bytes f32;
    put_be32(f32, 0x3fc00000u);
    write_file(dir.file("f32"), idx_file(0x0D, {1}, f32));
    CHECK(td::read_idx_tensor<float>(dir.file("f32"))(0) == 1.5f);
    write_file(dir.file("f64"), idx_file(0x0E, {1}, {0xc0, 0, 0, 0, 0, 0, 0, 0}));
    CHECK(td::read_idx_tensor<double>(dir.file("f64"))(0) == -2.0);
    write_file(dir.file("i16"), idx_file(0x0B, {1}, {0xfe, 0xd4}));
    CHECK(td::read_idx_tensor<float>(dir.file("i16"))(0) == -300.f);
    write_file(dir.file("s8"), idx_file(0x09, {2}, {0xfb, 0x05}));
    CHECK(td::read_idx_tensor<std::int32_t>(dir.file("s8"))(0) == -5);

    // Integer targets refuse what they cannot hold instead of wrapping.
    CHECK_THROWS_WITH_AS(td::read_idx_tensor<std::uint8_t>(dir.file("s8")), doctest::Contains("element 0 is -5, which uint8 cannot hold"),
                         td::data_error);
    CHECK_THROWS_WITH_AS(td::read_idx_tensor<std::int32_t>(dir.file("f32")), doctest::Contains("1.5, which int32 cannot hold"),
                         td::data_error);
}

TEST_CASE("idx: malformed files are refused with the file name and the numbers") {
    TempDir dir;
    const auto check_file = [&](const std::string& name, const Bytes& bytes, const std::string& expected) {
        CAPTURE(name);
        const std::string path = dir.file(name);
        write_file(path, bytes);
        CHECK_THROWS_WITH_AS(td::read_idx(path), has("tensortape: read_idx: '", path, "'"), td::data_error);
        CHECK_THROWS_WITH_AS(td::read_idx(path), has(expected), td::data_error);
        CHECK_THROWS_WITH_AS(td::read_idx_tensor<float>(path), has(expected), tt::error);
    };
    check_file("truncated", idx_file(0x08, {2, 3, 4}, iota_bytes(20)),
               "dims [2, 3, 4] of ubyte need 24 bytes of data but the file holds 20 after the header: the file is truncated");
    check_file("trailing", idx_file(0x08, {2, 3, 4}, iota_bytes(27)), "holds 27 after the header: 3 bytes of trailing garbage");
    check_file("int32_short", idx_file(0x0C, {3}, iota_bytes(8)), "dims [3] of int32 need 12 bytes of data but the file holds 8");
    check_file("bad_magic", {0x00, 0x01, 0x08, 0x01, 0, 0, 0, 1, 7},
               "is not an IDX file: it starts with bytes 0x00 0x01");
    check_file("bad_type", idx_file(0x0A, {1}, {0}), "unknown IDX type code 0x0a");
    check_file("zero_dims", {0, 0, 0x08, 0}, "header declares 0 dimensions, expected 1 to 8");
    check_file("nine_dims", idx_file(0x08, std::vector<std::uint32_t>(9, 1), {0}), "header declares 9 dimensions, expected 1 to 8");
    check_file("tiny", {0, 0}, "is 2 bytes long, too short for the 4-byte IDX header");
    check_file("short_header", {0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0},
               "header declares 3 dimensions (16 header bytes) but the file has only 10 bytes");
    // A corrupt header must not get to ask for 10 GB (or 2^128 bytes) before being checked.
    check_file("huge_dims", idx_file(0x08, {100000, 100000}, iota_bytes(10)),
               "dims [100000, 100000] of ubyte need 10000000000 bytes of data but the file holds 10");
    check_file("overflow_dims", idx_file(0x0E, {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, iota_bytes(10)),
               "describe more than 9223372036854775807 bytes of data but the file holds 10 after the header");

    const std::string missing = dir.file("no_such_file");
    CHECK_THROWS_WITH_AS(td::read_idx(missing), has("tensortape: read_idx: cannot open '", missing, "': "), td::data_error);
    CHECK_THROWS_WITH_AS(td::read_idx(missing), doctest::Contains("No such file"), td::data_error);
    // A directory opens on some systems and fails on read; either way the path is named.
    CHECK_THROWS_WITH_AS(td::read_idx(dir.str()), has("'", dir.str(), "'"), td::data_error);
}

TEST_CASE("idx: damaged gzip streams are refused") {
    TempDir dir;
    const Bytes good = idx_file(0x08, {64, 64}, iota_bytes(64 * 64));
    if constexpr (!have_zlib) {
        Bytes gz{0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3};
        write_file(dir.file("x.gz"), gz);
        CHECK_THROWS_WITH_AS(td::read_idx(dir.file("x.gz")), doctest::Contains("built without zlib support"), td::data_error);
        return;
    }
    write_gz(dir.file("good.gz"), good);
    const Bytes gz = read_file(dir.file("good.gz"));
    REQUIRE(gz.size() > 40);
    CHECK(td::read_idx(dir.file("good.gz")).bytes == Bytes(good.begin() + 12, good.end()));

    for (std::size_t cut : {std::size_t{4}, gz.size() / 2, std::size_t{12}}) {
        CAPTURE(cut);
        write_file(dir.file("cut.gz"), Bytes(gz.begin(), gz.end() - static_cast<std::ptrdiff_t>(cut)));
        CHECK_THROWS_WITH_AS(td::read_idx(dir.file("cut.gz")), doctest::Contains("the file is truncated"), td::data_error);
        CHECK_THROWS_WITH_AS(td::read_idx(dir.file("cut.gz")), has("gzip stream of '", dir.file("cut.gz"), "' ends early"),
                             td::data_error);
    }

    Bytes crc = gz;
    crc[crc.size() - 6] ^= 0xff;  // inside the CRC-32 of the trailer
    write_file(dir.file("crc.gz"), crc);
    CHECK_THROWS_WITH_AS(td::read_idx(dir.file("crc.gz")), doctest::Contains("corrupt gzip stream in"), td::data_error);

    Bytes method = gz;
    method[2] = 0x07;  // compression method other than deflate
    write_file(dir.file("method.gz"), method);
    CHECK_THROWS_WITH_AS(td::read_idx(dir.file("method.gz")), doctest::Contains("corrupt gzip stream in"), td::data_error);

    Bytes garbage = gz;
    garbage.insert(garbage.end(), {'j', 'u', 'n', 'k'});
    write_file(dir.file("garbage.gz"), garbage);
    CHECK_THROWS_WITH_AS(td::read_idx(dir.file("garbage.gz")), doctest::Contains("has 4 bytes after the end of its gzip stream"),
                         td::data_error);

    // What gzip(1) itself accepts: zero padding, and members concatenated with `cat`.
    Bytes padded = gz;
    padded.insert(padded.end(), 512, 0);
    write_file(dir.file("padded.gz"), padded);
    CHECK(td::read_idx(dir.file("padded.gz")).dims == std::vector<std::int64_t>{64, 64});
    write_gz(dir.file("part1.gz"), Bytes(good.begin(), good.begin() + 100));
    write_gz(dir.file("part2.gz"), Bytes(good.begin() + 100, good.end()));
    Bytes cat = read_file(dir.file("part1.gz"));
    const Bytes part2 = read_file(dir.file("part2.gz"));
    cat.insert(cat.end(), part2.begin(), part2.end());
    write_file(dir.file("cat.gz"), cat);
    CHECK(td::read_idx(dir.file("cat.gz")).bytes == Bytes(good.begin() + 12, good.end()));

    // A well-formed stream around a malformed IDX file: the IDX error, saying it was decompressed.
    write_gz(dir.file("short.gz"), idx_file(0x08, {10}, iota_bytes(9)));
    CHECK_THROWS_WITH_AS(td::read_idx(dir.file("short.gz")),
                         doctest::Contains("need 10 bytes of data but the file (after gzip decompression) holds 9"),
                         td::data_error);
}

namespace {

// Row i of x is [10 i, 10 i + 1, 10 i + 2]; y[i] = i, so a batch row names its example.
td::Dataset<float> numbered(std::int64_t n) {
    tt::Tensor<float> x(tt::Shape{n, 3}), y(tt::Shape{n});
    for (std::int64_t i = 0; i < n; ++i) {
        for (int j = 0; j < 3; ++j) x(i, j) = static_cast<float>(10 * i + j);
        y(i) = static_cast<float>(i);
    }
    return td::Dataset<float>::make(x, y);
}

}  // namespace

TEST_CASE("dataset: make checks axis 0; slice views rows, gather copies them, split keeps order") {
    CHECK_THROWS_WITH_AS(td::Dataset<float>::make(tt::zeros<float>({4, 2}), tt::zeros<float>({3})),
                         doctest::Contains("Dataset::make: x has 4 examples (shape [4, 2]) but y has 3 (shape [3])"),
                         tt::shape_error);
    CHECK_THROWS_AS(td::Dataset<float>::make(tt::scalar_tensor<float>(1), tt::zeros<float>({1})), tt::shape_error);
    CHECK_THROWS_AS(td::Dataset<float>::make(tt::Tensor<float>(), tt::zeros<float>({1})), tt::value_error);

    const auto d = numbered(10);
    CHECK(d.size() == 10);
    const auto s = d.slice(2, 5);
    CHECK(s.size() == 3);
    CHECK(s.x.shape() == tt::Shape{3, 3});
    CHECK(s.x(0, 0) == 20.f);
    CHECK(s.x(2, 2) == 42.f);
    CHECK(s.y(1) == 3.f);
    CHECK(s.x.shares_storage_with(d.x));  // a view: splitting a data set costs no memory
    CHECK(s.x.is_contiguous());
    CHECK(d.slice(4, 4).size() == 0);
    CHECK_THROWS_WITH_AS(d.slice(3, 11), doctest::Contains("rows [3, 11) are not within the 10 examples"), tt::value_error);
    CHECK_THROWS_AS(d.slice(5, 4), tt::value_error);

    const std::vector<std::int64_t> rows{7, 0, 7};
    const auto g = d.gather(rows);
    CHECK(g.x.shape() == tt::Shape{3, 3});
    CHECK(g.x(0, 1) == 71.f);
    CHECK(g.x(1, 2) == 2.f);
    CHECK(g.y(2) == 7.f);
    const std::vector<std::int64_t> bad{1, 10};
    CHECK_THROWS_WITH_AS(d.gather(bad), doctest::Contains("row 10 (at position 1) is out of range for 10 examples"),
                         tt::value_error);

    // A non-contiguous x is copied once in make, so rows stay memcpy-able.
    const auto t = td::Dataset<float>::make(tt::arange<float>(6).reshape({3, 2}).transpose(), tt::arange<float>(2));
    CHECK(t.x.is_contiguous());
    CHECK(t.gather(std::vector<std::int64_t>{1}).x(0, 2) == 5.f);

    const auto [train, val] = td::split(d, 0.8);
    CHECK(train.size() == 8);
    CHECK(val.size() == 2);
    CHECK(train.y(0) == 0.f);
    CHECK(train.y(7) == 7.f);
    CHECK(val.y(0) == 8.f);
    CHECK(val.x(1, 0) == 90.f);
    CHECK(td::split(numbered(100), 0.29).first.size() == 29);  // 0.29 * 100 is 28.999...
    for (double f : {0.0, 1.0, -0.5, 1.5, std::nan("")})
        CHECK_THROWS_WITH_AS(td::split(d, f), doctest::Contains("split: first_fraction must lie strictly between 0 and 1"),
                             tt::value_error);
    CHECK_THROWS_WITH_AS(td::split(numbered(3), 0.1), doctest::Contains("splitting 3 examples at fraction 0.1 leaves the first part empty"),
                         tt::value_error);
    CHECK_THROWS_WITH_AS(td::split(numbered(3), 0.9), doctest::Contains("leaves the second part empty"), tt::value_error);
}

TEST_CASE("data loader: batches, short last batch, each example once per epoch") {
    const auto d = numbered(10);
    td::DataLoader<float> loader(d, 4, true, 42);
    CHECK(loader.batches() == 3);
    CHECK(td::DataLoader<float>(d, 5, false, 0).batches() == 2);
    CHECK(td::DataLoader<float>(d, 64, false, 0).batches() == 1);

    for (int epoch = 0; epoch < 3; ++epoch) {
        CAPTURE(epoch);
        loader.start_epoch(epoch);
        tt::Tensor<float> xb, yb;
        std::vector<std::int64_t> sizes, seen;
        while (loader.next(xb, yb)) {
            sizes.push_back(xb.shape()[0]);
            CHECK(yb.shape() == tt::Shape{xb.shape()[0]});
            for (std::int64_t k = 0; k < xb.shape()[0]; ++k) {
                const auto i = static_cast<std::int64_t>(yb(k));
                seen.push_back(i);
                CHECK(xb(k, 0) == static_cast<float>(10 * i));
                CHECK(xb(k, 2) == static_cast<float>(10 * i + 2));
            }
        }
        CHECK(sizes == std::vector<std::int64_t>{4, 4, 2});
        CHECK(std::set<std::int64_t>(seen.begin(), seen.end()).size() == 10);
        CHECK(seen.size() == 10);
        CHECK_FALSE(loader.next(xb, yb));  // stays at the end until the next start_epoch
    }

    td::DataLoader<float> plain(d, 3, false, 42);
    std::vector<std::int64_t> identity(10);
    std::iota(identity.begin(), identity.end(), 0);
    plain.start_epoch(5);
    CHECK(std::vector<std::int64_t>(plain.order().begin(), plain.order().end()) == identity);

    CHECK_THROWS_WITH_AS(td::DataLoader<float>(d, 0, true, 1), doctest::Contains("DataLoader: batch_size must be positive, got 0"),
                         tt::value_error);
    CHECK_THROWS_WITH_AS(td::DataLoader<float>(d.slice(0, 0), 2, true, 1), doctest::Contains("the data set has no examples"),
                         tt::value_error);
}

TEST_CASE("data loader: the shuffle depends only on seed and epoch") {
    const auto d = numbered(50);
    const auto order = [&](std::uint64_t seed, int epoch) {
        td::DataLoader<float> l(d, 8, true, seed);
        l.start_epoch(epoch);
        return std::vector<std::int64_t>(l.order().begin(), l.order().end());
    };
    td::DataLoader<float> l(d, 8, true, 7);
    l.start_epoch(3);
    l.start_epoch(1);
    CHECK(std::vector<std::int64_t>(l.order().begin(), l.order().end()) == order(7, 1));
    CHECK(order(7, 2) == order(7, 2));
    CHECK(order(7, 0) != order(7, 1));
    CHECK(order(7, 1) != order(7, 2));
    CHECK(order(7, 0) != order(8, 0));
    std::vector<std::int64_t> identity(50);
    std::iota(identity.begin(), identity.end(), 0);
    CHECK(order(7, 0) != identity);

    // Pinned so that a change to the generator or the shuffle, or a platform that differs, shows.
    td::DataLoader<float> small(numbered(10), 4, true, 42);
    CHECK(std::vector<std::int64_t>(small.order().begin(), small.order().end()) ==
          std::vector<std::int64_t>{8, 7, 3, 0, 5, 4, 6, 1, 2, 9});
}

TEST_CASE("data loader: full batches reuse the batch tensors' storage") {
    const auto d = numbered(10);
    td::DataLoader<float> loader(d, 4, true, 3);
    tt::Tensor<float> xb, yb;
    REQUIRE(loader.next(xb, yb));
    const float* xp = xb.data();
    const float* yp = yb.data();
    REQUIRE(loader.next(xb, yb));
    CHECK(xb.data() == xp);
    CHECK(yb.data() == yp);
    REQUIRE(loader.next(xb, yb));
    CHECK(xb.shape() == tt::Shape{2, 3});

    // A batch still held elsewhere (as a graph holds its inputs) is not overwritten.
    loader.start_epoch(1);
    REQUIRE(loader.next(xb, yb));
    const tt::Tensor<float> held = xb;
    const auto first = held.clone();
    REQUIRE(loader.next(xb, yb));
    CHECK_FALSE(xb.shares_storage_with(held));
    for (std::int64_t k = 0; k < 4; ++k) CHECK(held(k, 0) == first(k, 0));
}

namespace {

Bytes images_file(std::uint32_t n, std::uint32_t rows, std::uint32_t cols, std::uint8_t start) {
    return idx_file(0x08, {n, rows, cols}, iota_bytes(std::size_t{n} * rows * cols, start));
}

}  // namespace

TEST_CASE("mnist: loads the four files, plain or gzip'd, scaled to [0, 1]") {
    TempDir dir;
    write_file(dir.file("train-images-idx3-ubyte"), images_file(5, 4, 4, 0));
    // The plain file wins when both exist; this .gz would fail the label check.
    write_gz(dir.file("train-images-idx3-ubyte.gz"), images_file(4, 4, 4, 0));
    write_gz(dir.file("train-labels-idx1-ubyte.gz"), idx_file(0x08, {5}, {3, 1, 4, 1, 5}));
    write_gz(dir.file("t10k-images-idx3-ubyte.gz"), images_file(3, 4, 4, 100));
    write_file(dir.file("t10k-labels-idx1-ubyte"), idx_file(0x08, {3}, {9, 0, 255}));

    const auto m = td::load_mnist<float>(dir.str());
    CHECK(m.train.x.shape() == tt::Shape{5, 1, 4, 4});
    CHECK(m.train.y.shape() == tt::Shape{5});
    CHECK(m.test.x.shape() == tt::Shape{3, 1, 4, 4});
    CHECK(m.train.x(0, 0, 0, 0) == 0.f);
    CHECK(m.train.x(1, 0, 0, 1) == doctest::Approx(17.0 / 255));
    CHECK(m.test.x(2, 0, 3, 3) == doctest::Approx(((100 + 47) % 256) / 255.0));
    CHECK(m.train.y(2) == 4.f);
    CHECK(m.test.y(2) == 255.f);
    const auto md = td::load_mnist<double>(dir.str());
    CHECK(md.test.x(0, 0, 0, 1) == doctest::Approx(101.0 / 255));

    fs::remove(dir.file("train-images-idx3-ubyte"));
    CHECK_THROWS_WITH_AS(td::load_mnist<float>(dir.str()), doctest::Contains("holds 4 images but"), td::data_error);

    write_file(dir.file("train-images-idx3-ubyte"), idx_file(0x08, {5, 16}, iota_bytes(80)));
    CHECK_THROWS_WITH_AS(td::load_mnist<float>(dir.str()),
                         doctest::Contains("expected ubyte images of dims [N, rows, cols], found ubyte of dims [5, 16]"),
                         td::data_error);
    write_file(dir.file("train-images-idx3-ubyte"), images_file(5, 4, 4, 0));

    write_file(dir.file("t10k-labels-idx1-ubyte"), idx_file(0x0B, {3}, {0, 1, 0, 2, 1, 0}));
    CHECK_THROWS_WITH_AS(td::load_mnist<float>(dir.str()), doctest::Contains("element 2 is 256, which uint8 cannot hold"),
                         td::data_error);

    fs::remove(dir.file("t10k-labels-idx1-ubyte"));
    const std::string base = (fs::path(dir.str()) / "t10k-labels-idx1-ubyte").string();
    CHECK_THROWS_WITH_AS(td::load_mnist<float>(dir.str()),
                         has("load_mnist: found neither '", base, "' nor '", base, ".gz'"), td::data_error);
    CHECK_THROWS_WITH_AS(td::load_mnist<float>(dir.file("nowhere")), doctest::Contains("(the directory does not exist)"),
                         td::data_error);
}

TEST_CASE("mnist: the installed Fashion-MNIST loads, when present") {
    std::error_code ec;
    if (!fs::is_directory(td::default_fashion_mnist_dir, ec)) {
        MESSAGE("skipped: " << td::default_fashion_mnist_dir << " is not installed (Debian package dataset-fashion-mnist)");
        return;
    }
    if (!have_zlib) {
        MESSAGE("skipped: built without zlib, and the installed files are gzip'd");
        return;
    }
    const auto m = td::load_mnist<float>(td::default_fashion_mnist_dir);
    CHECK(m.train.x.shape() == tt::Shape{60000, 1, 28, 28});
    CHECK(m.train.y.shape() == tt::Shape{60000});
    CHECK(m.test.x.shape() == tt::Shape{10000, 1, 28, 28});
    CHECK(m.test.y.shape() == tt::Shape{10000});
    for (const auto* set : {&m.train, &m.test}) {
        const auto [lo, hi] = std::minmax_element(set->x.data(), set->x.data() + set->x.numel());
        CHECK(*lo == 0.f);
        CHECK(*hi == 1.f);
        std::vector<std::int64_t> counts(10);
        std::int64_t bad = 0;
        for (float v : set->y.span()) {
            if (v >= 0.f && v <= 9.f && v == std::floor(v)) ++counts[static_cast<std::size_t>(v)];
            else ++bad;
        }
        CHECK(bad == 0);
        // Fashion-MNIST is balanced: 6000 and 1000 examples of each class.
        for (auto c : counts) CHECK(c == set->size() / 10);
    }
}
