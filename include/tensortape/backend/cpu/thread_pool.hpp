#pragma once
// A small persistent thread pool for data-parallel loops. Workers spin briefly after a job (the
// next kernel of a training step usually follows within microseconds) and then sleep on a
// condition variable, so an idle pool costs nothing and never fights another pool for the cores.
// Work is handed out in fixed chunks by an atomic counter; the caller takes chunks too, so a
// loop of one chunk never wakes a worker.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tensortape {

namespace detail {

class ThreadPool {
public:
    explicit ThreadPool(int threads) { resize(threads); }
    ~ThreadPool() { stop(); }

    int size() const { return static_cast<int>(workers_.size()) + 1; }

    void resize(int threads) {
        stop();
        stopping_ = false;
        for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
    }

    // Runs f(i) for i in [0, n). Concurrent callers (replica threads) do not queue behind each
    // other: whoever finds the pool busy runs its loop inline.
    void run(std::int64_t n, const std::function<void(std::int64_t)>& f) {
        if (n <= 0) return;
        std::unique_lock submit(submit_, std::try_to_lock);
        if (n == 1 || workers_.empty() || !submit.owns_lock() || inside_) {
            for (std::int64_t i = 0; i < n; ++i) f(i);
            return;
        }
        {
            std::lock_guard lk(m_);
            job_ = &f;
            n_ = n;
            next_.store(0);
            pending_.store(static_cast<int>(workers_.size()));
            ++generation_;
        }
        cv_.notify_all();
        inside_ = true;
        drain(f, n);
        inside_ = false;
        while (pending_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
        job_ = nullptr;
    }

private:
    void drain(const std::function<void(std::int64_t)>& f, std::int64_t n) {
        for (std::int64_t i = next_.fetch_add(1); i < n; i = next_.fetch_add(1)) f(i);
    }

    void work() {
        std::uint64_t seen = 0;
        while (true) {
            // Spin a little before sleeping: consecutive kernels arrive back to back.
            for (int spin = 0; spin < 20000 && generation_.load(std::memory_order_acquire) == seen && !stopping_; ++spin)
                std::this_thread::yield();
            std::unique_lock lk(m_);
            cv_.wait(lk, [&] { return generation_.load() != seen || stopping_; });
            if (stopping_) return;
            seen = generation_.load();
            const auto* job = job_;
            const std::int64_t n = n_;
            lk.unlock();
            inside_ = true;
            drain(*job, n);
            inside_ = false;
            pending_.fetch_sub(1, std::memory_order_release);
        }
    }

    void stop() {
        {
            std::lock_guard lk(m_);
            stopping_ = true;
        }
        cv_.notify_all();
        for (auto& t : workers_) t.join();
        workers_.clear();
    }

    std::vector<std::thread> workers_;
    std::mutex m_, submit_;
    std::condition_variable cv_;
    const std::function<void(std::int64_t)>* job_ = nullptr;
    std::int64_t n_ = 0;
    std::atomic<std::int64_t> next_{0};
    std::atomic<int> pending_{0};
    std::atomic<std::uint64_t> generation_{0};
    bool stopping_ = false;
    // Set on a thread while it runs chunks, so a kernel that calls parallel_for runs it inline.
    static inline thread_local bool inside_ = false;
};

inline int default_threads() {
    if (const char* env = std::getenv("TENSORTAPE_NUM_THREADS")) {
        const int n = std::atoi(env);
        if (n > 0) return n;
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw ? static_cast<int>(hw) : 1;
}

inline ThreadPool& pool() {
    static ThreadPool p(default_threads());
    return p;
}

}  // namespace detail

// Threads used by kernels (including the caller). Default: TENSORTAPE_NUM_THREADS, else the
// hardware threads. Call it between steps, not while kernels are running.
inline void set_num_threads(int n) { detail::pool().resize(n < 1 ? 1 : n); }
inline int num_threads() { return detail::pool().size(); }

// Runs f(i) for every i in [0, n), spread over the pool. Indices are handed out in contiguous
// blocks, several per thread (for balance), so a loop over thousands of small items (the planes
// of a pooling layer) does not pay an atomic increment and an indirect call per item.
template <class F>
void parallel_for(std::int64_t n, F&& f) {
    const std::int64_t threads = detail::pool().size();
    if (threads <= 1 || n <= 1) {
        for (std::int64_t i = 0; i < n; ++i) f(i);
        return;
    }
    const std::int64_t block = std::max<std::int64_t>(1, n / (threads * 8));
    const std::int64_t blocks = (n + block - 1) / block;
    const std::function<void(std::int64_t)> job = [&](std::int64_t b) {
        for (std::int64_t i = b * block, end = std::min(n, (b + 1) * block); i < end; ++i) f(i);
    };
    detail::pool().run(blocks, job);
}

}  // namespace tensortape
