#pragma once
// In-process replicas: N threads of one process, each with its own model, tape and optimizer,
// joined by communicators that share memory. Useful on its own (several replicas of a small
// model keep more cores busy than one) and as the test bed of everything data-parallel: the
// same reducer runs over threads, MPI and NCCL.
//
// A collective meets when every rank has called it. Each rank then does its share of the work
// for all ranks (rank r sums part r of every buffer, in rank order, and writes the result to
// every buffer), so the sums are the same on every run and the work is spread over the threads.
// Ranks that call different collectives, or the same one with different sizes, all get an error
// naming both calls.

#include <tensortape/dist/communicator.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace tensortape::dist {

namespace detail {

class ThreadGroupState {
public:
    explicit ThreadGroupState(int n) : n_(n), calls_(static_cast<std::size_t>(n)), joined_(static_cast<std::size_t>(n), false) {}

    int size() const { return n_; }

    void collective(int rank, const Call& call) {
        std::unique_lock lock(m_);
        // The previous collective must have finished on every rank before this one gathers.
        cv_.wait(lock, [&] { return !computing_ || !aborted_.empty(); });
        throw_if_aborted();
        calls_[static_cast<std::size_t>(rank)] = call;
        joined_[static_cast<std::size_t>(rank)] = true;
        const std::uint64_t generation = generation_;
        if (++arrived_ == n_) {
            mismatch_ = compare_calls();
            computing_ = true;
            cv_.notify_all();
        } else {
            cv_.wait(lock, [&] { return (computing_ && generation_ == generation) || !aborted_.empty(); });
            throw_if_aborted();
        }
        const std::string mismatch = mismatch_;
        lock.unlock();
        if (mismatch.empty()) do_part(rank);
        lock.lock();
        if (++finished_ == n_) {
            computing_ = false;
            arrived_ = finished_ = 0;
            std::fill(joined_.begin(), joined_.end(), false);
            ++generation_;
            if (!mismatch.empty()) aborted_ = mismatch;
            cv_.notify_all();
        } else {
            cv_.wait(lock, [&] { return generation_ != generation || !aborted_.empty(); });
        }
        if (!mismatch.empty()) fail<dist_error>("threads", mismatch);
        throw_if_aborted();
    }

    // Every rank waiting now, and every later collective, fails with `why`.
    void abort(const std::string& why) {
        std::lock_guard lock(m_);
        if (aborted_.empty()) aborted_ = why;
        cv_.notify_all();
    }

    std::string missing_ranks() const {
        std::lock_guard lock(m_);
        if (arrived_ == 0 || computing_) return {};
        std::string list;
        int missing = 0;
        for (int r = 0; r < n_; ++r)
            if (!joined_[static_cast<std::size_t>(r)]) {
                list += (missing++ ? ", " : "") + std::to_string(r);
            }
        int first = 0;
        while (!joined_[static_cast<std::size_t>(first)]) ++first;
        return (missing == 1 ? "rank " : "ranks ") + list + (missing == 1 ? " has" : " have") + " not joined the " +
               calls_[static_cast<std::size_t>(first)].describe() + " that rank " + std::to_string(first) + " waits in";
    }

private:
    void throw_if_aborted() const {
        if (!aborted_.empty()) fail<dist_error>("threads", "the replica group was aborted: ", aborted_);
    }

    std::string compare_calls() const {
        const Call& a = calls_[0];
        for (int r = 1; r < n_; ++r) {
            const Call& b = calls_[static_cast<std::size_t>(r)];
            if (a.op != b.op || a.type != b.type || a.count != b.count || a.root != b.root)
                return "ranks called different collectives: rank 0 called " + a.describe() + " but rank " + std::to_string(r) + " called " +
                       b.describe();
        }
        return {};
    }

    // [begin, end) of part `part` when `count` items are split over the ranks.
    std::pair<std::size_t, std::size_t> part_range(std::size_t count, int part) const {
        const std::size_t n = static_cast<std::size_t>(n_), p = static_cast<std::size_t>(part);
        return {count * p / n, count * (p + 1) / n};
    }

    template <class T>
    void sum_part(int rank) {
        constexpr std::size_t block = 1024;
        T tmp[block];
        const auto [begin, end] = part_range(calls_[0].count, rank);
        for (std::size_t i = begin; i < end; i += block) {
            const std::size_t len = std::min(block, end - i);
            const T* first = static_cast<const T*>(calls_[0].out) + i;
            std::copy(first, first + len, tmp);
            for (int r = 1; r < n_; ++r) {
                const T* src = static_cast<const T*>(calls_[static_cast<std::size_t>(r)].out) + i;
                for (std::size_t j = 0; j < len; ++j) tmp[j] += src[j];
            }
            for (int r = 0; r < n_; ++r) std::copy(tmp, tmp + len, static_cast<T*>(calls_[static_cast<std::size_t>(r)].out) + i);
        }
    }

    void do_part(int rank) {
        const Call& c = calls_[static_cast<std::size_t>(rank)];
        const std::size_t esize = size_of(c.type);
        switch (c.op) {
            case Op::all_reduce:
                if (c.type == Type::f32) sum_part<float>(rank);
                else if (c.type == Type::f64) sum_part<double>(rank);
                else if (c.type == Type::i64) sum_part<std::int64_t>(rank);
                else fail<dist_error>("all_reduce", "cannot sum ", type_name(c.type), " elements");
                break;
            case Op::broadcast: {
                const auto [begin, end] = part_range(c.count, rank);
                const auto* src = static_cast<const std::byte*>(calls_[static_cast<std::size_t>(c.root)].out);
                for (int r = 0; r < n_; ++r)
                    if (r != c.root && end > begin)
                        std::memcpy(static_cast<std::byte*>(calls_[static_cast<std::size_t>(r)].out) + begin * esize, src + begin * esize,
                                    (end - begin) * esize);
                break;
            }
            case Op::all_gather:
                for (int r = 0; r < n_; ++r)
                    if (c.count)
                        std::memcpy(static_cast<std::byte*>(calls_[static_cast<std::size_t>(r)].out) + std::size_t(rank) * c.count * esize, c.in,
                                    c.count * esize);
                break;
            case Op::all_to_all:
                for (int r = 0; r < n_; ++r)
                    if (c.count)
                        std::memcpy(static_cast<std::byte*>(calls_[static_cast<std::size_t>(r)].out) + std::size_t(rank) * c.count * esize,
                                    static_cast<const std::byte*>(c.in) + std::size_t(r) * c.count * esize, c.count * esize);
                break;
            case Op::barrier: break;
        }
    }

    const int n_;
    mutable std::mutex m_;
    std::condition_variable cv_;
    std::vector<Call> calls_;
    std::vector<bool> joined_;
    int arrived_ = 0, finished_ = 0;
    std::uint64_t generation_ = 0;
    bool computing_ = false;
    std::string mismatch_, aborted_;
};

}  // namespace detail

// One rank of a group of in-process replicas. Make them with make_thread_group().
class ThreadCommunicator final : public Communicator {
public:
    ThreadCommunicator(std::shared_ptr<detail::ThreadGroupState> group, int rank) : group_(std::move(group)), rank_(rank) { start(); }
    ~ThreadCommunicator() override { stop(); }

    int rank() const override { return rank_; }
    int size() const override { return group_->size(); }
    const char* backend() const override { return "threads"; }

    // Fails every collective of the group, now and later, with `why`: a replica that died should
    // not leave the others waiting.
    void abort_group(const std::string& why) { group_->abort(why); }

protected:
    void execute(const Call& call) override { group_->collective(rank_, call); }
    void on_timeout(const std::string& what) override { group_->abort(what); }
    std::string stall_details() const override { return group_->missing_ranks(); }

private:
    std::shared_ptr<detail::ThreadGroupState> group_;
    int rank_;
};

// n communicators that form one group; give one to each replica thread.
inline std::vector<std::unique_ptr<ThreadCommunicator>> make_thread_group(int n) {
    if (n < 1) fail<dist_error>("make_thread_group", "a group needs at least one rank, got ", n);
    auto state = std::make_shared<detail::ThreadGroupState>(n);
    std::vector<std::unique_ptr<ThreadCommunicator>> out;
    for (int r = 0; r < n; ++r) out.push_back(std::make_unique<ThreadCommunicator>(state, r));
    return out;
}

// Runs replica(comm) on n threads, one per rank, and waits for all of them. When a replica
// throws, the group is aborted so the others stop at their next collective instead of waiting
// for the one that died; the first error (by rank) that is not such an abort is rethrown.
template <class F>
void run_replicas(int n, F&& replica, double timeout_seconds = 300) {
    auto comms = make_thread_group(n);
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(n));
    std::vector<char> primary(static_cast<std::size_t>(n), 0);  // not vector<bool>: threads write side by side
    std::vector<std::thread> threads;
    for (int r = 0; r < n; ++r) {
        threads.emplace_back([&, r] {
            ThreadCommunicator& comm = *comms[static_cast<std::size_t>(r)];
            try {
                comm.set_timeout(timeout_seconds);
                replica(static_cast<Communicator&>(comm));
            } catch (const std::exception& e) {
                errors[static_cast<std::size_t>(r)] = std::current_exception();
                primary[static_cast<std::size_t>(r)] = std::string_view(e.what()).find("the replica group was aborted") == std::string_view::npos;
                comm.abort_group("rank " + std::to_string(r) + " failed: " + e.what());
            } catch (...) {
                errors[static_cast<std::size_t>(r)] = std::current_exception();
                primary[static_cast<std::size_t>(r)] = true;
                comm.abort_group("rank " + std::to_string(r) + " failed");
            }
        });
    }
    for (auto& t : threads) t.join();
    for (int pass = 0; pass < 2; ++pass)
        for (int r = 0; r < n; ++r)
            if (errors[static_cast<std::size_t>(r)] && (pass == 1 || primary[static_cast<std::size_t>(r)]))
                std::rethrow_exception(errors[static_cast<std::size_t>(r)]);
}

}  // namespace tensortape::dist
