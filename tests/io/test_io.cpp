#include <doctest/doctest.h>
#include <tensortape/tensortape.hpp>
#include <tensortape/io/io.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <csignal>
#include <sys/resource.h>
#include <unistd.h>

namespace tt = tensortape;
namespace tio = tensortape::io;
namespace fs = std::filesystem;

namespace {

// The generated reference files sit next to this source; __FILE__ finds them without a
// build-system definition.
const fs::path fixtures = fs::path(__FILE__).parent_path() / "fixtures";

// A fresh directory per test, removed afterwards, so that the tests can list what a save left.
struct TempDir {
    fs::path path;
    TempDir() {
        static std::atomic<int> counter{0};
        path = fs::temp_directory_path() /
               ("tensortape_io_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string operator/(const std::string& name) const { return (path / name).string(); }
    std::vector<std::string> list() const {
        std::vector<std::string> names;
        for (const auto& e : fs::directory_iterator(path)) names.push_back(e.path().filename().string());
        std::sort(names.begin(), names.end());
        return names;
    }
};

std::string read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(std::uint64_t n) {
    std::string s(8, '\0');
    for (int b = 0; b < 8; ++b) s[static_cast<std::size_t>(b)] = static_cast<char>(n >> (8 * b));
    return s;
}
// A safetensors file from a header text and a data section, with the true header length
// unless told otherwise.
std::string st_file(const std::string& header, const std::string& data,
                     std::uint64_t header_len = std::numeric_limits<std::uint64_t>::max()) {
    return le64(header_len == std::numeric_limits<std::uint64_t>::max() ? header.size() : header_len) + header + data;
}

template <class T>
void check_same(const tt::Tensor<T>& got, const tt::Tensor<T>& want) {
    REQUIRE(got.shape() == want.shape());
    const auto g = got.contiguous(), w = want.contiguous();
    for (std::int64_t i = 0; i < w.numel(); ++i) CHECK(g.data()[i] == w.data()[i]);
}

// The message of the io_error that f throws ("" when it throws none).
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const tio::io_error& e) {
        return e.what();
    }
    return "";
}

bool have_python_numpy() {
    return fs::exists("/usr/bin/python3") && std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
}

}  // namespace

TEST_CASE("safetensors: every element type, 0-d, empty and non-contiguous tensors round-trip") {
    TempDir dir;
    const std::string path = dir / "model.safetensors";
    const auto f32 = tt::from_values<float>({2, 3}, {-1.5f, 0.f, 1e-30f, 3.25f, -0.f, 1e30f});
    const auto f64 = tt::from_values<double>({4}, {1.0 / 3, -2.5, 1e300, -1e-300});
    const auto i32 = tt::from_values<std::int32_t>({2, 2}, {std::numeric_limits<std::int32_t>::min(), -1, 0, 2147483647});
    const auto i64 = tt::from_values<std::int64_t>({3}, {std::numeric_limits<std::int64_t>::min(), 42, std::int64_t(1) << 60});
    const auto u8 = tt::from_values<std::uint8_t>({5}, {0, 1, 127, 128, 255});
    const auto scalar = tt::scalar_tensor<float>(7.5f);
    const auto empty = tt::zeros<float>({0, 3});
    const auto empty_u8 = tt::zeros<std::uint8_t>({2, 0});
    const auto transposed = tt::arange<double>(12).reshape({3, 4}).transpose();  // strides [1, 4]
    const auto strided = tt::arange<std::int32_t>(20).reshape({4, 5}).slice(1, 1, 5, 2);
    REQUIRE_FALSE(transposed.is_contiguous());
    REQUIRE_FALSE(strided.is_contiguous());

    // u8 first and f64 later: the writer must still start each tensor aligned for its type.
    tio::save_safetensors(path, {tio::entry("u8", u8), tio::entry("f32", f32), tio::entry("f64", f64),
                                 tio::entry("i32", i32), tio::entry("i64", i64), tio::entry("scalar", scalar),
                                 tio::entry("empty", empty), tio::entry("empty_u8", empty_u8),
                                 tio::entry("transposed", transposed), tio::entry("strided", strided)});
    const auto file = tio::load_safetensors(path);
    CHECK(file.path == path);
    CHECK(file.metadata.empty());
    std::vector<std::string> names;
    for (const auto& t : file.tensors) names.push_back(t.name);
    CHECK(names == std::vector<std::string>{"u8", "f32", "f64", "i32", "i64", "scalar", "empty", "empty_u8",
                                             "transposed", "strided"});
    check_same(tio::as_tensor<std::uint8_t>(file.at("u8")), u8);
    check_same(tio::as_tensor<float>(file.at("f32")), f32);
    check_same(tio::as_tensor<double>(file.at("f64")), f64);
    check_same(tio::as_tensor<std::int32_t>(file.at("i32")), i32);
    check_same(tio::as_tensor<std::int64_t>(file.at("i64")), i64);
    check_same(tio::as_tensor<float>(file.at("scalar")), scalar);
    CHECK(file.at("scalar").shape.rank() == 0);
    check_same(tio::as_tensor<float>(file.at("empty")), empty);
    check_same(tio::as_tensor<std::uint8_t>(file.at("empty_u8")), empty_u8);
    const auto t = tio::as_tensor<double>(file.at("transposed"));
    CHECK(t.shape() == tt::Shape{4, 3});
    CHECK(t(3, 2) == 11.0);
    check_same(t, transposed);
    check_same(tio::as_tensor<std::int32_t>(file.at("strided")), strided);
    CHECK(file.at("f32").dtype == tt::DType::f32);

    // Layout: the data section starts 8-byte aligned and every tensor at a multiple of its size.
    const std::string raw = read_bytes(path);
    std::uint64_t n = 0;
    for (int b = 0; b < 8; ++b) n |= std::uint64_t(static_cast<unsigned char>(raw[static_cast<std::size_t>(b)])) << (8 * b);
    CHECK((8 + n) % 8 == 0);
    const auto header = tio::detail::json::parse(std::string_view(raw).substr(8, n), "test", "header");
    REQUIRE(header.keys.size() == 10);
    for (std::size_t i = 0; i < header.keys.size(); ++i) {
        const auto& info = header.items[i];
        const std::string dtype = info.items[0].string;
        const std::int64_t begin = info.items[2].items[0].integer;
        const std::int64_t size = dtype == "F64" || dtype == "I64" ? 8 : dtype == "U8" ? 1 : 4;
        CAPTURE(header.keys[i]);
        CHECK(begin % size == 0);
    }
}

TEST_CASE("safetensors: metadata, escapes and non-ASCII names round-trip") {
    TempDir dir;
    const std::string path = dir / "meta.safetensors";
    const std::map<std::string, std::string> meta{
        {"format", "pt"},
        {"quote\"back\\slash/", "line\nbreak\ttab\r\b\f\x01\x1f end"},
        {"unicode", "\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        {"empty", ""}};
    const std::string odd = "layer.0/\xc3\xa9\"x\\y\n";
    tio::save_safetensors(path, {tio::entry(odd, tt::ones<float>({2}))}, meta);
    const auto file = tio::load_safetensors(path);
    CHECK(file.metadata == meta);
    REQUIRE(file.tensors.size() == 1);
    CHECK(file.tensors[0].name == odd);
    REQUIRE(file.find(odd) != nullptr);
    CHECK(file.find("layer.0") == nullptr);

    // \u escapes, a surrogate pair and "\/" as another writer may produce them.
    const std::string header =
        R"({"__metadata__":{"k\u00e9y":"\ud83d\ude00\/\u0041"},"\u0030.w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
    write_bytes(path, st_file(header, "\x07"));
    const auto hand = tio::load_safetensors(path);
    CHECK(hand.metadata.at("k\xc3\xa9y") == "\xf0\x9f\x98\x80/A");
    CHECK(tio::as_tensor<std::uint8_t>(hand.at("0.w"))(0) == 7);
}

TEST_CASE("safetensors: reads a file written by hand from the published layout (make_fixture.py)") {
    const auto file = tio::load_safetensors((fixtures / "fixture.safetensors").string());
    CHECK(file.metadata == std::map<std::string, std::string>{{"format", "pt"}});
    REQUIRE(file.tensors.size() == 3);
    CHECK(file.tensors[0].name == "0.weight");
    CHECK(file.tensors[1].name == "0.bias");
    CHECK(file.tensors[2].name == "scale");
    const auto w = tio::as_tensor<float>(file.at("0.weight"));
    REQUIRE(w.shape() == tt::Shape{2, 3});
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j) CHECK(w(i, j) == 0.5f * static_cast<float>(3 * i + j));
    const auto b = tio::as_tensor<float>(file.at("0.bias"));
    REQUIRE(b.shape() == tt::Shape{3});
    CHECK(b(0) == -1.f);
    CHECK(b(1) == 0.f);
    CHECK(b(2) == 1.f);
    const auto s = tio::as_tensor<double>(file.at("scale"));
    CHECK(s.shape() == tt::Shape{});
    CHECK(s.item() == 2.5);
}

TEST_CASE("npy: reads a file written by numpy.save (make_fixture.py)") {
    const auto a = tio::load_npy<float>((fixtures / "fixture.npy").string());
    REQUIRE(a.shape() == tt::Shape{3, 4});
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 4; ++j) CHECK(a(i, j) == static_cast<float>(4 * i + j));
    CHECK_THROWS_WITH_AS(tio::load_npy<double>((fixtures / "fixture.npy").string()),
                         doctest::Contains("descr '<f4', expected '<f8' for float64"), tio::io_error);
}

TEST_CASE("safetensors: as_tensor, find and at report what they expected") {
    const auto file = tio::load_safetensors((fixtures / "fixture.safetensors").string());
    CHECK_THROWS_WITH_AS(tio::as_tensor<double>(file.at("0.bias")),
                         doctest::Contains("as_tensor: tensor '0.bias' has dtype F32 (float32), expected F64 (float64)"),
                         tio::io_error);
    CHECK_THROWS_WITH_AS(tio::as_tensor<std::int32_t>(file.at("scale")),
                         doctest::Contains("tensor 'scale' has dtype F64 (float64), expected I32 (int32)"), tio::io_error);
    CHECK(file.find("missing") == nullptr);
    CHECK_THROWS_WITH_AS(file.at("missing"), doctest::Contains("fixture.safetensors' has no tensor 'missing'"), tio::io_error);
    tio::TensorEntry bad{"bad", tt::DType::f32, {3}, std::vector<std::byte>(8)};
    CHECK_THROWS_WITH_AS(tio::as_tensor<float>(bad), doctest::Contains("tensor 'bad' has 8 bytes, expected 12"), tio::io_error);
    CHECK_THROWS_WITH_AS(tio::entry("u", tt::Tensor<float>()), doctest::Contains("tensor 'u' is undefined"), tio::io_error);
}

TEST_CASE("safetensors: save rejects duplicate, reserved and non-UTF-8 names and inconsistent entries") {
    TempDir dir;
    const std::string path = dir / "bad.safetensors";
    const auto x = tt::ones<float>({2});
    CHECK_THROWS_WITH_AS(tio::save_safetensors(path, {tio::entry("a", x), tio::entry("b", x), tio::entry("a", x)}),
                         doctest::Contains("duplicate tensor name 'a'"), tio::io_error);
    CHECK_THROWS_WITH_AS(tio::save_safetensors(path, {tio::entry("__metadata__", x)}),
                         doctest::Contains("\"__metadata__\" is reserved"), tio::io_error);
    CHECK_THROWS_WITH_AS(tio::save_safetensors(path, {tio::entry("bad\xff", x)}),
                         doctest::Contains("is not valid UTF-8"), tio::io_error);
    CHECK_THROWS_WITH_AS(tio::save_safetensors(path, {}, {{"k", "\xc0\x80"}}),
                         doctest::Contains("metadata value of 'k' is not valid UTF-8"), tio::io_error);
    tio::TensorEntry negative{"n", tt::DType::u8, {-1}, {}};
    CHECK_THROWS_WITH_AS(tio::save_safetensors(path, {negative}),
                         doctest::Contains("tensor 'n' has a negative extent in shape [-1]"), tio::io_error);
    tio::TensorEntry short_entry{"s", tt::DType::f64, {2}, std::vector<std::byte>(8)};
    CHECK_THROWS_WITH_AS(tio::save_safetensors(path, {short_entry}),
                         doctest::Contains("tensor 's' has 8 bytes, expected 16"), tio::io_error);
    CHECK(dir.list().empty());

    // No tensors at all is a valid file.
    tio::save_safetensors(path, {});
    CHECK(tio::load_safetensors(path).tensors.empty());
}

TEST_CASE("atomic writes: no temporary file is left, and a failed save leaves the old file intact") {
    TempDir dir;
    const std::string path = dir / "ckpt.safetensors";
    const std::string npy = dir / "a.npy";
    tio::save_safetensors(path, {tio::entry("w", tt::ones<float>({3}))});
    tio::save_npy(npy, tt::ones<float>({3}));
    CHECK(dir.list() == std::vector<std::string>{"a.npy", "ckpt.safetensors"});
    // Overwriting an existing file goes through the same rename.
    tio::save_safetensors(path, {tio::entry("w", tt::full<float>({3}, 2.f))});
    CHECK(tio::as_tensor<float>(tio::load_safetensors(path).at("w"))(0) == 2.f);
    CHECK(dir.list() == std::vector<std::string>{"a.npy", "ckpt.safetensors"});
    const std::string before = read_bytes(path);
    const std::string npy_before = read_bytes(npy);

    SUBCASE("into a missing directory") {
        const std::string missing = dir / "no/such/dir/ckpt.safetensors";
        CHECK_THROWS_WITH_AS(tio::save_safetensors(missing, {tio::entry("w", tt::ones<float>({3}))}),
                             doctest::Contains("cannot create temporary file"), tio::io_error);
        CHECK_THROWS_WITH_AS(tio::save_npy(dir / "no/a.npy", tt::ones<float>({3})),
                             doctest::Contains("No such file or directory"), tio::io_error);
        CHECK_FALSE(fs::exists(dir.path / "no"));
    }
    SUBCASE("a save that fails validation does not touch the target") {
        CHECK_THROWS_AS(tio::save_safetensors(path, {tio::entry("a", tt::ones<float>({1})), tio::entry("a", tt::ones<float>({1}))}),
                        tio::io_error);
    }
    SUBCASE("the final rename fails (the target is a non-empty directory)") {
        const std::string target = dir / "occupied";
        fs::create_directories(dir.path / "occupied" / "inside");
        CHECK_THROWS_WITH_AS(tio::save_safetensors(target, {tio::entry("w", tt::ones<float>({3}))}),
                             doctest::Contains("cannot rename"), tio::io_error);
        CHECK(fs::is_directory(dir.path / "occupied" / "inside"));
        CHECK(dir.list() == std::vector<std::string>{"a.npy", "ckpt.safetensors", "occupied"});
    }
    SUBCASE("the disk fills up part way through the data") {
        // RLIMIT_FSIZE makes write() fail with EFBIG once the file would pass the limit: a real
        // mid-write failure, after the temporary file exists and holds part of the data.
        struct rlimit old {};
        REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
        struct rlimit small = old;
        small.rlim_cur = 4096;
        if (old.rlim_max != RLIM_INFINITY && old.rlim_max < small.rlim_cur) small.rlim_cur = old.rlim_max;
        const auto big = tt::zeros<float>({256, 1024});  // 1 MiB
        auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
        REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
        const std::string st_msg = error_of([&] { tio::save_safetensors(path, {tio::entry("w", big)}); });
        const std::string npy_msg = error_of([&] { tio::save_npy(npy, big); });
        ::setrlimit(RLIMIT_FSIZE, &old);
        std::signal(SIGXFSZ, old_handler);
        CHECK(st_msg.find("tensortape: save_safetensors: cannot write '" + path + "': write of temporary file") == 0);
        CHECK(st_msg.find("File too large") != std::string::npos);
        CHECK(npy_msg.find("tensortape: save_npy: cannot write '" + npy + "'") == 0);
    }
    CHECK(read_bytes(path) == before);
    CHECK(read_bytes(npy) == npy_before);
    const auto left = dir.list();
    for (const auto& name : left) CHECK(name.find(".tmp.") == std::string::npos);
}

TEST_CASE("safetensors: corrupt files are rejected with a message naming the file, the tensor and the problem") {
    TempDir dir;
    const std::string path = dir / "corrupt.safetensors";
    const std::string w = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
    const std::string data8(8, '\0');
    struct Case {
        std::string what;
        std::string bytes;
        std::string message;
    };
    // A valid file, then cut: first in the data, then in the header.
    tio::save_safetensors(path, {tio::entry("w", tt::ones<float>({2}))});
    const std::string valid = read_bytes(path);
    std::string long_shape = "1";
    for (int i = 1; i < 100; ++i) long_shape += ",1";
    const std::vector<Case> cases = {
        {"shorter than the length field", "abcde", "the file is 5 bytes, too short for the 8-byte header length"},
        {"truncated in the data", valid.substr(0, valid.size() - 3),
         "tensor 'w': data_offsets [0, 8] run past the end of the data section (5 bytes)"},
        {"truncated in the header", valid.substr(0, 20), "runs past the end of the file (20 bytes leave at most 12"},
        {"header length larger than the file", st_file("{}", "", 1000), "header length 1000 runs past the end of the file"},
        {"absurd header length", st_file("{}", "", std::uint64_t(1) << 40), "exceeds the limit of 100000000 bytes"},
        {"empty header", st_file("", ""), "invalid JSON at byte 0: expected a value, found end of input"},
        {"trailing comma", st_file(R"({"w":{"dtype":"F32",}})", ""), "invalid JSON at byte 20: expected a string key in object, found '}'"},
        {"missing colon", st_file(R"({"w" {}})", ""), "expected ':' after an object key, found '{'"},
        {"unterminated string", st_file(R"({"w)", ""), "unterminated string"},
        {"a fraction", st_file(R"({"w":{"dtype":"F32","shape":[2.5]}})", ""), "only integers are allowed"},
        {"an exponent", st_file(R"({"w":{"shape":[1e3]}})", ""), "only integers are allowed"},
        {"a literal", st_file(R"({"w":null})", ""), "true, false and null are not part of a safetensors header"},
        {"leading zero", st_file(R"({"w":{"shape":[01]}})", ""), "leading zeros are not allowed"},
        {"integer overflow", st_file(R"({"w":{"shape":[99999999999999999999]}})", ""), "integer does not fit in 64 bits"},
        {"control character", st_file("{\"w\x01\":1}", ""), "unescaped control character (byte 0x01) in string"},
        {"bad escape", st_file(R"({"\q":1})", ""), "invalid escape '\\q' in string"},
        {"short \\u escape", st_file(R"({"\u12":1})", ""), "\\u escape needs four hex digits"},
        {"lone surrogate", st_file(R"({"\ud800x":1})", ""), "high surrogate without a low surrogate"},
        {"lone low surrogate", st_file(R"({"\udc00":1})", ""), "low surrogate without a high surrogate"},
        {"invalid UTF-8", st_file("{\"\xff\":1}", ""), "invalid UTF-8 (byte 0xff) in string"},
        {"overlong UTF-8", st_file("{\"\xc0\xaf\":1}", ""), "invalid UTF-8 (byte 0xc0) in string"},
        {"garbage after the object", st_file("{} x", ""), "invalid JSON at byte 3: unexpected 'x' after the end of the JSON value"},
        {"deep nesting", st_file("{\"w\":" + std::string(40, '[') + std::string(40, ']') + "}", ""), "nesting deeper than 32 levels"},
        {"not an object", st_file("[]", ""), "the header must be a JSON object, found an array"},
        {"tensor not an object", st_file(R"({"w":"F32"})", ""), "tensor 'w': expected an object with dtype, shape and data_offsets, found a string"},
        {"unknown dtype", st_file(R"({"w":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}})", data8),
         "tensor 'w': unknown dtype \"F17\" (expected F32, F64, I32, I64 or U8)"},
        {"dtype tensortape lacks", st_file(R"({"w":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})", data8),
         "tensor 'w': dtype \"BF16\" has no tensortape element type"},
        {"dtype not a string", st_file(R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", data8),
         "tensor 'w': \"dtype\" must be a string, found an integer"},
        {"negative extent", st_file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8),
         "tensor 'w': negative extent -2 in shape"},
        {"long array", st_file(R"({"w":{"dtype":"U8","shape":[)" + long_shape + "]}}", ""),
         "array longer than 64 items"},
        {"rank above the maximum", st_file(R"({"w":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}})", "x"),
         "tensor 'w': shape has rank 9, tensortape supports at most 8"},
        {"shape not integers", st_file(R"({"w":{"dtype":"U8","shape":["1"],"data_offsets":[0,1]}})", "x"),
         "tensor 'w': \"shape\" must hold integers, found a string"},
        {"missing key", st_file(R"({"w":{"dtype":"F32","shape":[2]}})", data8), "tensor 'w': missing \"data_offsets\""},
        {"unknown key", st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}})", data8),
         "tensor 'w': unknown key \"extra\""},
        {"duplicate key", st_file(R"({"w":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data8),
         "tensor 'w': duplicate key \"dtype\""},
        {"offsets not a pair", st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data8),
         "tensor 'w': \"data_offsets\" must be an array of two integers"},
        {"offsets reversed", st_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", data8),
         "tensor 'w': data_offsets [8, 0] are not a range"},
        {"offsets out of range", st_file(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data8),
         "tensor 'w': data_offsets [0, 16] run past the end of the data section (8 bytes)"},
        {"wrong byte count", st_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8),
         "tensor 'w': data_offsets [0, 8] span 8 bytes, expected 12 for shape [3] of F32 (4 bytes each)"},
        {"shape too large for any file", st_file(R"({"w":{"dtype":"F64","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", data8),
         "tensor 'w': shape [4611686018427387904, 4] of F64 needs more than 2^64 bytes"},
        {"overlapping ranges",
         st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                 std::string(12, '\0')),
         "tensors 'a' (data_offsets [0, 8]) and 'b' (data_offsets [4, 12]) overlap"},
        {"identical ranges",
         st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})", data8),
         "tensors 'a' (data_offsets [0, 8]) and 'b' (data_offsets [0, 8]) overlap"},
        {"a gap between tensors",
         st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
                 std::string(20, '\0')),
         "bytes [8, 12) of the data section belong to no tensor (before tensor 'b')"},
        {"bytes after the last tensor", st_file("{" + w + "}", std::string(12, '\0')),
         "the data section is 12 bytes but the tensors cover only 8; the last 4 bytes belong to no tensor"},
        {"duplicate tensor names", st_file("{" + w + "," + w + "}", data8), "duplicate tensor name 'w'"},
        {"metadata not strings", st_file(R"({"__metadata__":{"epoch":3}})", ""), "metadata 'epoch' must be a string, found an integer"},
        {"metadata not an object", st_file(R"({"__metadata__":"pt"})", ""), "\"__metadata__\" must be an object of strings, found a string"},
        {"duplicate metadata key", st_file(R"({"__metadata__":{"a":"1","a":"2"}})", ""), "duplicate metadata key 'a'"},
        {"two metadata objects", st_file(R"({"__metadata__":{},"__metadata__":{}})", ""), "duplicate \"__metadata__\" key"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.what);
        write_bytes(path, c.bytes);
        CHECK_THROWS_WITH_AS(tio::load_safetensors(path), doctest::Contains(c.message.c_str()), tio::io_error);
        const std::string msg = error_of([&] { tio::load_safetensors(path); });
        CHECK(msg.find("tensortape: load_safetensors: file '" + path + "': ") == 0);
    }
    CHECK_THROWS_WITH_AS(tio::load_safetensors(dir / "absent.safetensors"),
                         doctest::Contains(("cannot open '" + dir / "absent.safetensors" + "': No such file").c_str()), tio::io_error);
    CHECK_THROWS_WITH_AS(tio::load_safetensors(dir.path.string()), doctest::Contains("is not a regular file"), tio::io_error);

    // Edge cases that are valid: empty tensors may sit at any tensor boundary, whitespace anywhere.
    write_bytes(path, st_file(" {\n\"e\" : {\"dtype\":\"U8\",\"shape\":[0,4611686018427387904],\"data_offsets\":[8,8]},\t" + w + ",\"z\":{\"dtype\":\"I64\",\"shape\":[0],\"data_offsets\":[0,0]}}  ", data8));
    const auto ok = tio::load_safetensors(path);
    REQUIRE(ok.tensors.size() == 3);
    CHECK(ok.at("e").shape == tt::Shape{0, 4611686018427387904});
    CHECK(ok.at("e").bytes.empty());
}

TEST_CASE("npy: round trips write C order from any strides and 64-byte-aligned headers") {
    TempDir dir;
    const std::string path = dir / "a.npy";
    const auto f32 = tt::from_values<float>({2, 3}, {-1.5f, 0.f, 1e-30f, 3.25f, -0.f, 1e30f});
    tio::save_npy(path, f32);
    check_same(tio::load_npy<float>(path), f32);
    const std::string raw = read_bytes(path);
    const std::size_t hlen = static_cast<unsigned char>(raw[8]) | (static_cast<std::size_t>(static_cast<unsigned char>(raw[9])) << 8);
    CHECK((10 + hlen) % 64 == 0);
    CHECK(raw.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
    CHECK(raw.substr(10, hlen).find("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }") == 0);
    CHECK(raw[10 + hlen - 1] == '\n');
    CHECK(raw.size() == 10 + hlen + 24);

    const auto transposed = tt::arange<double>(12).reshape({3, 4}).transpose();
    tio::save_npy(path, transposed);
    check_same(tio::load_npy<double>(path), transposed);
    const auto i32 = tt::from_values<std::int32_t>({3}, {std::numeric_limits<std::int32_t>::min(), 0, 7});
    tio::save_npy(path, i32);
    check_same(tio::load_npy<std::int32_t>(path), i32);
    CHECK(read_bytes(path).find("'shape': (3,), }") != std::string::npos);
    const auto i64 = tt::arange<std::int64_t>(20).reshape({4, 5}).slice(1, 0, 5, 2);
    tio::save_npy(path, i64);
    check_same(tio::load_npy<std::int64_t>(path), i64);
    const auto u8 = tt::from_values<std::uint8_t>({2, 2}, {0, 1, 128, 255});
    tio::save_npy(path, u8);
    CHECK(read_bytes(path).find("'descr': '|u1'") != std::string::npos);
    check_same(tio::load_npy<std::uint8_t>(path), u8);
    const auto scalar = tt::scalar_tensor<double>(-2.25);
    tio::save_npy(path, scalar);
    CHECK(read_bytes(path).find("'shape': (), }") != std::string::npos);
    check_same(tio::load_npy<double>(path), scalar);
    const auto empty = tt::zeros<float>({0, 5});
    tio::save_npy(path, empty);
    check_same(tio::load_npy<float>(path), empty);
    CHECK(dir.list() == std::vector<std::string>{"a.npy"});
    CHECK_THROWS_WITH_AS(tio::save_npy(path, tt::Tensor<float>()), doctest::Contains("the tensor is undefined"), tio::io_error);
}

TEST_CASE("npy: versions 2.0 and 3.0, and every malformed file, are handled with clear messages") {
    TempDir dir;
    const std::string path = dir / "x.npy";
    const std::string f4x3(12, '\0');
    // A .npy file from a version, a header text and data; the header is padded as NumPy does.
    auto npy = [](int major, std::string header, const std::string& data) {
        const std::size_t pre = major == 1 ? 10 : 12;
        header.append((64 - (pre + header.size() + 1) % 64) % 64, ' ');
        header += '\n';
        std::string out = std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0';
        for (std::size_t b = 0; b < pre - 8; ++b) out += static_cast<char>(header.size() >> (8 * b));
        return out + header + data;
    };
    std::string v2data(12, '\0');
    const float vals[3] = {1.f, -2.f, 0.5f};
    std::memcpy(v2data.data(), vals, 12);
    for (int major : {2, 3}) {
        CAPTURE(major);
        write_bytes(path, npy(major, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", v2data));
        const auto a = tio::load_npy<float>(path);
        REQUIRE(a.shape() == tt::Shape{3});
        CHECK(a(1) == -2.f);
    }
    // Double quotes, no trailing comma, other key order, Python 2 longs: still NumPy's literal syntax.
    write_bytes(path, npy(1, "{\"shape\": (1L, 3L), \"fortran_order\": False, \"descr\": \"<f4\"}", v2data));
    CHECK(tio::load_npy<float>(path).shape() == tt::Shape{1, 3});
    write_bytes(path, npy(1, "{'descr': '<u1', 'fortran_order': False, 'shape': (2,), }", "\x01\x02"));
    CHECK(tio::load_npy<std::uint8_t>(path)(1) == 2);

    const std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
    struct Case {
        std::string what;
        std::string bytes;
        std::string message;
    };
    std::string bad_magic = npy(1, h, f4x3);
    bad_magic[1] = 'n';
    std::string v4 = npy(1, h, f4x3);
    v4[6] = 4;
    std::string cut_header = npy(1, h, "");
    cut_header.resize(40);
    const std::vector<Case> cases = {
        {"too short", "\x93NUM", "the file is 4 bytes, too short for a .npy preamble"},
        {"bad magic", bad_magic, "not a .npy file (no \\x93NUMPY magic)"},
        {"unknown version", v4, "unsupported .npy version 4.0 (expected 1.0, 2.0 or 3.0)"},
        {"header past the end", cut_header, "runs past the end of the file (40 bytes)"},
        {"truncated data", npy(1, h, std::string(10, '\0')), "the data section is 10 bytes, expected 12 for shape [3] of '<f4'"},
        {"extra data", npy(1, h, std::string(16, '\0')), "the data section is 16 bytes, expected 12"},
        {"other dtype", npy(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", f4x3),
         "the array has descr '<i4', expected '<f4' for float32"},
        {"big-endian", npy(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }", f4x3),
         "descr '>f4', expected '<f4' for float32 (big-endian data is not supported)"},
        {"fortran order", npy(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (3,), }", f4x3),
         "fortran_order is True (column-major data), which is not supported"},
        {"structured dtype", npy(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", f4x3),
         "structured dtypes (a list as 'descr') are not supported"},
        {"missing key", npy(1, "{'descr': '<f4', 'shape': (3,), }", f4x3), "the header dict has no 'fortran_order' key"},
        {"unexpected key", npy(1, "{'descr': '<f4', 'order': 'C', 'fortran_order': False, 'shape': (3,), }", f4x3),
         "unexpected key 'order'"},
        {"duplicate key", npy(1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f4x3),
         "duplicate key 'descr'"},
        {"shape not a tuple", npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3), }", f4x3),
         "'shape' must be a tuple, such as (3,)"},
        {"negative extent", npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }", f4x3),
         "expected a non-negative integer in 'shape', found '-'"},
        {"bad boolean", npy(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (3,), }", f4x3),
         "expected True or False for 'fortran_order'"},
        {"rank above the maximum", npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1,3), }", f4x3),
         "'shape' has more than 8 axes"},
        {"shape larger than any file", npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 8), }", f4x3),
         "the data section is 12 bytes, expected more than 2^64 for shape [4611686018427387904, 8]"},
        {"not a dict", npy(1, "['descr']", f4x3), "invalid header at byte 0: expected '{', found '['"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.what);
        write_bytes(path, c.bytes);
        CHECK_THROWS_WITH_AS(tio::load_npy<float>(path), doctest::Contains(c.message.c_str()), tio::io_error);
        const std::string msg = error_of([&] { tio::load_npy<float>(path); });
        CHECK(msg.find("tensortape: load_npy: file '" + path + "': ") == 0);
    }
}

TEST_CASE("safetensors and npy files written here read back in NumPy (skipped without /usr/bin/python3 and numpy)") {
    if (!have_python_numpy()) {
        MESSAGE("skipped: /usr/bin/python3 with numpy is not available");
        return;
    }
    TempDir dir;
    const std::string st = dir / "out.safetensors";
    const std::string npy = dir / "out.npy";
    tio::save_safetensors(st,
                          {tio::entry("w", tt::arange<float>(6).reshape({2, 3}).transpose()),
                           tio::entry("b", tt::from_values<std::uint8_t>({3}, {1, 2, 255})),
                           tio::entry("s", tt::scalar_tensor<double>(2.5)),
                           tio::entry("i", tt::from_values<std::int64_t>({2}, {-1, std::int64_t(1) << 40}))},
                          {{"format", "pt"}, {"note", "\xc3\xa9\"\n"}});
    tio::save_npy(npy, tt::arange<std::int32_t>(12).reshape({3, 4}).transpose());
    // Reads the header by the published layout with json and struct, the data with frombuffer.
    const std::string script = dir / "check.py";
    write_bytes(script, R"(import json, struct, sys
import numpy as np
raw = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
assert (8 + n) % 8 == 0, n
h = json.loads(raw[8:8 + n].decode("utf-8"))
assert h.pop("__metadata__") == {"format": "pt", "note": "\u00e9\"\n"}
data = raw[8 + n:]
types = {"F32": "<f4", "F64": "<f8", "U8": "|u1", "I64": "<i8"}
def get(name):
    t = h[name]
    b, e = t["data_offsets"]
    assert b % np.dtype(types[t["dtype"]]).itemsize == 0, (name, b)
    return np.frombuffer(data[b:e], dtype=types[t["dtype"]]).reshape(t["shape"])
assert (get("w") == np.arange(6, dtype=np.float32).reshape(2, 3).T).all()
assert get("b").tolist() == [1, 2, 255]
assert get("s").shape == () and get("s") == 2.5
assert get("i").tolist() == [-1, 1 << 40]
assert sum(t["data_offsets"][1] - t["data_offsets"][0] for t in h.values()) == len(data)
a = np.load(sys.argv[2])
assert a.dtype == np.int32 and (a == np.arange(12, dtype=np.int32).reshape(3, 4).T).all(), a
)");
    const std::string cmd = "/usr/bin/python3 '" + script + "' '" + st + "' '" + npy + "'";
    CHECK(std::system(cmd.c_str()) == 0);
}

TEST_CASE("safetensors and npy: damaged files give io_errors, never a crash or another exception") {
    // Deterministic byte flips and truncations of valid files; each load must either succeed or
    // throw io_error. Run under -fsanitize=address,undefined this also checks the parsers' bounds.
    TempDir dir;
    const std::string st = dir / "f.safetensors";
    const std::string npy = dir / "f.npy";
    tio::save_safetensors(st, {tio::entry("a", tt::arange<float>(6).reshape({2, 3})), tio::entry("b", tt::ones<std::uint8_t>({3}))},
                          {{"k", "v"}});
    tio::save_npy(npy, tt::arange<double>(6).reshape({3, 2}));
    const std::string st_raw = read_bytes(st), npy_raw = read_bytes(npy);
    std::uint64_t state = 12345;
    auto next = [&] { return static_cast<std::size_t>((state = state * 6364136223846793005ULL + 1442695040888963407ULL) >> 33); };
    int failures = 0, loads = 0;
    for (int round = 0; round < 600; ++round) {
        for (const bool is_st : {true, false}) {
            std::string bytes = is_st ? st_raw : npy_raw;
            const std::size_t header_end = is_st ? 8 + 120 : 128;  // mostly damage the header
            const std::size_t flips = 1 + next() % 3;
            for (std::size_t k = 0; k < flips; ++k) bytes[next() % std::min(bytes.size(), header_end)] = static_cast<char>(next());
            if (next() % 4 == 0) bytes.resize(next() % bytes.size());
            const std::string& p = is_st ? st : npy;
            write_bytes(p, bytes);
            try {
                if (is_st) (void)tio::load_safetensors(p);
                else (void)tio::load_npy<double>(p);
                ++loads;
            } catch (const tio::io_error&) {
                ++failures;
            }
        }
    }
    CHECK(failures + loads == 1200);
    CHECK(failures > 600);
}
