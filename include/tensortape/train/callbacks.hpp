#pragma once
// Callbacks run by fit() at the end of each epoch: EarlyStopping and CSVLogger here,
// ModelCheckpoint in checkpoint.hpp (it writes files through io/).

#include <tensortape/nn/module.hpp>
#include <tensortape/train/history.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

namespace tensortape::train {

template <Floating T>
class Callback {
public:
    virtual ~Callback() = default;
    virtual void on_train_begin(nn::Module<T>&) {}
    // Returns true to stop training after this epoch.
    virtual bool on_epoch_end(int /*epoch*/, const Logs&, nn::Module<T>&) { return false; }
    virtual void on_train_end(nn::Module<T>&, History&) {}
    // In data-parallel training every rank runs the callbacks (they see the same averaged logs,
    // so early stopping decides alike everywhere), except those that write files: only rank 0
    // runs a callback that returns true here.
    virtual bool rank_zero_only() const { return false; }
};

// A copy of a model's parameters and buffers, to go back to.
template <Floating T>
struct Weights {
    std::vector<Tensor<T>> params, buffers;

    static Weights capture(const nn::Module<T>& m) {
        Weights w;
        for (auto& [name, p] : m.named_parameters()) w.params.push_back(p.value().clone());
        for (auto& [name, b] : m.named_buffers()) w.buffers.push_back(b.clone());
        return w;
    }
    // Writes the copy back in place, so optimizers holding the parameters see it.
    void restore(nn::Module<T>& m) const {
        std::size_t i = 0;
        for (auto& [name, p] : m.named_parameters()) p.mutable_value().assign(params.at(i++));
        i = 0;
        for (auto& [name, b] : m.named_buffers()) b.assign(buffers.at(i++));
    }
};

enum class Mode { automatic, min, max };

// Stops when `monitor` has not improved by more than min_delta for `patience` epochs; with
// restore_best_weights, the model ends with the weights of its best epoch (Keras semantics).
template <Floating T>
class EarlyStopping : public Callback<T> {
public:
    struct Options {
        std::string monitor = "val_loss";
        int patience = 0;
        double min_delta = 0.0;
        bool restore_best_weights = false;
        Mode mode = Mode::automatic;  // automatic: maximise names containing "acc", else minimise
    };
    explicit EarlyStopping(Options o) : o_(std::move(o)) {
        maximize_ = o_.mode == Mode::max || (o_.mode == Mode::automatic && o_.monitor.find("acc") != std::string::npos);
    }

    void on_train_begin(nn::Module<T>&) override {
        best_ = maximize_ ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
        wait_ = 0;
        best_epoch_ = -1;
        stopped_ = false;
        best_weights_ = {};
    }

    bool on_epoch_end(int epoch, const Logs& logs, nn::Module<T>& model) override {
        auto it = logs.find(o_.monitor);
        if (it == logs.end())
            fail<value_error>("EarlyStopping", "monitored value '", o_.monitor, "' is not among this epoch's figures",
                              " (is there validation data?)");
        const double v = it->second;
        const bool better = maximize_ ? v > best_ + o_.min_delta : v < best_ - o_.min_delta;
        if (better || best_epoch_ < 0) {
            best_ = v;
            best_epoch_ = epoch;
            wait_ = 0;
            if (o_.restore_best_weights) best_weights_ = Weights<T>::capture(model);
            return false;
        }
        if (++wait_ >= o_.patience) {
            stopped_ = true;
            return true;
        }
        return false;
    }

    void on_train_end(nn::Module<T>& model, History& h) override {
        h.stopped_early = h.stopped_early || stopped_;
        if (o_.restore_best_weights && best_epoch_ >= 0 && !best_weights_.params.empty()) {
            best_weights_.restore(model);
            h.best_epoch = best_epoch_;
        }
    }

    int best_epoch() const { return best_epoch_; }
    double best() const { return best_; }
    bool stopped() const { return stopped_; }

private:
    Options o_;
    bool maximize_ = false;
    double best_ = 0;
    int wait_ = 0, best_epoch_ = -1;
    bool stopped_ = false;
    Weights<T> best_weights_;
};

// Writes each epoch's figures as a CSV row (header from the first epoch), flushed every epoch.
template <Floating T>
class CSVLogger : public Callback<T> {
public:
    explicit CSVLogger(std::string path) : path_(std::move(path)) {}
    bool rank_zero_only() const override { return true; }

    void on_train_begin(nn::Module<T>&) override {
        file_.open(path_, std::ios::trunc);
        if (!file_) fail<value_error>("CSVLogger", "cannot write '", path_, "'");
        keys_.clear();
    }
    bool on_epoch_end(int epoch, const Logs& logs, nn::Module<T>&) override {
        if (keys_.empty()) {
            for (auto& [k, v] : logs) keys_.push_back(k);
            file_ << "epoch";
            for (auto& k : keys_) file_ << "," << k;
            file_ << "\n";
        }
        file_ << epoch + 1;
        for (auto& k : keys_) {
            auto it = logs.find(k);
            file_ << ",";
            if (it != logs.end()) file_ << it->second;
        }
        file_ << "\n" << std::flush;
        return false;
    }
    void on_train_end(nn::Module<T>&, History&) override { file_.close(); }

private:
    std::string path_;
    std::ofstream file_;
    std::vector<std::string> keys_;
};

}  // namespace tensortape::train
