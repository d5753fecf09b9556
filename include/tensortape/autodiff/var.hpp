#pragma once
// Var<T>: a handle to a node of the graph: a value, and, for leaves that require it, an
// accumulated gradient. Copies share the node. A Var is also the leaf of every expression:
// `a * x + b` over Vars is an expression type (see expr.hpp) that becomes a Var when assigned.

#include <tensortape/autodiff/node.hpp>
#include <tensortape/core/tensor.hpp>

#include <functional>
#include <memory>
#include <string>
#include <type_traits>

namespace tensortape {

// Specialised to true by every expression node type (expr.hpp).
template <class E>
struct is_expression : std::false_type {};
template <class E>
concept Expression = is_expression<std::remove_cvref_t<E>>::value;

template <Floating T = float>
class Var {
public:
    using value_type = T;

    // An undefined Var (no node).
    Var() = default;

    // A leaf holding `value`; `requires_grad` makes it a trainable input (see param()).
    explicit Var(Tensor<T> value, bool requires_grad = false)
        : node_(std::make_shared<VarNode<T>>(std::move(value))) {
        if (!node_->value.defined()) fail<value_error>("Var", "cannot wrap an undefined tensor");
        node_->requires_grad = requires_grad;
    }

    // Evaluates an expression: one fused loop forward, one GradFn recorded for backward.
    // Defined in eval.hpp.
    template <Expression E>
        requires std::same_as<typename std::remove_cvref_t<E>::value_type, T>
    Var(const E& expr);  // NOLINT: implicit on purpose, `Var y = a * x + b;`

    bool defined() const { return node_ != nullptr; }
    const Tensor<T>& value() const { return node().value; }
    const Shape& shape() const { return node().value.shape(); }
    int rank() const { return node().value.rank(); }
    std::int64_t numel() const { return node().value.numel(); }
    T item() const { return node().value.item(); }

    // The value for in-place updates (optimizers, initialisers). Bumps the version, so a graph
    // that used the old value refuses to run backward instead of giving wrong gradients.
    Tensor<T>& mutable_value() {
        ++node().version;
        return node().value;
    }

    // The gradient accumulated by backward; undefined before the first backward that reached it.
    const Tensor<T>& grad() const { return node().grad; }
    bool has_grad() const { return node().grad.defined(); }
    // Drops the gradient; its memory goes back to the allocator cache for the next step.
    void zero_grad() { node().grad = Tensor<T>(); }
    // Replaces the gradient (gradient reducers, clipping); shape must match.
    void set_grad(Tensor<T> g) {
        if (g.defined() && g.shape() != shape())
            fail<shape_error>("set_grad", "gradient shape ", g.shape(), " differs from the value's shape ", shape());
        node().grad = std::move(g);
    }

    bool requires_grad() const { return node().requires_grad; }
    bool is_leaf() const { return node().is_leaf(); }
    void set_requires_grad(bool on) {
        if (!is_leaf()) fail<autodiff_error>("set_requires_grad", "only leaves can change requires_grad");
        node().requires_grad = on;
    }

    // f() runs during backward() right after this leaf's gradient is complete (see NodeBase);
    // an empty function removes the hook. One hook per leaf: a second call replaces the first.
    void set_grad_ready_hook(std::function<void()> f) {
        if (!is_leaf()) fail<autodiff_error>("set_grad_ready_hook", "only leaves have a gradient to be ready");
        node().grad_ready_hook = std::move(f);
    }

    const std::string& name() const { return node().name; }
    Var& set_name(std::string n) {
        node().name = std::move(n);
        return *this;
    }

    // For the engine and ops.
    VarNode<T>& node() const {
        if (!node_) fail<autodiff_error>("Var", "use of an undefined Var");
        return *node_;
    }
    const std::shared_ptr<VarNode<T>>& node_ptr() const { return node_; }
    explicit Var(std::shared_ptr<VarNode<T>> n) : node_(std::move(n)) {}

private:
    std::shared_ptr<VarNode<T>> node_;
};

template <Floating T>
Var(Tensor<T>) -> Var<T>;
template <Floating T>
Var(Tensor<T>, bool) -> Var<T>;
template <Expression E>
Var(const E&) -> Var<typename std::remove_cvref_t<E>::value_type>;

// A trainable leaf: gradients accumulate into it.
template <Floating T>
Var<T> param(Tensor<T> value) { return Var<T>(std::move(value), true); }

// A leaf that receives no gradient (inputs, targets).
template <Floating T>
Var<T> constant(Tensor<T> value) { return Var<T>(std::move(value), false); }

// The same value, cut from the graph: no gradient flows through the result.
template <Floating T>
Var<T> detach(const Var<T>& v) { return Var<T>(v.value(), false); }

// Produces a Var for the output of an op: a node with `fn` as its GradFn when any input needs a
// gradient and recording is on, else a plain constant.
template <Floating T>
Var<T> make_result(Tensor<T> value, std::unique_ptr<GradFnBase> fn) {
    Var<T> out(std::move(value), false);
    if (fn && grad_enabled()) {
        out.node().grad_fn = std::move(fn);
        out.node().requires_grad = true;
        out.node().seq = detail::next_seq();
    }
    return out;
}

template <Floating T>
std::ostream& operator<<(std::ostream& os, const Var<T>& v) {
    if (!v.defined()) return os << "Var(undefined)";
    return os << "Var(" << v.value() << (v.requires_grad() ? ", requires_grad" : "") << ')';
}

}  // namespace tensortape
