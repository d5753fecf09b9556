#pragma once
// The optimizer base: the parameter list, the learning rate, the per-parameter state and the
// parts of a step every optimizer shares (skipping parameters without a gradient, refusing a
// non-finite gradient before anything is written, saving and restoring state).
//
// State tensors are Var constants so that an optimizer's update() can rewrite them in place with
// tensortape::update(), one fused loop per tensor and no allocation. They are created (as zeros)
// when a parameter joins, so state() has the same names from the first call on.

#include <tensortape/autodiff/eval.hpp>
#include <tensortape/autodiff/var.hpp>
#include <tensortape/core/error.hpp>
#include <tensortape/core/tensor.hpp>
#include <tensortape/ops/elementwise.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace tensortape::optim {

// Saved optimizer state: (name, tensor) pairs, e.g. ("step", 0-d), ("0.exp_avg", [3, 4]).
template <Floating T>
using StateDict = std::vector<std::pair<std::string, Tensor<T>>>;

namespace detail {

// Finds the first element that is NaN or Inf, by its row-major index. The scan tests exponent
// bits with an unsigned max, which vectorizes and has no branch per element; the index is only
// looked for once something was found.
template <Floating T>
std::optional<std::pair<std::int64_t, T>> first_nonfinite(const Tensor<T>& t) {
    using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    constexpr U exponent = sizeof(T) == 4 ? U(0x7f800000u) : U(0x7ff0000000000000ull);
    U worst = 0;
    if (t.is_contiguous()) {
        const T* p = t.data();
        for (std::int64_t i = 0, n = t.numel(); i < n; ++i) worst = std::max(worst, U(std::bit_cast<U>(p[i]) & exponent));
    } else {
        t.for_each([&](const T& x) { worst = std::max(worst, U(std::bit_cast<U>(x) & exponent)); });
    }
    if (worst != exponent) return std::nullopt;
    std::int64_t i = 0;
    std::optional<std::pair<std::int64_t, T>> found;
    t.for_each([&](const T& x) {
        if (!found && !std::isfinite(x)) found.emplace(i, x);
        ++i;
    });
    return found;
}

// Calls f with the gradient as an expression operand, plus weight_decay * p when it is set (L2
// regularization folded into the gradient, as PyTorch's non-decoupled weight decay does).
template <Floating T, class F>
void with_l2(const Var<T>& g, const Var<T>& p, double weight_decay, F&& f) {
    if (weight_decay != 0.0) f(g + static_cast<T>(weight_decay) * p);
    else f(g);
}

template <class Options>
Options with_lr(Options o, double lr) {
    o.lr = lr;
    return o;
}

inline void check_range(const char* op, const char* what, double v, double lo, bool lo_open, double hi, bool hi_open) {
    const bool ok = (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
    if (!ok) {
        std::ostringstream range;
        range << (lo_open ? '(' : '[') << lo << ", ";
        if (std::isinf(hi)) range << "inf)";
        else range << hi << (hi_open ? ')' : ']');
        fail<value_error>(op, what, " must be in ", range.str(), ", got ", v);
    }
}

}  // namespace detail

template <Floating T>
class Optimizer {
public:
    // Handles of the parameters: Vars share their nodes, so stepping these steps the model.
    // Parameters may be appended between steps; one whose shape changes is refused.
    std::vector<Var<T>> params;
    // The learning rate of the next step; schedulers write it.
    double lr;
    // On a NaN or Inf gradient, skip the whole step (and count it) instead of throwing. For
    // mixed-precision style training where an occasional overflow is expected.
    bool skip_nonfinite = false;
    std::int64_t skipped_steps = 0;

    virtual ~Optimizer() = default;
    // A copy would share its state buffers with the original; moving is fine (schedulers hold a
    // reference, so move an optimizer before making its scheduler).
    Optimizer(const Optimizer&) = delete;
    Optimizer& operator=(const Optimizer&) = delete;
    Optimizer(Optimizer&&) = default;
    Optimizer& operator=(Optimizer&&) = default;

    // "sgd", "adam", ...: the prefix of its error messages.
    const std::string& name() const { return name_; }
    // Steps applied so far (skipped ones not counted).
    std::int64_t step_count() const { return step_; }
    // Steps in which parameter i had a gradient; Adam's bias correction counts these.
    std::int64_t param_step(std::size_t i) const { return i < param_steps_.size() ? param_steps_[i] : 0; }

    virtual void step() {
        sync_state();
        // All gradients are checked before the first write, so a throw leaves the model and the
        // state as they were: the caller can lower the learning rate or skip the batch and go on.
        for (std::size_t i = 0; i < params.size(); ++i) {
            const Var<T>& p = params[i];
            if (!p.has_grad()) continue;
            const auto bad = detail::first_nonfinite(p.grad());
            if (!bad) continue;
            if (skip_nonfinite) {
                ++skipped_steps;
                return;
            }
            fail<value_error>(name_, "the gradient of parameter ", describe(i, true), " has a non-finite value (",
                              bad->second, " at element ", bad->first, ") at step ", step_ + 1,
                              "; the parameters and the optimizer state were left unchanged (set skip_nonfinite = true to skip such steps)");
        }
        ++step_;
        for (std::size_t i = 0; i < params.size(); ++i) {
            if (!params[i].has_grad()) continue;
            ++param_steps_[i];
            update(i, params[i]);
        }
    }

    void zero_grad() {
        for (auto& p : params) p.zero_grad();
    }

    // A copy of the state, independent of later steps: "step", then per parameter i "i.step" and
    // "i.<buffer>" in a fixed order. Every value is a tensor of T, so counts are exact up to 2^24
    // steps for float.
    StateDict<T> state() const {
        check_state();
        StateDict<T> out;
        out.reserve(1 + params.size() * (1 + slot_names_.size()));
        out.emplace_back("step", scalar_tensor<T>(static_cast<T>(step_)));
        for (std::size_t i = 0; i < params.size(); ++i) {
            const bool has = i < slots_.size();  // appended since the last step: still zeros
            out.emplace_back(key(i, "step"), scalar_tensor<T>(static_cast<T>(has ? param_steps_[i] : 0)));
            for (std::size_t k = 0; k < slot_names_.size(); ++k)
                out.emplace_back(key(i, slot_names_[k]), has ? slots_[i][k].value().clone() : zeros<T>(params[i].shape()));
        }
        return out;
    }

    // Restores what state() saved (from an optimizer of the same kind and options over parameters
    // of the same shapes). Everything is checked before anything is copied: on a missing, unknown
    // or duplicate name, a shape mismatch or a bad step count it throws and changes nothing.
    void load_state(const StateDict<T>& saved) {
        sync_state();
        struct Entry {
            Shape shape;
            std::size_t param;  // unused for "step"
            int slot;           // -1: the step count of `param`, -2: the global step count
            bool seen = false;
        };
        std::map<std::string, Entry> expected;
        expected.emplace("step", Entry{Shape{}, 0, -2});
        for (std::size_t i = 0; i < params.size(); ++i) {
            expected.emplace(key(i, "step"), Entry{Shape{}, i, -1});
            for (std::size_t k = 0; k < slot_names_.size(); ++k)
                expected.emplace(key(i, slot_names_[k]), Entry{params[i].shape(), i, static_cast<int>(k)});
        }
        std::vector<const Entry*> targets;
        targets.reserve(saved.size());
        for (const auto& [nm, t] : saved) {
            auto it = expected.find(nm);
            if (it == expected.end())
                fail<value_error>(name_, "load_state: unknown entry '", nm, "' (expected \"step\" and, for each of the ", params.size(),
                                  " parameters, \"<index>.\" followed by one of: ", slot_list(), "); the state was left unchanged");
            Entry& e = it->second;
            if (e.seen) fail<value_error>(name_, "load_state: entry '", nm, "' appears twice; the state was left unchanged");
            e.seen = true;
            if (!t.defined()) fail<value_error>(name_, "load_state: entry '", nm, "' is an undefined tensor; the state was left unchanged");
            if (t.shape() != e.shape)
                fail<shape_error>(name_, "load_state: entry '", nm, "' has shape ", t.shape(), ", expected ", e.shape,
                                  "; the state was left unchanged");
            if (e.slot < 0) {
                const T v = t.item();
                if (!(v >= T(0)) || std::trunc(v) != v || !(v < T(9.0e15)))
                    fail<value_error>(name_, "load_state: entry '", nm, "' must be a non-negative whole number, got ", v,
                                      "; the state was left unchanged");
            }
            targets.push_back(&e);
        }
        for (const auto& [nm, e] : expected)
            if (!e.seen) fail<value_error>(name_, "load_state: entry '", nm, "' is missing; the state was left unchanged");

        for (std::size_t j = 0; j < saved.size(); ++j) {
            const Entry& e = *targets[j];
            const Tensor<T>& t = saved[j].second;
            if (e.slot == -2) step_ = static_cast<std::int64_t>(t.item());
            else if (e.slot == -1) param_steps_[e.param] = static_cast<std::int64_t>(t.item());
            else slots_[e.param][static_cast<std::size_t>(e.slot)].mutable_value().assign(t);
        }
    }

protected:
    // `slots`: the names of the per-parameter buffers, each shaped like its parameter.
    Optimizer(std::string name, std::vector<Var<T>> ps, double learning_rate, std::vector<std::string> slots)
        : params(std::move(ps)), lr(learning_rate), name_(std::move(name)), slot_names_(std::move(slots)) {
        detail::check_range(name_.c_str(), "lr", lr, 0.0, false, std::numeric_limits<double>::infinity(), true);
        sync_state();
    }

    // Applies the step to parameter i, which has a finite gradient; param_step(i) already counts
    // this step.
    virtual void update(std::size_t i, Var<T>& p) = 0;

    // Buffer k (in the order given to the constructor) of parameter i.
    Var<T>& slot(std::size_t i, std::size_t k) { return slots_[i][k]; }

private:
    static std::string key(std::size_t i, const std::string& what) { return std::to_string(i) + "." + what; }

    // "'fc1.weight' (index 3)" or "3"; with the shape: "'fc1.weight' (index 3, shape [4, 2])".
    std::string describe(std::size_t i, bool with_shape = false) const {
        const std::string& n = params[i].name();
        std::ostringstream os;
        if (n.empty()) os << i << (with_shape ? " (" : "");
        else os << "'" << n << "' (index " << i << (with_shape ? ", " : ")");
        if (with_shape) os << "shape " << params[i].shape() << ")";
        return os.str();
    }

    std::string slot_list() const {
        std::string s = "step";
        for (const auto& n : slot_names_) s += ", " + n;
        return s;
    }

    // Refuses a parameter list the state no longer fits: a removed or reshaped parameter.
    void check_state() const {
        if (params.size() < shapes_.size())
            fail<value_error>(name_, "the optimizer has state for ", shapes_.size(), " parameters but holds ", params.size(),
                              "; parameters may be appended, not removed");
        for (std::size_t i = 0; i < shapes_.size(); ++i) {
            if (!params[i].defined()) fail<value_error>(name_, "parameter ", i, " is an undefined Var");
            if (params[i].shape() != shapes_[i])
                fail<shape_error>(name_, "parameter ", describe(i), " has shape ", params[i].shape(), " but its optimizer state has shape ",
                                  shapes_[i]);
        }
    }

    // Gives appended parameters their zeroed buffers, after checking the list.
    void sync_state() {
        check_state();
        if (params.size() == shapes_.size()) return;
        std::unordered_set<const void*> seen;
        for (std::size_t i = 0; i < params.size(); ++i) {
            if (!params[i].defined()) fail<value_error>(name_, "parameter ", i, " is an undefined Var");
            if (!seen.insert(params[i].node_ptr().get()).second)
                fail<value_error>(name_, "parameter ", describe(i), " appears more than once; it would be stepped twice");
            if (i >= shapes_.size() && !params[i].is_leaf())
                fail<value_error>(name_, "parameter ", describe(i), " is the result of an operation, not a leaf; only leaves can be optimized");
        }
        for (std::size_t i = shapes_.size(); i < params.size(); ++i) {
            std::vector<Var<T>> bufs;
            bufs.reserve(slot_names_.size());
            for (std::size_t k = 0; k < slot_names_.size(); ++k) bufs.push_back(constant(zeros<T>(params[i].shape())));
            slots_.push_back(std::move(bufs));
            param_steps_.push_back(0);
            shapes_.push_back(params[i].shape());
        }
    }

    std::string name_;
    std::vector<std::string> slot_names_;
    std::vector<std::vector<Var<T>>> slots_;
    std::vector<std::int64_t> param_steps_;
    std::vector<Shape> shapes_;  // of the parameters the state was made for
    std::int64_t step_ = 0;
};

}  // namespace tensortape::optim
