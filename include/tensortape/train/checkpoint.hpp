#pragma once
// Model checkpoints in safetensors, under the model's PyTorch-style names (parameters and
// buffers), so weights exchange with PyTorch's state_dict. Writes are atomic (io/); loading
// checks every name, shape and dtype before it writes anything, so a bad file leaves the model
// as it was. ModelCheckpoint saves during fit().

#include <tensortape/io/npy.hpp>
#include <tensortape/io/safetensors.hpp>
#include <tensortape/nn/module.hpp>
#include <tensortape/optim/optimizer.hpp>
#include <tensortape/train/callbacks.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <set>
#include <string>

namespace tensortape::train {

template <Floating T>
void save_weights(const nn::Module<T>& model, const std::string& path) {
    std::vector<io::TensorEntry> entries;
    for (auto& [name, p] : model.named_parameters()) entries.push_back(io::entry(name, p.value()));
    for (auto& [name, b] : model.named_buffers()) entries.push_back(io::entry(name, b));
    io::save_safetensors(path, entries, {{"format", "pt"}, {"writer", "tensortape"}});
}

// Loads weights saved by save_weights or by PyTorch (safetensors.torch.save_file of a
// state_dict). strict: the file must hold exactly the model's names; otherwise extra tensors in
// the file are ignored (missing ones are always an error).
template <Floating T>
void load_weights(nn::Module<T>& model, const std::string& path, bool strict = true) {
    const io::SafetensorsFile file = io::load_safetensors(path);
    std::vector<std::pair<Tensor<T>, Tensor<T>>> writes;  // (destination, source), applied only when all check out
    std::set<std::string> wanted;
    auto plan = [&](const std::string& name, const Tensor<T>& dst) {
        wanted.insert(name);
        const io::TensorEntry* e = file.find(name);
        if (!e) fail<io::io_error>("load_weights", "'", path, "' has no tensor '", name, "' (shape ", dst.shape(), ")");
        if (e->shape != dst.shape())
            fail<io::io_error>("load_weights", "tensor '", name, "' in '", path, "' has shape ", e->shape, ", the model expects ", dst.shape());
        writes.emplace_back(dst, io::as_tensor<T>(*e));  // as_tensor checks the dtype
    };
    for (auto& [name, p] : model.named_parameters()) plan(name, p.value());
    for (auto& [name, b] : model.named_buffers()) plan(name, b);
    if (strict)
        for (const auto& e : file.tensors)
            if (!wanted.count(e.name)) fail<io::io_error>("load_weights", "'", path, "' holds '", e.name, "', which the model does not have");
    std::size_t i = 0;
    for (auto& [name, p] : model.named_parameters()) {
        p.mutable_value().assign(writes[i++].second);  // in place: optimizers keep their handles
    }
    for (auto& [name, b] : model.named_buffers()) b.assign(writes[i++].second);
}

// The same weights as one NumPy .npy file per tensor, `<dir>/<name>.npy` (dir must exist), for
// tools that read NumPy arrays.
template <Floating T>
void save_weights_npy(const nn::Module<T>& model, const std::string& dir) {
    for (auto& [name, p] : model.named_parameters()) io::save_npy(dir + "/" + name + ".npy", p.value());
    for (auto& [name, b] : model.named_buffers()) io::save_npy(dir + "/" + name + ".npy", b);
}

// Reads every tensor first and checks its shape; writes into the model only when all are good.
template <Floating T>
void load_weights_npy(nn::Module<T>& model, const std::string& dir) {
    std::vector<Tensor<T>> loaded;
    auto read = [&](const std::string& name, const Tensor<T>& dst) {
        Tensor<T> t = io::load_npy<T>(dir + "/" + name + ".npy");
        if (t.shape() != dst.shape())
            fail<io::io_error>("load_weights_npy", "'", dir, "/", name, ".npy' has shape ", t.shape(), ", the model expects ", dst.shape());
        loaded.push_back(std::move(t));
    };
    for (auto& [name, p] : model.named_parameters()) read(name, p.value());
    for (auto& [name, b] : model.named_buffers()) read(name, b);
    std::size_t i = 0;
    for (auto& [name, p] : model.named_parameters()) p.mutable_value().assign(loaded[i++]);
    for (auto& [name, b] : model.named_buffers()) b.assign(loaded[i++]);
}

// An optimizer's state (step counts, moment buffers) and learning rate, in safetensors, so that
// training can resume where it stopped. The optimizer's name goes into the metadata.
template <Floating T>
void save_optimizer(const optim::Optimizer<T>& opt, const std::string& path) {
    std::vector<io::TensorEntry> entries;
    for (const auto& [name, t] : opt.state()) entries.push_back(io::entry(name, t));
    char lr[64];
    std::snprintf(lr, sizeof lr, "%.17g", opt.lr);
    io::save_safetensors(path, entries, {{"optimizer", opt.name()}, {"lr", lr}, {"writer", "tensortape"}});
}

// Restores what save_optimizer wrote into an optimizer of the same kind over the same parameters;
// on any mismatch (kind, names, shapes, dtype) it throws and the optimizer is left as it was.
template <Floating T>
void load_optimizer(optim::Optimizer<T>& opt, const std::string& path) {
    const io::SafetensorsFile file = io::load_safetensors(path);
    const auto kind = file.metadata.find("optimizer");
    if (kind == file.metadata.end() || kind->second != opt.name())
        fail<io::io_error>("load_optimizer", "'", path, "' holds the state of ",
                           kind == file.metadata.end() ? std::string("no optimizer") : "'" + kind->second + "'", ", not of '", opt.name(), "'");
    optim::StateDict<T> state;
    for (const auto& e : file.tensors) state.emplace_back(e.name, io::as_tensor<T>(e));
    opt.load_state(state);
    if (const auto lr = file.metadata.find("lr"); lr != file.metadata.end()) opt.lr = std::strtod(lr->second.c_str(), nullptr);
}

// Saves the model after each epoch, or only when `monitor` improves (save_best_only).
template <Floating T>
class ModelCheckpoint : public Callback<T> {
public:
    bool rank_zero_only() const override { return true; }
    struct Options {
        std::string path;
        std::string monitor = "val_loss";
        bool save_best_only = true;
        Mode mode = Mode::automatic;
    };
    explicit ModelCheckpoint(Options o) : o_(std::move(o)) {
        maximize_ = o_.mode == Mode::max || (o_.mode == Mode::automatic && o_.monitor.find("acc") != std::string::npos);
    }
    void on_train_begin(nn::Module<T>&) override {
        best_ = maximize_ ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
    }
    bool on_epoch_end(int, const Logs& logs, nn::Module<T>& model) override {
        if (!o_.save_best_only) {
            save_weights(model, o_.path);
            return false;
        }
        auto it = logs.find(o_.monitor);
        if (it == logs.end()) fail<value_error>("ModelCheckpoint", "monitored value '", o_.monitor, "' is not among this epoch's figures");
        if (maximize_ ? it->second > best_ : it->second < best_) {
            best_ = it->second;
            save_weights(model, o_.path);
            ++saves_;
        }
        return false;
    }
    int saves() const { return saves_; }

private:
    Options o_;
    bool maximize_ = false;
    double best_ = 0;
    int saves_ = 0;
};

}  // namespace tensortape::train
