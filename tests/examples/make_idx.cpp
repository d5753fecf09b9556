// Writes a small MNIST-shaped data set (IDX files, the four standard names) into a folder, so
// that ctest can run the training examples end to end where the Fashion-MNIST package is not
// installed. The images are noise around one bright square per class, learnable in one epoch.
//
//   make_idx DIR [TRAIN] [TEST]

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

void put32(std::FILE* f, std::uint32_t v) {
    const unsigned char b[4] = {static_cast<unsigned char>(v >> 24), static_cast<unsigned char>(v >> 16), static_cast<unsigned char>(v >> 8),
                                static_cast<unsigned char>(v)};
    std::fwrite(b, 1, 4, f);
}

bool write(const std::string& dir, const char* images, const char* labels, int n, std::uint32_t seed) {
    std::vector<unsigned char> pixels(static_cast<std::size_t>(n) * 28 * 28), classes(static_cast<std::size_t>(n));
    std::uint32_t s = seed;
    auto next = [&s] { return s = s * 1664525u + 1013904223u; };
    for (int i = 0; i < n; ++i) {
        const int label = static_cast<int>(next() >> 16) % 10;
        classes[static_cast<std::size_t>(i)] = static_cast<unsigned char>(label);
        unsigned char* img = pixels.data() + static_cast<std::size_t>(i) * 784;
        for (int p = 0; p < 784; ++p) img[p] = static_cast<unsigned char>((next() >> 24) % 64);
        const int y0 = 2 + (label / 5) * 12, x0 = 2 + (label % 5) * 5;  // one 8x4 block per class
        for (int y = y0; y < y0 + 8; ++y)
            for (int x = x0; x < x0 + 4; ++x) img[y * 28 + x] = 255;
    }
    std::FILE* fi = std::fopen((dir + "/" + images).c_str(), "wb");
    std::FILE* fl = std::fopen((dir + "/" + labels).c_str(), "wb");
    if (!fi || !fl) return false;
    put32(fi, 0x803);
    put32(fi, static_cast<std::uint32_t>(n));
    put32(fi, 28);
    put32(fi, 28);
    std::fwrite(pixels.data(), 1, pixels.size(), fi);
    put32(fl, 0x801);
    put32(fl, static_cast<std::uint32_t>(n));
    std::fwrite(classes.data(), 1, classes.size(), fl);
    const bool ok = !std::ferror(fi) && !std::ferror(fl);
    std::fclose(fi);
    std::fclose(fl);
    return ok;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: make_idx DIR [TRAIN] [TEST]\n");
        return 2;
    }
    const int train = argc > 2 ? std::atoi(argv[2]) : 640, test = argc > 3 ? std::atoi(argv[3]) : 160;
    if (!write(argv[1], "train-images-idx3-ubyte", "train-labels-idx1-ubyte", train, 1) ||
        !write(argv[1], "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", test, 2)) {
        std::fprintf(stderr, "make_idx: cannot write into %s\n", argv[1]);
        return 1;
    }
    return 0;
}
