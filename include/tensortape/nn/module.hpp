#pragma once
// Module: a layer or a network of layers. A module owns named parameters (trainable Vars),
// named buffers (state that is saved but not trained, such as BatchNorm's running statistics)
// and named children; names compose like PyTorch's ("0.weight", "conv1.bias"), so checkpoints
// exchange with PyTorch under the same names. Parameters are Var handles: copies share the
// node, so an optimizer holding them updates the model.

#include <tensortape/autodiff/var.hpp>
#include <tensortape/core/tensor.hpp>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace tensortape::nn {

template <Floating T = float>
class Module {
public:
    using value_type = T;

    virtual ~Module() = default;
    Module() = default;
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;

    virtual Var<T> forward(const Var<T>& x) = 0;
    Var<T> operator()(const Var<T>& x) { return forward(x); }

    // A short description for summaries ("Conv2D(1, 32, kernel 3x3, relu)").
    virtual std::string describe() const = 0;

    // Every parameter, depth first, with its dotted name.
    std::vector<std::pair<std::string, Var<T>>> named_parameters() const {
        std::vector<std::pair<std::string, Var<T>>> out;
        collect_parameters("", out);
        return out;
    }
    std::vector<Var<T>> parameters() const {
        std::vector<Var<T>> out;
        for (auto& [name, p] : named_parameters()) out.push_back(p);
        return out;
    }
    std::vector<std::pair<std::string, Tensor<T>>> named_buffers() const {
        std::vector<std::pair<std::string, Tensor<T>>> out;
        collect_buffers("", out);
        return out;
    }
    std::int64_t parameter_count() const {
        std::int64_t n = 0;
        for (auto& [name, p] : named_parameters()) n += p.numel();
        return n;
    }

    // Training mode (dropout active, batch statistics) or evaluation mode, for the whole tree.
    void train(bool on = true) {
        training_ = on;
        for (auto& [name, child] : children_) child->train(on);
    }
    void eval() { train(false); }
    bool training() const { return training_; }

    void zero_grad() {
        for (auto& [name, p] : named_parameters()) p.zero_grad();
    }

    const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

protected:
    Var<T> register_parameter(std::string name, Tensor<T> init) {
        Var<T> p = param(std::move(init));
        p.set_name(name);
        params_.emplace_back(std::move(name), p);
        return p;
    }
    Tensor<T> register_buffer(std::string name, Tensor<T> init) {
        buffers_.emplace_back(std::move(name), init);
        return init;
    }
    template <class M>
    std::shared_ptr<M> register_module(std::string name, std::shared_ptr<M> m) {
        children_.emplace_back(std::move(name), m);
        return m;
    }

private:
    void collect_parameters(const std::string& prefix, std::vector<std::pair<std::string, Var<T>>>& out) const {
        for (auto& [name, p] : params_) out.emplace_back(prefix + name, p);
        for (auto& [name, child] : children_) child->collect_parameters(prefix + name + ".", out);
    }
    void collect_buffers(const std::string& prefix, std::vector<std::pair<std::string, Tensor<T>>>& out) const {
        for (auto& [name, b] : buffers_) out.emplace_back(prefix + name, b);
        for (auto& [name, child] : children_) child->collect_buffers(prefix + name + ".", out);
    }

    std::vector<std::pair<std::string, Var<T>>> params_;
    std::vector<std::pair<std::string, Tensor<T>>> buffers_;
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
    bool training_ = true;
};

}  // namespace tensortape::nn
