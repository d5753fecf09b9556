#pragma once
// fit, evaluate, predict: the Keras-style training loop over a Module, an Optimizer, a Loss and
// Datasets. Each step wraps the batch as constants (no copy), runs forward, the loss, backward
// and the optimizer; the step's graph is released by backward, and its memory returns to the
// allocator cache for the next step, so memory stays flat from epoch to epoch.

#include <tensortape/autodiff/engine.hpp>
#include <tensortape/data/dataset.hpp>
#include <tensortape/dist/data_parallel.hpp>
#include <tensortape/nn/loss.hpp>
#include <tensortape/nn/module.hpp>
#include <tensortape/optim/optimizer.hpp>
#include <tensortape/train/callbacks.hpp>
#include <tensortape/train/history.hpp>
#include <tensortape/train/progress.hpp>

#include <array>
#include <chrono>
#include <iostream>
#include <memory>
#include <optional>
#include <vector>

namespace tensortape::train {

template <Floating T = float>
struct FitOptions {
    int epochs = 10;
    std::int64_t batch_size = 32;
    // Used when no validation set is passed: this last fraction of the training data is held out
    // (before shuffling, as Keras does).
    double validation_split = 0.0;
    bool shuffle = true;
    std::uint64_t seed = 0;
    bool verbose = true;
    std::optional<bool> terminal;  // progress bar on a terminal; default: whether stdout is one
    std::ostream* out = &std::cout;
    std::vector<std::shared_ptr<Callback<T>>> callbacks;
    // Data-parallel training: this rank reads its part of every global batch of batch_size
    // examples, gradients are averaged across ranks before each step, metrics are averaged
    // across ranks, and only rank 0 prints and runs file-writing callbacks. Every rank calls fit.
    dist::DataParallel<T>* data_parallel = nullptr;
};

struct EvalResult {
    double loss = 0;
    double accuracy = 0;  // fraction of argmax hits; 0 when predictions are not [N, classes]
    std::int64_t examples = 0;
};

namespace detail {

// Accuracy applies when predictions are [N, C] and targets are [N] labels.
template <Floating T>
bool classifies(const Tensor<T>& pred, const Tensor<T>& target) {
    return pred.rank() == 2 && target.rank() == 1 && target.shape()[0] == pred.shape()[0];
}

}  // namespace detail

// Loss and accuracy over a dataset, in evaluation mode and without recording.
template <Floating T>
EvalResult evaluate(nn::Module<T>& model, const nn::Loss<T>& loss, const data::Dataset<T>& d, std::int64_t batch_size = 256) {
    const bool was_training = model.training();
    model.eval();
    NoGradGuard no_grad;
    data::DataLoader<T> loader(d, batch_size, false, 0);
    loader.start_epoch(0);
    Tensor<T> xb, yb;
    EvalResult r;
    double loss_sum = 0;
    std::int64_t correct = 0;
    while (loader.next(xb, yb)) {
        const Var<T> pred = model(constant(xb));
        const std::int64_t n = xb.shape()[0];
        loss_sum += static_cast<double>(loss(pred, yb).item()) * double(n);
        if (detail::classifies(pred.value(), yb)) correct += nn::count_correct(pred.value(), yb);
        r.examples += n;
    }
    model.train(was_training);
    if (r.examples > 0) {
        r.loss = loss_sum / double(r.examples);
        r.accuracy = double(correct) / double(r.examples);
    }
    return r;
}

namespace detail {

// Sums of a few figures over the ranks, added in rank order so every rank gets the same bits
// (and so the same early-stopping decision).
template <Floating T, std::size_t N>
std::array<double, N> sum_over_ranks(dist::DataParallel<T>* dp, std::array<double, N> local) {
    if (!dp || dp->size() == 1) return local;
    std::vector<double> all(N * static_cast<std::size_t>(dp->size()));
    dp->comm().all_gather(std::span<const double>(local), std::span<double>(all));
    std::array<double, N> out{};
    for (std::size_t r = 0; r < static_cast<std::size_t>(dp->size()); ++r)
        for (std::size_t i = 0; i < N; ++i) out[i] += all[r * N + i];
    return out;
}

// Rank 0's buffers (running statistics) to every rank, so that all evaluate the same model.
template <Floating T>
void broadcast_buffers(nn::Module<T>& model, dist::DataParallel<T>* dp) {
    if (!dp || dp->size() == 1) return;
    for (auto& [name, b] : model.named_buffers()) dp->broadcast(b, 0);
}

// evaluate() over this rank's contiguous part of d, summed over the ranks.
template <Floating T>
EvalResult evaluate_sharded(nn::Module<T>& model, const nn::Loss<T>& loss, const data::Dataset<T>& d, std::int64_t batch_size,
                            dist::DataParallel<T>* dp) {
    if (!dp || dp->size() == 1) return evaluate(model, loss, d, batch_size);
    const std::int64_t n = d.size(), r = dp->rank(), ranks = dp->size();
    const auto part = d.slice(n * r / ranks, n * (r + 1) / ranks);
    const EvalResult mine = part.size() > 0 ? evaluate(model, loss, part, batch_size) : EvalResult{};
    const auto sums = sum_over_ranks<T, 3>(dp, {mine.loss * double(mine.examples), mine.accuracy * double(mine.examples), double(mine.examples)});
    EvalResult out;
    out.examples = static_cast<std::int64_t>(sums[2]);
    if (sums[2] > 0) {
        out.loss = sums[0] / sums[2];
        out.accuracy = sums[1] / sums[2];
    }
    return out;
}

}  // namespace detail

// The model's outputs for every row of x, in evaluation mode.
template <Floating T>
Tensor<T> predict(nn::Module<T>& model, const Tensor<T>& x, std::int64_t batch_size = 256) {
    const bool was_training = model.training();
    model.eval();
    NoGradGuard no_grad;
    std::vector<Tensor<T>> parts;
    const std::int64_t n = x.rank() > 0 ? x.shape()[0] : 0;
    for (std::int64_t i = 0; i < n; i += batch_size)
        parts.push_back(model(constant(x.slice(0, i, std::min(n, i + batch_size)).contiguous())).value());
    model.train(was_training);
    if (parts.empty()) fail<value_error>("predict", "no input rows");
    return concatenate<T>(std::span<const Tensor<T>>(parts), 0);
}

// Trains `model` for o.epochs epochs (or until a callback stops it) and returns the per-epoch
// figures. Validation data: `validation` if given, else the last o.validation_split of `train`.
template <Floating T>
History fit(nn::Module<T>& model, optim::Optimizer<T>& opt, const nn::Loss<T>& loss, const data::Dataset<T>& train,
            const FitOptions<T>& o = {}, const data::Dataset<T>* validation = nullptr) {
    if (o.epochs < 0 || o.batch_size < 1) fail<value_error>("fit", "epochs must be >= 0 and batch_size >= 1, got ", o.epochs, " and ", o.batch_size);
    data::Dataset<T> train_part = train;
    std::optional<data::Dataset<T>> held_out;
    if (!validation && o.validation_split > 0) {
        auto [a, b] = data::split(train, 1.0 - o.validation_split);
        train_part = std::move(a);
        held_out = std::move(b);
        validation = &*held_out;
    }
    dist::DataParallel<T>* dp = o.data_parallel;
    const int rank = dp ? dp->rank() : 0, ranks = dp ? dp->size() : 1;
    data::DataLoader<T> loader(train_part, o.batch_size, o.shuffle, o.seed, data::Shard{rank, ranks});
    Progress progress(*o.out, o.verbose && rank == 0, o.terminal.value_or(Progress::stdout_is_terminal()));
    std::vector<Callback<T>*> callbacks;
    for (auto& cb : o.callbacks)
        if (rank == 0 || !cb->rank_zero_only()) callbacks.push_back(cb.get());
    History history;
    detail::broadcast_buffers(model, dp);
    for (auto* cb : callbacks) cb->on_train_begin(model);
    model.train();
    Tensor<T> xb, yb;
    for (int epoch = 0; epoch < o.epochs; ++epoch) {
        const auto t0 = std::chrono::steady_clock::now();
        loader.start_epoch(epoch);
        progress.begin_epoch(epoch, o.epochs, loader.batches());
        double loss_sum = 0;
        std::int64_t seen = 0, correct = 0, done = 0;
        bool classification = false;
        while (loader.next(xb, yb)) {
            opt.zero_grad();
            const Var<T> pred = model(constant(xb));
            const Var<T> l = loss(pred, yb);
            const double lv = static_cast<double>(l.item());
            const std::int64_t n = xb.shape()[0];
            // Averaging the ranks' mean losses weights each rank alike; when a short last batch
            // splits unevenly, scale each by its share so the step follows the batch's mean.
            const std::int64_t global = loader.global_batch_rows();
            if (dp && n * ranks != global) backward(l, full<T>({}, static_cast<T>(double(n) * ranks / double(global))));
            else backward(l);
            if (dp) dp->synchronize();
            opt.step();
            loss_sum += lv * double(n);
            seen += n;
            classification = detail::classifies(pred.value(), yb);
            if (classification) correct += nn::count_correct(pred.value(), yb);
            progress.batch_done(++done, loss_sum / double(seen), double(correct) / double(seen), classification);
        }
        const auto totals = detail::sum_over_ranks<T, 3>(dp, {loss_sum, double(seen), double(correct)});
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        Logs logs{{"loss", totals[1] > 0 ? totals[0] / totals[1] : 0.0}, {"seconds", secs},
                  {"examples_per_second", secs > 0 ? totals[1] / secs : 0.0}};
        if (classification) logs["accuracy"] = totals[2] / totals[1];
        if (validation && validation->size() > 0) {
            detail::broadcast_buffers(model, dp);
            const EvalResult v = detail::evaluate_sharded(model, loss, *validation, std::max<std::int64_t>(o.batch_size, 256), dp);
            logs["val_loss"] = v.loss;
            if (classification) logs["val_accuracy"] = v.accuracy;
        }
        progress.end_epoch(logs);
        history.epochs.push_back(logs);
        bool stop = false;
        for (auto* cb : callbacks) stop = cb->on_epoch_end(epoch, logs, model) || stop;
        if (dp) stop = detail::sum_over_ranks<T, 1>(dp, {stop ? 1.0 : 0.0})[0] > 0;  // all ranks stop together
        if (stop) {
            history.stopped_early = true;
            break;
        }
    }
    detail::broadcast_buffers(model, dp);
    for (auto* cb : callbacks) cb->on_train_end(model, history);
    return history;
}

}  // namespace tensortape::train
