#pragma once
// Communicator: the collectives data-parallel training needs (all-reduce, broadcast, all-gather,
// all-to-all, barrier) over some engine: threads of one process (thread_group.hpp), MPI
// (mpi.hpp) or NCCL (nccl.hpp). We never move bytes between processes ourselves.
//
// Every collective of a communicator runs on its own progress thread, one at a time, in the order
// they were submitted. That gives two things: a collective can run while the caller keeps
// computing (the gradient reducer sends one bucket while backward produces the next), and the
// engine is only ever entered from one thread (MPI_THREAD_SERIALIZED is enough).
//
// All ranks must call the same collectives in the same order with the same sizes, as with MPI.
// A rank that waits longer than timeout() for a collective gets a dist_error naming it, instead
// of hanging.

#include <tensortape/core/error.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

namespace tensortape::dist {

// Failures of communication: a timeout, ranks that disagree, an engine error.
class dist_error : public error {
public:
    using error::error;
};

// Element types that travel. u16 carries compressed (bf16/fp16) payloads, which are only moved,
// never summed by an engine.
enum class Type : std::uint8_t { f32, f64, i64, u8, u16 };

template <class T>
constexpr Type type_of() {
    if constexpr (std::is_same_v<T, float>) return Type::f32;
    else if constexpr (std::is_same_v<T, double>) return Type::f64;
    else if constexpr (std::is_same_v<T, std::int64_t>) return Type::i64;
    else if constexpr (std::is_same_v<T, std::uint8_t>) return Type::u8;
    else if constexpr (std::is_same_v<T, std::uint16_t>) return Type::u16;
    else static_assert(sizeof(T) == 0, "tensortape: dist: unsupported element type");
}

constexpr std::size_t size_of(Type t) {
    switch (t) {
        case Type::f32: return 4;
        case Type::f64: return 8;
        case Type::i64: return 8;
        case Type::u8: return 1;
        case Type::u16: return 2;
    }
    return 0;
}

constexpr const char* type_name(Type t) {
    switch (t) {
        case Type::f32: return "float32";
        case Type::f64: return "float64";
        case Type::i64: return "int64";
        case Type::u8: return "uint8";
        case Type::u16: return "16-bit";
    }
    return "?";
}

enum class Op : std::uint8_t { all_reduce, broadcast, all_gather, all_to_all, barrier };

constexpr const char* op_name(Op op) {
    switch (op) {
        case Op::all_reduce: return "all_reduce";
        case Op::broadcast: return "broadcast";
        case Op::all_gather: return "all_gather";
        case Op::all_to_all: return "all_to_all";
        case Op::barrier: return "barrier";
    }
    return "?";
}

// "1.5 MiB", "640 B": sizes in messages.
inline std::string format_bytes(std::size_t bytes) {
    char buf[32];
    if (bytes < 1024) std::snprintf(buf, sizeof buf, "%zu B", bytes);
    else if (bytes < (std::size_t{1} << 20)) std::snprintf(buf, sizeof buf, "%.1f KiB", double(bytes) / 1024.0);
    else std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / double(1 << 20));
    return buf;
}

// One collective as the engine sees it: count is per rank (all_gather/all_to_all move size()
// times count elements in total).
struct Call {
    Op op;
    Type type = Type::u8;
    std::size_t count = 0;
    int root = 0;
    const void* in = nullptr;  // all_gather, all_to_all
    void* out = nullptr;       // all of them, in place for all_reduce and broadcast

    std::string describe() const {
        std::string s = op_name(op);
        if (op != Op::barrier) s += " of " + std::to_string(count) + " " + type_name(type) + " (" + format_bytes(count * size_of(type)) + ")";
        if (op == Op::broadcast) s += " from rank " + std::to_string(root);
        return s;
    }
};

class Communicator;

// A handle to work queued on a communicator's progress thread. It refers to its communicator,
// so it must not outlive it.
class Work {
public:
    Work() = default;
    bool valid() const { return state_ != nullptr; }
    bool done() const {
        std::lock_guard lock(state_->m);
        return state_->done;
    }
    // Blocks until the work is done and rethrows its error; after the communicator's timeout,
    // throws a dist_error naming the collective it is stuck in. The work itself goes on, so a
    // later wait() can still succeed once a slow rank catches up.
    inline void wait() const;
    // Seconds between the start and the end of the work on the progress thread (0 until done).
    double seconds() const {
        std::lock_guard lock(state_->m);
        return state_->seconds;
    }

private:
    friend class Communicator;
    struct State {
        std::string label;
        std::function<void()> job;
        mutable std::mutex m;
        std::condition_variable cv;
        bool done = false;
        std::exception_ptr error;
        double seconds = 0;
    };
    Work(std::shared_ptr<State> s, Communicator* c) : state_(std::move(s)), comm_(c) {}
    std::shared_ptr<State> state_;
    Communicator* comm_ = nullptr;
};

class Communicator {
public:
    virtual ~Communicator() = default;
    Communicator(const Communicator&) = delete;
    Communicator& operator=(const Communicator&) = delete;

    virtual int rank() const = 0;
    virtual int size() const = 0;
    virtual const char* backend() const = 0;  // "threads", "mpi", "nccl"

    // Seconds a rank waits for a collective before giving up with an error (default 300).
    double timeout() const { return timeout_s_; }
    void set_timeout(double seconds) {
        if (!(seconds > 0)) fail<dist_error>("set_timeout", "the timeout must be positive, got ", seconds, " s");
        timeout_s_ = seconds;
    }

    // Queues job on the progress thread. Inside it, the collectives below run directly.
    Work submit(std::string label, std::function<void()> job) {
        auto s = std::make_shared<Work::State>();
        s->label = std::move(label);
        s->job = std::move(job);
        {
            std::lock_guard lock(m_);
            if (stopping_) fail<dist_error>("submit", "the communicator is shutting down");
            queue_.push_back(s);
        }
        cv_.notify_all();
        return Work(std::move(s), this);
    }

    // Collectives. From any thread they queue and wait; on the progress thread (inside a
    // submitted job) they run at once.
    template <class T>
    void all_reduce_sum(std::span<T> x) {
        static_assert(std::is_floating_point_v<T> || std::is_same_v<T, std::int64_t>, "all_reduce_sum needs a numeric type");
        run(Call{Op::all_reduce, type_of<T>(), x.size(), 0, nullptr, x.data()});
    }
    // The mean over the ranks: the sum, then one division by size() on every rank (the engines
    // have no mean operation of their own).
    template <class T>
    void all_reduce_average(std::span<T> x) {
        static_assert(std::is_floating_point_v<T>, "all_reduce_average needs a floating-point type");
        all_reduce_sum(x);
        const T n = static_cast<T>(size());
        for (T& v : x) v /= n;
    }
    template <class T>
    void broadcast(std::span<T> x, int root) {
        check_root("broadcast", root);
        run(Call{Op::broadcast, type_of<T>(), x.size(), root, nullptr, x.data()});
    }
    // out = the `in` of rank 0, then of rank 1, ...; out.size() == size() * in.size().
    template <class T>
    void all_gather(std::span<const T> in, std::span<T> out) {
        check_parts("all_gather", in.size(), out.size());
        run(Call{Op::all_gather, type_of<T>(), in.size(), 0, in.data(), out.data()});
    }
    // in holds size() equal parts, part j for rank j; out receives part rank() of every rank,
    // in rank order.
    template <class T>
    void all_to_all(std::span<const T> in, std::span<T> out) {
        if (in.size() % static_cast<std::size_t>(size()) != 0)
            fail<dist_error>("all_to_all", "the input of ", in.size(), " elements does not split into ", size(), " equal parts");
        check_parts("all_to_all", in.size() / static_cast<std::size_t>(size()), out.size());
        run(Call{Op::all_to_all, type_of<T>(), in.size() / static_cast<std::size_t>(size()), 0, in.data(), out.data()});
    }
    void barrier() { run(Call{Op::barrier}); }

    // The collective the progress thread is in now, for stall messages.
    std::string current_collective() const {
        std::lock_guard lock(m_);
        return current_;
    }

protected:
    Communicator() = default;

    // The engine's collective. Called only on the progress thread, one at a time.
    virtual void execute(const Call& call) = 0;
    // Called when a wait timed out: a backend that can, releases the ranks stuck with this one.
    virtual void on_timeout(const std::string& /*what*/) {}
    // More about a stall, when the backend knows it ("rank 2 has not joined").
    virtual std::string stall_details() const { return {}; }

    // Backends call start() at the end of their constructor and stop() at the start of their
    // destructor, so the progress thread never runs while the derived object is incomplete.
    void start() { thread_ = std::thread([this] { progress_loop(); }); }
    // Drains the queue and ends the progress thread. Returns false when the thread is still
    // stuck in an engine call one timeout after an earlier timeout: it is then detached, and the
    // backend should end the process (MPI_Abort) rather than hang in its own shutdown.
    bool stop() {
        std::unique_lock lock(m_);
        stopping_ = true;
        cv_.notify_all();
        if (!thread_.joinable()) return true;
        bool finished = true;
        if (stuck_) finished = cv_.wait_for(lock, std::chrono::duration<double>(timeout_s_.load()), [&] { return exited_; });
        else cv_.wait(lock, [&] { return exited_; });
        lock.unlock();
        if (finished) thread_.join();
        else thread_.detach();
        return finished;
    }
    std::string where() const { return "rank " + std::to_string(rank()) + " of " + std::to_string(size()) + " (" + backend() + ")"; }

private:
    friend class Work;

    void check_root(const char* op, int root) const {
        if (root < 0 || root >= size()) fail<dist_error>(op, "root ", root, " is not a rank of a group of ", size());
    }
    void check_parts(const char* op, std::size_t part, std::size_t out) const {
        if (out != part * static_cast<std::size_t>(size()))
            fail<dist_error>(op, "the output has ", out, " elements; ", size(), " ranks x ", part, " = ", part * static_cast<std::size_t>(size()),
                             " were expected");
    }

    void run(const Call& call) {
        if (std::this_thread::get_id() == thread_.get_id()) {
            const std::string what = "#" + std::to_string(++calls_) + " " + call.describe();
            {
                std::lock_guard lock(m_);
                current_ = what;
            }
            execute(call);
            std::lock_guard lock(m_);
            current_.clear();
            return;
        }
        submit(call.describe(), [this, call] { run(call); }).wait();
    }

    void progress_loop() {
        for (;;) {
            std::shared_ptr<Work::State> s;
            {
                std::unique_lock lock(m_);
                cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
                if (queue_.empty()) {
                    exited_ = true;
                    cv_.notify_all();
                    return;
                }
                s = std::move(queue_.front());
                queue_.pop_front();
            }
            const auto t0 = std::chrono::steady_clock::now();
            std::exception_ptr err;
            try {
                s->job();
            } catch (...) {
                err = std::current_exception();
            }
            std::lock_guard lock(s->m);
            s->done = true;
            s->error = err;
            s->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            s->cv.notify_all();
        }
    }

    [[noreturn]] void timed_out(const Work::State& s) {
        stuck_ = true;
        char waited[32];
        std::snprintf(waited, sizeof waited, "%g", timeout_s_.load());
        std::string msg = where() + " waited " + waited + " s for " + s.label;
        const std::string cur = current_collective();
        if (!cur.empty()) msg += "; it is stuck in collective " + cur;
        const std::string details = stall_details();
        msg += details.empty() ? "; another rank has stalled, exited, or called a different collective" : "; " + details;
        on_timeout(msg);
        fail<dist_error>("timeout", msg);
    }

    mutable std::mutex m_;
    std::condition_variable cv_;
    std::deque<std::shared_ptr<Work::State>> queue_;
    std::thread thread_;
    bool stopping_ = false;
    bool exited_ = false;
    std::atomic<bool> stuck_{false};
    std::string current_;
    std::uint64_t calls_ = 0;  // progress thread only
    std::atomic<double> timeout_s_{300};  // read by waiting threads, set by the owner
};

inline void Work::wait() const {
    if (!state_) fail<dist_error>("wait", "waiting on an empty Work handle");
    std::unique_lock lock(state_->m);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(comm_->timeout());
    if (!state_->cv.wait_until(lock, deadline, [&] { return state_->done; })) {
        lock.unlock();
        comm_->timed_out(*state_);
    }
    if (state_->error) std::rethrow_exception(state_->error);
}

}  // namespace tensortape::dist
