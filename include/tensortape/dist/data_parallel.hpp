#pragma once
// DataParallel: the gradient reducer of data-parallel training. Every rank holds a replica of
// the model, runs forward and backward on its share of the batch, and calls synchronize()
// before the optimizer step; afterwards every rank's .grad() holds the average over the ranks,
// so the identical optimizer steps keep the replicas identical.
//
//   tt::dist::DataParallel<float> dp(comm, model.named_parameters());   // rank 0's values win
//   for (...) {
//       opt.zero_grad();
//       tt::backward(loss(model(x), y));   // buckets start reducing while backward runs
//       dp.synchronize();                  // waits for the rest, leaves averaged gradients
//       opt.step();
//   }
//
// How (the plan DDP, Horovod and Flashlight share): gradients are packed into contiguous buckets
// (25 MiB, the first 1 MiB, in reverse parameter order, because backward produces the last
// layer's gradient first). backward() calls a hook as each parameter's gradient is complete; when
// a bucket is full it is handed to the communicator's progress thread and reduced while backward
// goes on. Buckets start in bucket order on every rank, so the collectives match. After the
// reduction each parameter's .grad() is a view into its bucket: no copy back.
//
// Safety: at construction the ranks compare their parameter lists (names, shapes, types) and the
// options, and every rank reports the first difference, rather than summing mismatched buffers.
// A parameter that got no gradient in a step is an error naming it, unless declared in
// may_be_unused. A stalled rank shows up as a timeout naming the collective.
//
// deterministic = true fixes the order of the sum itself (MPI and NCCL choose theirs by message
// size and topology): each bucket is split into one part per rank, part j goes to rank j
// (all-to-all), rank j adds the parts in rank order, and an all-gather returns the sums. The
// result is then bit-identical to one process summing the ranks' gradients in rank order.
// Compression (bf16/fp16) takes the same path with 16-bit parts and adds in float.

#include <tensortape/autodiff/var.hpp>
#include <tensortape/dist/communicator.hpp>
#include <tensortape/dist/compression.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <sstream>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace tensortape::dist {

struct DataParallelOptions {
    std::size_t bucket_bytes = std::size_t{25} << 20;
    // Smaller, so that communication starts early in backward.
    std::size_t first_bucket_bytes = std::size_t{1} << 20;
    bool deterministic = false;
    Compression compression = Compression::none;
    // With compression: carry each step's rounding error into the next step.
    bool error_feedback = true;
    // Parameters that may get no gradient in a step (a branch not taken); they count as zeros.
    std::vector<std::string> may_be_unused;
    bool all_may_be_unused = false;
    // Copy rank 0's parameter values to every rank at construction.
    bool broadcast_parameters = true;
};

struct DataParallelStats {
    std::int64_t steps = 0;
    std::size_t bytes = 0;      // gradient bytes reduced, in the parameters' type
    double comm_seconds = 0;    // time the buckets spent in the progress thread
    double wait_seconds = 0;    // time synchronize() waited for them
    // The share of communication that overlapped with backward.
    double hidden_fraction() const { return comm_seconds > 0 ? std::clamp(1.0 - wait_seconds / comm_seconds, 0.0, 1.0) : 0.0; }
};

template <Floating T>
class DataParallel {
public:
    using NamedParams = std::vector<std::pair<std::string, Var<T>>>;

    DataParallel(Communicator& comm, NamedParams params, DataParallelOptions options = {}) : comm_(comm), o_(std::move(options)) {
        if (o_.bucket_bytes < sizeof(T) || o_.first_bucket_bytes < sizeof(T))
            fail<dist_error>("DataParallel", "bucket sizes must hold at least one element, got ", o_.bucket_bytes, " and ",
                             o_.first_bucket_bytes, " bytes");
        if (o_.compression != Compression::none && !std::is_same_v<T, float>)
            fail<dist_error>("DataParallel", "16-bit compression is for float gradients");
        std::unordered_set<const void*> seen;
        const std::unordered_set<std::string> unused(o_.may_be_unused.begin(), o_.may_be_unused.end());
        for (auto& [name, v] : params) {
            if (!v.defined() || !v.is_leaf() || !v.requires_grad())
                fail<dist_error>("DataParallel", "parameter '", name, "' is not a trainable leaf (make it with param())");
            if (!seen.insert(&v.node()).second) fail<dist_error>("DataParallel", "parameter '", name, "' appears twice");
            slots_.push_back(Slot{v, name, 0, 0, o_.all_may_be_unused || unused.count(name) > 0, false});
        }
        plan_buckets();
        verify_same_setup();
        if (o_.broadcast_parameters) broadcast_parameters();
        for (std::size_t i = 0; i < slots_.size(); ++i) slots_[i].var.set_grad_ready_hook([this, i] { on_ready(i); });
    }

    ~DataParallel() {
        for (auto& s : slots_) s.var.set_grad_ready_hook({});
        for (auto& b : buckets_)
            if (b.work.valid()) try {
                    b.work.wait();
                } catch (...) {
                }
    }
    DataParallel(const DataParallel&) = delete;
    DataParallel& operator=(const DataParallel&) = delete;

    Communicator& comm() const { return comm_; }
    int rank() const { return comm_.rank(); }
    int size() const { return comm_.size(); }
    const DataParallelOptions& options() const { return o_; }
    const DataParallelStats& stats() const { return stats_; }
    void reset_stats() { stats_ = {}; }
    // The parameter indices of each bucket, in the order the buckets are reduced.
    std::vector<std::vector<std::size_t>> bucket_plan() const {
        std::vector<std::vector<std::size_t>> out;
        for (auto& b : buckets_) out.push_back(b.slots);
        return out;
    }

    // Waits for every bucket and leaves in each parameter's .grad() the average of the ranks'
    // gradients. Call it after backward and before the optimizer step, on every rank.
    void synchronize() {
        if (no_sync_) fail<dist_error>("DataParallel::synchronize", "called inside a no_sync() scope");
        std::vector<std::string> missing;
        for (auto& s : slots_) {
            if (s.ready) continue;
            if (s.var.has_grad()) pack(s);  // a gradient that did not come from backward()
            else if (s.may_be_unused) zero(s);
            else {
                missing.push_back(s.name);
                continue;
            }
            s.ready = true;
            --buckets_[s.bucket].pending;
        }
        if (!missing.empty()) {
            // Buckets already under way must still finish, or the next collective would meet them.
            for (auto& b : buckets_)
                if (b.work.valid()) b.work.wait();
            reset_step();
            std::string list;
            for (std::size_t i = 0; i < missing.size() && i < 5; ++i) list += (i ? ", '" : "'") + missing[i] + "'";
            if (missing.size() > 5) list += " and " + std::to_string(missing.size() - 5) + " more";
            fail<dist_error>("DataParallel::synchronize", "on ", where(), ", parameter ", list,
                             " got no gradient in this step; if it may legitimately be unused, name it in DataParallelOptions::may_be_unused");
        }
        launch_ready();
        for (auto& b : buckets_) {
            const auto t0 = std::chrono::steady_clock::now();
            b.work.wait();
            stats_.wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            stats_.comm_seconds += b.work.seconds();
            stats_.bytes += b.numel * sizeof(T);
        }
        for (auto& s : slots_) {
            Bucket& b = buckets_[s.bucket];
            const auto off = static_cast<std::int64_t>(s.offset);
            s.var.set_grad(b.data.slice(0, off, off + s.var.numel()).reshape(s.var.shape()));
        }
        reset_step();
        ++stats_.steps;
    }

    // While alive, backward() only accumulates into .grad(); the next synchronize() reduces the
    // sum (gradient accumulation over several micro-batches).
    class NoSync {
    public:
        explicit NoSync(DataParallel& dp) : dp_(dp), previous_(dp.no_sync_) { dp.no_sync_ = true; }
        ~NoSync() { dp_.no_sync_ = previous_; }
        NoSync(const NoSync&) = delete;
        NoSync& operator=(const NoSync&) = delete;

    private:
        DataParallel& dp_;
        bool previous_;
    };
    [[nodiscard]] NoSync no_sync() { return NoSync(*this); }

    // Copies rank `root`'s values of t to every rank (for buffers such as running statistics).
    void broadcast(Tensor<T>& t, int root = 0) {
        if (!t.is_contiguous()) fail<dist_error>("DataParallel::broadcast", "needs a contiguous tensor, got strides ", t.strides());
        comm_.broadcast(t.span(), root);
    }

private:
    struct Slot {
        Var<T> var;
        std::string name;
        std::size_t bucket, offset;
        bool may_be_unused, ready;
    };
    struct Bucket {
        std::vector<std::size_t> slots;
        std::size_t numel = 0;  // padded to a multiple of the rank count
        Tensor<T> data;
        std::size_t pending = 0;
        Work work;
        // Scratch of the rank-ordered path, made on first use.
        std::vector<T> parts, sum, residual;
        std::vector<std::uint16_t> send16, parts16, sum16, all16;
    };

    std::string where() const { return "rank " + std::to_string(rank()) + " of " + std::to_string(size()); }

    void plan_buckets() {
        const auto n = static_cast<std::size_t>(size());
        Bucket current;
        std::size_t bytes = 0;
        auto close = [&] {
            if (current.slots.empty()) return;
            current.numel = (current.numel + n - 1) / n * n;
            current.data = zeros<T>({static_cast<std::int64_t>(std::max<std::size_t>(current.numel, 1))});
            buckets_.push_back(std::move(current));
            current = Bucket{};
            bytes = 0;
        };
        for (std::size_t i = slots_.size(); i-- > 0;) {
            const std::size_t cap = buckets_.empty() ? o_.first_bucket_bytes : o_.bucket_bytes;
            const std::size_t pbytes = static_cast<std::size_t>(slots_[i].var.numel()) * sizeof(T);
            if (!current.slots.empty() && bytes + pbytes > cap) close();
            slots_[i].bucket = buckets_.size();
            slots_[i].offset = current.numel;
            current.slots.push_back(i);
            current.numel += static_cast<std::size_t>(slots_[i].var.numel());
            bytes += pbytes;
        }
        close();
        reset_step();
    }

    void reset_step() {
        for (auto& s : slots_) s.ready = false;
        for (auto& b : buckets_) {
            b.pending = b.slots.size();
            b.work = Work{};
        }
        next_launch_ = 0;
    }

    // A fixed-size text per rank: what it has at the first place its list differs from rank 0's.
    static constexpr std::size_t note_bytes = 240;

    std::string describe(std::size_t i) const {
        if (i >= slots_.size()) return "no parameter";
        const Slot& s = slots_[i];
        std::ostringstream os;
        os << "'" << s.name << "' " << s.var.shape() << " " << type_name(type_of<T>());
        return os.str();
    }

    // Every rank learns rank 0's list (one broadcast), finds its first difference, and the
    // ranks exchange those (one all-gather), so all of them throw the same message.
    void verify_same_setup() {
        std::ostringstream os;
        os << "options: buckets " << o_.first_bucket_bytes << "/" << o_.bucket_bytes << " B, deterministic " << o_.deterministic << ", compression "
           << compression_name(o_.compression) << ", error feedback " << o_.error_feedback << "\n";
        for (std::size_t i = 0; i < slots_.size(); ++i) os << describe(i) << "\n";
        std::string mine = os.str();
        std::int64_t length = static_cast<std::int64_t>(mine.size());
        comm_.broadcast(std::span<std::int64_t>(&length, 1), 0);
        std::string theirs = rank() == 0 ? mine : std::string(static_cast<std::size_t>(length), '\0');
        comm_.broadcast(std::span<std::uint8_t>(reinterpret_cast<std::uint8_t*>(theirs.data()), theirs.size()), 0);

        auto lines = [](const std::string& text) {
            std::vector<std::string> out;
            std::size_t start = 0;
            for (std::size_t p; (p = text.find('\n', start)) != std::string::npos; start = p + 1) out.push_back(text.substr(start, p - start));
            return out;
        };
        const auto a = lines(theirs), b = lines(mine);
        std::int64_t differs = -1;  // line index; line 0 holds the options
        for (std::size_t i = 0; i < std::max(a.size(), b.size()); ++i)
            if (i >= a.size() || i >= b.size() || a[i] != b[i]) {
                differs = static_cast<std::int64_t>(i);
                break;
            }
        std::vector<std::int64_t> all(static_cast<std::size_t>(size()));
        comm_.all_gather(std::span<const std::int64_t>(&differs, 1), std::span<std::int64_t>(all));
        std::string note(note_bytes, '\0');
        if (differs >= 0) {
            const std::string text = static_cast<std::size_t>(differs) < b.size() ? b[static_cast<std::size_t>(differs)] : "no parameter";
            std::memcpy(note.data(), text.data(), std::min(text.size(), note_bytes - 1));
        }
        std::vector<std::uint8_t> notes(note_bytes * static_cast<std::size_t>(size()));
        comm_.all_gather(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(note.data()), note_bytes), std::span<std::uint8_t>(notes));
        for (int r = 1; r < size(); ++r) {
            const std::int64_t d = all[static_cast<std::size_t>(r)];
            if (d < 0) continue;
            const std::string other(reinterpret_cast<const char*>(notes.data()) + std::size_t(r) * note_bytes);
            const std::string base = static_cast<std::size_t>(d) < a.size() ? a[static_cast<std::size_t>(d)] : "no parameter";
            if (d == 0)
                fail<dist_error>("DataParallel", "ranks were set up differently: rank ", r, " has '", other, "' but rank 0 has '", base, "'");
            fail<dist_error>("DataParallel", "the parameter lists differ across ranks: parameter ", d - 1, " is ", other, " on rank ", r,
                             " but ", base, " on rank 0 (every rank must build the same model)");
        }
    }

    void broadcast_parameters() {
        // Through the buckets' memory: one collective per bucket, no extra buffer.
        for (auto& b : buckets_) {
            for (std::size_t i : b.slots) slots_[i].var.value().copy_to(b.data.data() + slots_[i].offset);
            comm_.broadcast(b.data.span(), 0);
            for (std::size_t i : b.slots) {
                Slot& s = slots_[i];
                const auto off = static_cast<std::int64_t>(s.offset);
                s.var.mutable_value().assign(b.data.slice(0, off, off + s.var.numel()).reshape(s.var.shape()));
            }
        }
    }

    // The engine sums in its own order, so the default path may as well divide by the rank count
    // while packing (as DDP's predivide does): no pass over the bucket after the reduction. The
    // rank-ordered path divides after its sum, as the single-process reference does.
    bool predivide() const { return !o_.deterministic && o_.compression == Compression::none && size() > 1; }

    void pack(const Slot& s) {
        T* dst = buckets_[s.bucket].data.data() + s.offset;
        const Tensor<T>& g = s.var.grad();
        const std::int64_t n = g.numel();
        const T f = T(1) / static_cast<T>(size());
        if (predivide() && g.is_contiguous() && g.data() != dst) {
            const T* src = g.data();
            for (std::int64_t i = 0; i < n; ++i) dst[i] = src[i] * f;
            return;
        }
        if (g.data() != dst || !g.is_contiguous()) g.copy_to(dst);
        if (predivide())
            for (std::int64_t i = 0; i < n; ++i) dst[i] *= f;
    }
    void zero(const Slot& s) {
        T* dst = buckets_[s.bucket].data.data() + s.offset;
        std::fill(dst, dst + s.var.numel(), T(0));
    }

    // Runs on the backward thread, from the leaf's hook.
    void on_ready(std::size_t i) {
        if (no_sync_) return;
        Slot& s = slots_[i];
        if (s.ready)
            fail<dist_error>("DataParallel", "parameter '", s.name,
                             "' received a second gradient before synchronize(); accumulate gradients inside no_sync()");
        pack(s);
        s.ready = true;
        if (--buckets_[s.bucket].pending == 0) launch_ready();
    }

    // Buckets start strictly in order, so every rank issues the same collectives in the same order
    // even when its backward finishes them in another.
    void launch_ready() {
        while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
            const std::size_t b = next_launch_++;
            buckets_[b].work = comm_.submit("the reduction of gradient bucket " + std::to_string(b) + " (" +
                                                format_bytes(buckets_[b].numel * sizeof(T)) + ")",
                                            [this, b] { reduce(buckets_[b]); });
        }
    }

    // On the progress thread.
    void reduce(Bucket& b) {
        const std::size_t n = static_cast<std::size_t>(size());
        T* data = b.data.data();
        if (o_.compression == Compression::none && !o_.deterministic) {
            comm_.all_reduce_sum(std::span<T>(data, b.numel));  // already divided while packing
        } else if (o_.compression == Compression::none) {
            const std::size_t part = b.numel / n;
            b.parts.resize(b.numel);
            b.sum.resize(part);
            comm_.all_to_all(std::span<const T>(data, b.numel), std::span<T>(b.parts));
            std::copy(b.parts.begin(), b.parts.begin() + static_cast<std::ptrdiff_t>(part), b.sum.begin());
            for (std::size_t r = 1; r < n; ++r)
                for (std::size_t j = 0; j < part; ++j) b.sum[j] += b.parts[r * part + j];
            for (std::size_t j = 0; j < part; ++j) b.sum[j] /= static_cast<T>(n);
            comm_.all_gather(std::span<const T>(b.sum), std::span<T>(data, b.numel));
        } else {
            const std::size_t part = b.numel / n;
            b.send16.resize(b.numel);
            b.parts16.resize(b.numel);
            b.sum.resize(part);
            b.sum16.resize(part);
            if (o_.error_feedback) b.residual.resize(b.numel, T(0));
            compress_with_feedback(o_.compression, data, o_.error_feedback ? b.residual.data() : nullptr, b.send16.data(), b.numel);
            comm_.all_to_all(std::span<const std::uint16_t>(b.send16), std::span<std::uint16_t>(b.parts16));
            for (std::size_t r = 0; r < n; ++r) decompress_into(o_.compression, b.parts16.data() + r * part, b.sum.data(), part, r > 0);
            // The average, not the sum, is rounded to 16 bits for the trip back: it cannot overflow
            // where the sum would.
            for (std::size_t j = 0; j < part; ++j) b.sum[j] /= static_cast<T>(n);
            compress_with_feedback<T>(o_.compression, b.sum.data(), nullptr, b.sum16.data(), part);
            comm_.all_gather(std::span<const std::uint16_t>(b.sum16), std::span<std::uint16_t>(b.send16));
            decompress_into(o_.compression, b.send16.data(), data, b.numel);
        }
    }

    Communicator& comm_;
    DataParallelOptions o_;
    std::vector<Slot> slots_;
    std::vector<Bucket> buckets_;
    std::size_t next_launch_ = 0;
    bool no_sync_ = false;
    DataParallelStats stats_;
};

}  // namespace tensortape::dist
