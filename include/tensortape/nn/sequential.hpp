#pragma once
// Sequential: layers applied in order, named "0", "1", ... like PyTorch's nn.Sequential.

#include <tensortape/nn/module.hpp>

#include <memory>
#include <sstream>
#include <string>

namespace tensortape::nn {

template <Floating T = float>
class Sequential : public Module<T> {
public:
    // Appends a layer built in place: `model.add<Dense>(1600, 128, Activation::relu)`.
    template <template <class> class Layer, class... Args>
    Layer<T>& add(Args&&... args) {
        return add(std::make_shared<Layer<T>>(std::forward<Args>(args)...));
    }
    template <class M>
        requires std::derived_from<M, Module<T>>
    M& add(std::shared_ptr<M> layer) {
        layers_.push_back(layer);
        this->register_module(std::to_string(layers_.size() - 1), layer);
        return *layer;
    }

    Var<T> forward(const Var<T>& x) override {
        Var<T> h = x;
        for (auto& l : layers_) h = l->forward(h);
        return h;
    }
    std::string describe() const override {
        std::ostringstream os;
        os << "Sequential(\n";
        for (std::size_t i = 0; i < layers_.size(); ++i) os << "  (" << i << ") " << layers_[i]->describe() << "\n";
        os << ")";
        return os.str();
    }
    std::size_t size() const { return layers_.size(); }
    Module<T>& operator[](std::size_t i) { return *layers_.at(i); }

private:
    std::vector<std::shared_ptr<Module<T>>> layers_;
};

}  // namespace tensortape::nn
