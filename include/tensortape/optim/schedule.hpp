#pragma once
// Learning-rate schedulers, with PyTorch's formulas. A scheduler keeps a reference to its
// optimizer (which must outlive it) and writes optimizer.lr; the lr the optimizer had when the
// scheduler was made is base_lr. Call step() once per epoch, after the optimizer's steps.
//
// StepLR and CosineAnnealingLR use PyTorch's closed forms of the epoch count rather than its
// chained updates: the same values up to rounding, and no drift from repeated multiplication.

#include <tensortape/optim/optimizer.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>

namespace tensortape::optim {

template <Floating T>
class LRScheduler {
public:
    virtual ~LRScheduler() = default;
    double base_lr() const { return base_lr_; }
    // Epochs stepped so far; 0 right after construction.
    std::int64_t last_epoch() const { return epoch_; }
    double last_lr() const { return opt_.lr; }

protected:
    explicit LRScheduler(Optimizer<T>& opt) : opt_(opt), base_lr_(opt.lr) {}
    Optimizer<T>& opt_;
    double base_lr_;
    std::int64_t epoch_ = 0;
};

// lr = base_lr * gamma ^ floor(epoch / step_size)
template <Floating T>
class StepLR : public LRScheduler<T> {
public:
    StepLR(Optimizer<T>& opt, std::int64_t step_size, double gamma = 0.1) : LRScheduler<T>(opt), step_size_(step_size), gamma_(gamma) {
        if (step_size <= 0) fail<value_error>("StepLR", "step_size must be positive, got ", step_size);
        if (!std::isfinite(gamma)) fail<value_error>("StepLR", "gamma must be finite, got ", gamma);
    }

    void step() {
        ++this->epoch_;
        this->opt_.lr = this->base_lr_ * std::pow(gamma_, static_cast<double>(this->epoch_ / step_size_));
    }

private:
    std::int64_t step_size_;
    double gamma_;
};

// lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / t_max)) / 2. Past t_max the cosine
// continues, rising back towards base_lr over the next t_max epochs, as PyTorch's does.
template <Floating T>
class CosineAnnealingLR : public LRScheduler<T> {
public:
    CosineAnnealingLR(Optimizer<T>& opt, std::int64_t t_max, double eta_min = 0.0) : LRScheduler<T>(opt), t_max_(t_max), eta_min_(eta_min) {
        if (t_max <= 0) fail<value_error>("CosineAnnealingLR", "t_max must be positive, got ", t_max);
        if (!(eta_min >= 0.0)) fail<value_error>("CosineAnnealingLR", "eta_min must be non-negative, got ", eta_min);
    }

    void step() {
        ++this->epoch_;
        const double phase = std::numbers::pi * static_cast<double>(this->epoch_) / static_cast<double>(t_max_);
        this->opt_.lr = eta_min_ + (this->base_lr_ - eta_min_) * (1.0 + std::cos(phase)) / 2.0;
    }

private:
    std::int64_t t_max_;
    double eta_min_;
};

enum class PlateauMode { min, max };

// Multiplies lr by factor (not below min_lr) once the metric has not improved for more than
// `patience` epochs in a row, then waits `cooldown` epochs before counting again. Improving means
// beating the best so far by the relative threshold: metric < best * (1 - threshold) in min
// mode, metric > best * (1 + threshold) in max mode. A NaN metric never improves.
template <Floating T>
class ReduceLROnPlateau : public LRScheduler<T> {
public:
    ReduceLROnPlateau(Optimizer<T>& opt, double factor = 0.1, std::int64_t patience = 10, double min_lr = 0.0, double threshold = 1e-4,
                      std::int64_t cooldown = 0, PlateauMode mode = PlateauMode::min)
        : LRScheduler<T>(opt), factor_(factor), patience_(patience), min_lr_(min_lr), threshold_(threshold), cooldown_(cooldown), mode_(mode) {
        if (!(factor >= 0.0 && factor < 1.0)) fail<value_error>("ReduceLROnPlateau", "factor must be in [0, 1), got ", factor);
        if (patience < 0) fail<value_error>("ReduceLROnPlateau", "patience must be non-negative, got ", patience);
        if (!(min_lr >= 0.0)) fail<value_error>("ReduceLROnPlateau", "min_lr must be non-negative, got ", min_lr);
        if (!(threshold >= 0.0)) fail<value_error>("ReduceLROnPlateau", "threshold must be non-negative, got ", threshold);
        if (cooldown < 0) fail<value_error>("ReduceLROnPlateau", "cooldown must be non-negative, got ", cooldown);
        best_ = mode == PlateauMode::min ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
    }

    void step(double metric) {
        ++this->epoch_;
        if (improves(metric)) {
            best_ = metric;
            bad_epochs_ = 0;
        } else {
            ++bad_epochs_;
        }
        if (cooldown_left_ > 0) {
            --cooldown_left_;
            bad_epochs_ = 0;
        }
        if (bad_epochs_ > patience_) {
            const double old_lr = this->opt_.lr;
            const double new_lr = std::max(old_lr * factor_, min_lr_);
            // PyTorch's eps: a reduction smaller than this is not worth making.
            if (old_lr - new_lr > 1e-8) this->opt_.lr = new_lr;
            cooldown_left_ = cooldown_;
            bad_epochs_ = 0;
        }
    }

    double best() const { return best_; }
    std::int64_t num_bad_epochs() const { return bad_epochs_; }

private:
    bool improves(double metric) const {
        return mode_ == PlateauMode::min ? metric < best_ * (1.0 - threshold_) : metric > best_ * (1.0 + threshold_);
    }

    double factor_;
    std::int64_t patience_;
    double min_lr_;
    double threshold_;
    std::int64_t cooldown_;
    PlateauMode mode_;
    double best_;
    std::int64_t bad_epochs_ = 0;
    std::int64_t cooldown_left_ = 0;
};

}  // namespace tensortape::optim
