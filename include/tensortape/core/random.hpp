#pragma once
// Seeded random numbers that give the same values on every platform and standard library
// (std::uniform_real_distribution does not promise that): xoshiro256** seeded by splitmix64,
// uniforms from the top mantissa bits, normals by Box-Muller.

#include <cmath>
#include <cstdint>
#include <numbers>

namespace tensortape {

class Generator {
public:
    explicit Generator(std::uint64_t seed = 0x5eed) { this->seed(seed); }

    void seed(std::uint64_t seed) {
        std::uint64_t x = seed;
        for (auto& s : s_) {
            x += 0x9e3779b97f4a7c15ULL;
            std::uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
            s = z ^ (z >> 31);
        }
        has_spare_ = false;
    }

    std::uint64_t next() {
        const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const std::uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

    // Uniform in [0, 1).
    double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

    // Uniform integer in [0, n).
    std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : static_cast<std::uint64_t>(uniform() * static_cast<double>(n)); }

    // Standard normal.
    double normal() {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        double u1 = uniform();
        while (u1 <= 0.0) u1 = uniform();
        const double u2 = uniform();
        const double r = std::sqrt(-2.0 * std::log(u1));
        spare_ = r * std::sin(2.0 * std::numbers::pi * u2);
        has_spare_ = true;
        return r * std::cos(2.0 * std::numbers::pi * u2);
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    std::uint64_t s_[4]{};
    double spare_ = 0.0;
    bool has_spare_ = false;
};

// The calling thread's default generator, used where no generator is passed.
inline Generator& default_generator() {
    thread_local Generator gen;
    return gen;
}

// Seeds the calling thread's default generator.
inline void manual_seed(std::uint64_t seed) { default_generator().seed(seed); }

}  // namespace tensortape
