#pragma once
// The runtime half of the tape. A Var points to a node holding its value; a node produced by an
// evaluated expression or op also owns a GradFn: the typed closure that knows how to send the
// node's gradient to its inputs. GradFns hold their inputs' nodes, so the graph lives exactly as
// long as something can still call backward on it, and nothing is global: two threads build and
// differentiate their own graphs side by side.
//
// There is one node per evaluated expression, not per operation: `sigmoid(a * x + b) * x` is one
// node whose GradFn runs the whole expression's vector-Jacobian product in one fused loop.

#include <tensortape/core/tensor.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

namespace tensortape {

class BackwardContext;
struct NodeBase;

// How a node's gradient reaches its inputs.
struct GradFnBase {
    virtual ~GradFnBase() = default;
    virtual const char* name() const = 0;
    // Appends the input nodes that need a gradient.
    virtual void inputs(std::vector<NodeBase*>& out) const = 0;
    // Reads this node's gradient from ctx and adds the inputs' gradients to ctx.
    virtual void backward(BackwardContext& ctx, NodeBase& self) = 0;
};

struct NodeBase {
    virtual ~NodeBase() = default;

    std::unique_ptr<GradFnBase> grad_fn;  // null for leaves
    std::uint64_t seq = 0;                // creation order: a topological order of the graph
    std::uint64_t version = 0;            // bumped by in-place writes to the value
    bool requires_grad = false;
    bool released = false;                // its GradFn was freed by a backward pass
    std::string name;                     // optional, for error messages ("0.weight")
    // Leaves only: called by backward() as soon as this leaf's gradient for the pass is complete
    // and accumulated into .grad, while the rest of the pass is still running. Gradient reducers
    // use it to start communicating early (see dist/data_parallel.hpp).
    std::function<void()> grad_ready_hook;

    bool is_leaf() const { return !grad_fn && !released; }
};

template <Floating T>
struct VarNode final : NodeBase {
    Tensor<T> value;
    Tensor<T> grad;  // accumulated by backward into leaves; undefined until the first one

    explicit VarNode(Tensor<T> v) : value(std::move(v)) {}
};

namespace detail {

inline std::uint64_t next_seq() {
    static std::atomic<std::uint64_t> counter{0};
    return counter.fetch_add(1, std::memory_order_relaxed) + 1;
}

// acc += g, elementwise; acc is a contiguous gradient buffer of g's shape.
template <Floating T>
void add_into(Tensor<T>& acc, const Tensor<T>& g) {
    if (acc.shape() != g.shape())
        fail<autodiff_error>("backward", "gradient of shape ", g.shape(), " for a node of shape ", acc.shape());
    const Tensor<T> src = g.contiguous();
    T* d = acc.data();
    const T* s = src.data();
    for (std::int64_t i = 0, n = acc.numel(); i < n; ++i) d[i] += s[i];
}

inline bool& grad_mode() {
    thread_local bool enabled = true;
    return enabled;
}

}  // namespace detail

// Whether evaluated expressions record their GradFn on this thread.
inline bool grad_enabled() { return detail::grad_mode(); }

// While alive, nothing evaluated on this thread records a gradient (inference, optimizer steps).
class NoGradGuard {
public:
    NoGradGuard() : previous_(detail::grad_mode()) { detail::grad_mode() = false; }
    ~NoGradGuard() { detail::grad_mode() = previous_; }
    NoGradGuard(const NoGradGuard&) = delete;
    NoGradGuard& operator=(const NoGradGuard&) = delete;

private:
    bool previous_;
};

// Runs f with gradient recording off and returns its result.
template <class F>
decltype(auto) no_grad(F&& f) {
    NoGradGuard guard;
    return std::forward<F>(f)();
}

// Gradient buffers of one backward pass, one per node that receives a gradient.
class BackwardContext {
public:
    template <Floating T>
    struct Slot {
        Tensor<T>* tensor;  // the accumulated gradient
        bool fresh;         // just allocated and not initialised: the first writer may assign
    };

    // The gradient of `node`, or an undefined tensor when none reached it.
    template <Floating T>
    const Tensor<T>& grad_of(const NodeBase& node) const {
        static const Tensor<T> none;
        auto it = find(&node);
        if (!it || std::holds_alternative<std::monostate>(*it)) return none;
        return std::get<Tensor<T>>(*it);
    }

    // A buffer of `shape` to add the gradient of `node` into, allocated when it has none yet.
    // When `fresh`, its contents are undefined and the caller must assign, not add.
    template <Floating T>
    Slot<T> target(NodeBase& node, const Shape& shape) {
        auto& v = entry(&node);
        if (std::holds_alternative<std::monostate>(v)) {
            v = Tensor<T>(shape);
            return {&std::get<Tensor<T>>(v), true};
        }
        return {&std::get<Tensor<T>>(v), false};
    }

    // Adds g to the gradient of `node`; takes g over without copying when it is the first.
    template <Floating T>
    void accumulate(NodeBase& node, Tensor<T> g) {
        auto& v = entry(&node);
        if (std::holds_alternative<std::monostate>(v)) {
            v = std::move(g);
            return;
        }
        detail::add_into(std::get<Tensor<T>>(v), g);
    }

    // Takes the gradient of `node` out of the context (frees the slot).
    template <Floating T>
    Tensor<T> take(NodeBase& node) {
        auto* v = find(&node);
        if (!v || std::holds_alternative<std::monostate>(*v)) return {};
        Tensor<T> g = std::move(std::get<Tensor<T>>(*v));
        *v = std::monostate{};
        return g;
    }

    void release(const NodeBase& node) {
        if (auto* v = find(&node)) *v = std::monostate{};
    }

    bool has(const NodeBase& node) const {
        auto* v = find(&node);
        return v && !std::holds_alternative<std::monostate>(*v);
    }

private:
    using Any = std::variant<std::monostate, Tensor<float>, Tensor<double>>;

    Any* find(const NodeBase* n) const {
        auto it = slots_.find(n);
        return it == slots_.end() ? nullptr : const_cast<Any*>(&it->second);
    }
    // unordered_map never moves its elements, so a Slot stays valid while others are added.
    Any& entry(const NodeBase* n) { return slots_[n]; }

    std::unordered_map<const NodeBase*, Any> slots_;
};

}  // namespace tensortape
