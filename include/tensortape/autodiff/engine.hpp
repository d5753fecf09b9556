#pragma once
// backward() and grad(): walk the runtime tape of one output.
//
// The tape is the set of GradFns reachable from the output, run in reverse creation order (a
// node is always created after its inputs, so that order is topological). It is collected with an
// explicit stack, never by recursion, and is short: one entry per evaluated expression or op.
// After the pass the graph is released (its saved inputs freed) unless retain_graph is set.

#include <tensortape/autodiff/var.hpp>

#include <algorithm>
#include <initializer_list>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace tensortape {

struct BackwardOptions {
    bool retain_graph = false;  // keep the graph so backward can run through it again
};

namespace detail {

struct Tape {
    struct Entry {
        NodeBase* node;
        std::uint32_t leaves_begin, leaves_end;  // its leaf inputs, in Tape::entry_leaves
    };
    std::vector<Entry> entries;           // nodes with a GradFn, latest first
    std::vector<NodeBase*> entry_leaves;  // leaf inputs of each entry, without repeats
    std::vector<NodeBase*> leaves;        // leaves that require a gradient
};

inline bool is_grad_leaf(const NodeBase* n) { return !n->grad_fn && !n->released && n->requires_grad; }

inline Tape collect_tape(NodeBase& root) {
    Tape tape;
    std::unordered_set<const NodeBase*> visited;
    std::vector<NodeBase*> stack{&root}, inputs;
    while (!stack.empty()) {
        NodeBase* n = stack.back();
        stack.pop_back();
        if (!visited.insert(n).second) continue;
        if (n->released)
            fail<autodiff_error>("backward", "the graph behind a value was already released by an earlier backward; "
                                             "pass BackwardOptions{.retain_graph = true} to the first one to run backward twice");
        if (n->grad_fn) {
            const auto begin = static_cast<std::uint32_t>(tape.entry_leaves.size());
            inputs.clear();
            n->grad_fn->inputs(inputs);
            for (NodeBase* in : inputs) {
                stack.push_back(in);
                if (is_grad_leaf(in) && std::find(tape.entry_leaves.begin() + begin, tape.entry_leaves.end(), in) == tape.entry_leaves.end())
                    tape.entry_leaves.push_back(in);
            }
            tape.entries.push_back({n, begin, static_cast<std::uint32_t>(tape.entry_leaves.size())});
        } else if (n->requires_grad) {
            tape.leaves.push_back(n);
        }
    }
    std::sort(tape.entries.begin(), tape.entries.end(), [](const Tape::Entry& a, const Tape::Entry& b) { return a.node->seq > b.node->seq; });
    return tape;
}

// Runs the tape; on return ctx holds the gradients of the leaves (and of `keep` nodes).
// after_entry(entry) is called once each entry has sent its gradient on.
template <Floating T, class AfterEntry>
void run_tape(const Var<T>& output, Tensor<T> seed, BackwardContext& ctx, const Tape& tape, const std::vector<const NodeBase*>& keep,
              bool retain_graph, AfterEntry&& after_entry) {
    ctx.accumulate<T>(output.node(), std::move(seed));
    // Freed GradFns are parked here until the pass ends: freeing one can free nodes that the
    // tape still points to.
    std::vector<std::unique_ptr<GradFnBase>> released;
    for (const Tape::Entry& e : tape.entries) {
        NodeBase* n = e.node;
        if (ctx.has(*n)) {
            n->grad_fn->backward(ctx, *n);
            if (std::find(keep.begin(), keep.end(), n) == keep.end()) ctx.release(*n);
        }
        if (!retain_graph) {
            released.push_back(std::move(n->grad_fn));
            n->released = true;
        }
        after_entry(e);
    }
}

template <Floating T>
Tensor<T> seed_for(const Var<T>& output, const Tensor<T>& gradient, const char* op) {
    if (!output.requires_grad())
        fail<autodiff_error>(op, "the output does not depend on anything that requires a gradient "
                                 "(no param() among its inputs, or it was computed under no_grad)");
    if (!gradient.defined()) {
        if (output.numel() != 1)
            fail<autodiff_error>(op, "the output has shape ", output.shape(),
                                 "; an implicit gradient needs a single value, pass the output's gradient explicitly");
        return ones<T>(output.shape());
    }
    if (gradient.shape() != output.shape())
        fail<shape_error>(op, "gradient of shape ", gradient.shape(), " for an output of shape ", output.shape());
    return gradient.clone();
}

}  // namespace detail

// Accumulates d(output)/d(leaf) into the .grad() of every leaf that requires a gradient.
// `gradient` seeds the pass (default: 1 for a single-value output).
//
// A leaf's gradient is stored as soon as the last tape entry that feeds it has run, and its
// grad_ready_hook (if any) is called then, while the rest of the pass goes on: a data-parallel
// reducer starts sending the last layer's gradient while the first layers' are still computed.
template <Floating T>
void backward(const Var<T>& output, const Tensor<T>& gradient = {}, BackwardOptions opts = {}) {
    Tensor<T> seed = detail::seed_for(output, gradient, "backward");
    BackwardContext ctx;
    const auto tape = detail::collect_tape(output.node());
    // Entries still to run per leaf; -1 once the leaf is done.
    std::unordered_map<const NodeBase*, int> pending;
    for (NodeBase* leaf : tape.leaves) pending[leaf] = 0;
    for (NodeBase* leaf : tape.entry_leaves) ++pending[leaf];
    auto finish = [&](NodeBase* leaf) {
        pending[leaf] = -1;
        auto& node = static_cast<VarNode<T>&>(*leaf);
        Tensor<T> g = ctx.take<T>(node);
        if (!g.defined()) return;
        if (!node.grad.defined()) node.grad = std::move(g);
        else detail::add_into(node.grad, g);
        if (node.grad_ready_hook) node.grad_ready_hook();
    };
    detail::run_tape(output, std::move(seed), ctx, tape, {}, opts.retain_graph, [&](const detail::Tape::Entry& e) {
        for (std::uint32_t i = e.leaves_begin; i < e.leaves_end; ++i)
            if (NodeBase* leaf = tape.entry_leaves[i]; --pending[leaf] == 0) finish(leaf);
    });
    // Leaves no entry feeds: the output itself, when it is a leaf.
    for (NodeBase* leaf : tape.leaves)
        if (pending[leaf] >= 0) finish(leaf);
}
template <Floating T>
void backward(const Var<T>& output, BackwardOptions opts) {
    backward(output, Tensor<T>{}, opts);
}

// d(output)/d(each of wrt), returned rather than accumulated: .grad() is left untouched. An input
// the output does not depend on gets zeros.
template <Floating T>
std::vector<Tensor<T>> grad(const Var<T>& output, std::initializer_list<Var<T>> wrt, const Tensor<T>& gradient = {},
                            BackwardOptions opts = {}) {
    Tensor<T> seed = detail::seed_for(output, gradient, "grad");
    BackwardContext ctx;
    std::vector<const NodeBase*> keep;
    for (const auto& w : wrt) keep.push_back(&w.node());
    const auto tape = detail::collect_tape(output.node());
    detail::run_tape(output, std::move(seed), ctx, tape, keep, opts.retain_graph, [](const detail::Tape::Entry&) {});
    std::vector<Tensor<T>> out;
    for (const auto& w : wrt) {
        Tensor<T> g = ctx.take<T>(w.node());
        out.push_back(g.defined() ? std::move(g) : zeros<T>(w.shape()));
    }
    return out;
}

}  // namespace tensortape
