#pragma once
// Tensor memory. Blocks are 64-byte aligned (a cache line and an AVX-512 register) and come from a
// per-thread cache of freed blocks, keyed by a size class. A training step frees and allocates
// the same sizes every time, so after the first step every request is served from the cache: no
// allocator traffic and, more importantly, no page faults on fresh memory, which is where eager
// frameworks spend most of a large elementwise chain. This plays the role of a per-step arena
// without a reset point to get wrong: a tensor that outlives the step simply keeps its block.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <algorithm>
#include <new>
#include <unordered_map>
#include <vector>

namespace tensortape {

inline constexpr std::size_t alignment = 64;

struct AllocatorStats {
    std::size_t bytes_in_use = 0;    // held by live tensors allocated on this thread
    std::size_t bytes_cached = 0;    // freed blocks kept for reuse on this thread
    std::size_t peak_bytes = 0;      // high-water mark of in_use + cached on this thread
    std::uint64_t system_allocs = 0; // requests that reached the system allocator
    std::uint64_t cache_hits = 0;    // requests served from the cache
};

namespace detail {

// Size classes: 64-byte granularity up to 4 KiB, then four classes per power of two (at most 25%
// slack), so that slightly different sizes share blocks.
inline std::size_t size_class(std::size_t bytes) {
    if (bytes <= 4096) return (bytes + 63) & ~std::size_t(63);
    std::size_t p = std::size_t(1) << (63 - __builtin_clzll(bytes - 1));  // largest power of two < bytes
    const std::size_t step = p / 4;
    return (bytes + step - 1) / step * step;
}

// Set when the calling thread's cache has been destroyed (thread exit, static destruction), so
// that tensors freed after it go straight back to the system. A trivially destructible
// thread_local stays readable to the end.
inline thread_local bool cache_gone = false;

class BlockCache {
public:
    BlockCache() = default;
    BlockCache(const BlockCache&) = delete;
    BlockCache& operator=(const BlockCache&) = delete;
    ~BlockCache() {
        release();
        cache_gone = true;
    }

    void* allocate(std::size_t bytes) {
        const std::size_t cls = size_class(bytes == 0 ? 1 : bytes);
        auto it = free_.find(cls);
        void* p = nullptr;
        if (it != free_.end() && !it->second.empty()) {
            p = it->second.back();
            it->second.pop_back();
            stats_.bytes_cached -= cls;
            ++stats_.cache_hits;
        } else {
            p = std::aligned_alloc(alignment, cls);
            if (!p) throw std::bad_alloc();
            ++stats_.system_allocs;
        }
        stats_.bytes_in_use += cls;
        if (stats_.bytes_in_use + stats_.bytes_cached > stats_.peak_bytes)
            stats_.peak_bytes = stats_.bytes_in_use + stats_.bytes_cached;
        return p;
    }

    // A block may be freed on another thread than the one that allocated it; it then joins this
    // thread's cache. in_use is per thread, so it is only decremented when it does not underflow.
    void deallocate(void* p, std::size_t bytes) {
        const std::size_t cls = size_class(bytes == 0 ? 1 : bytes);
        stats_.bytes_in_use -= std::min(stats_.bytes_in_use, cls);
        if (stats_.bytes_cached + cls > limit_) {
            std::free(p);
            return;
        }
        free_[cls].push_back(p);
        stats_.bytes_cached += cls;
    }

    void release() {
        for (auto& [cls, blocks] : free_)
            for (void* p : blocks) std::free(p);
        free_.clear();
        stats_.bytes_cached = 0;
    }

    AllocatorStats stats() const { return stats_; }
    void set_limit(std::size_t bytes) {
        limit_ = bytes;
        if (stats_.bytes_cached > limit_) release();
    }

private:
    std::unordered_map<std::size_t, std::vector<void*>> free_;
    AllocatorStats stats_;
    std::size_t limit_ = std::size_t(4) << 30;
};

inline BlockCache& thread_cache() {
    thread_local BlockCache cache;
    return cache;
}

}  // namespace detail

// Allocation statistics of the calling thread.
inline AllocatorStats allocator_stats() { return detail::thread_cache().stats(); }

// Returns the calling thread's cached blocks to the system.
inline void release_cached_memory() { detail::thread_cache().release(); }

// Caps the bytes the calling thread keeps cached (default 4 GiB); beyond it, freed blocks go back
// to the system.
inline void set_cache_limit(std::size_t bytes) { detail::thread_cache().set_limit(bytes); }

inline void* allocate_bytes(std::size_t bytes) {
    if (detail::cache_gone) {
        void* p = std::aligned_alloc(alignment, detail::size_class(bytes == 0 ? 1 : bytes));
        if (!p) throw std::bad_alloc();
        return p;
    }
    return detail::thread_cache().allocate(bytes);
}
inline void deallocate_bytes(void* p, std::size_t bytes) {
    if (detail::cache_gone) return std::free(p);
    detail::thread_cache().deallocate(p, bytes);
}

}  // namespace tensortape
