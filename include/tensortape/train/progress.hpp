#pragma once
// The progress display: on a terminal, one line per epoch redrawn in place with a bar, the ETA
// and the running loss and accuracy (at most ten redraws a second); elsewhere (a log file, CI),
// one plain line per epoch.

#include <tensortape/train/history.hpp>

#include <chrono>
#include <cstdio>
#include <ostream>
#include <sstream>
#include <string>
#include <unistd.h>

namespace tensortape::train {

class Progress {
public:
    Progress(std::ostream& out, bool enabled, bool terminal) : out_(out), enabled_(enabled), terminal_(terminal) {}

    // Whether standard output is a terminal (the default for fit's progress).
    static bool stdout_is_terminal() { return ::isatty(STDOUT_FILENO) == 1; }

    void begin_epoch(int epoch, int epochs, std::int64_t batches) {
        epoch_ = epoch;
        epochs_ = epochs;
        batches_ = batches;
        start_ = Clock::now();
        last_draw_ = start_ - std::chrono::seconds(1);
    }

    void batch_done(std::int64_t done, double loss, double accuracy, bool has_accuracy) {
        if (!enabled_ || !terminal_) return;
        const auto now = Clock::now();
        if (done < batches_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
        last_draw_ = now;
        const double elapsed = std::chrono::duration<double>(now - start_).count();
        const double eta = done > 0 ? elapsed / double(done) * double(batches_ - done) : 0.0;
        constexpr int width = 24;
        const int filled = batches_ > 0 ? static_cast<int>(width * done / batches_) : width;
        std::ostringstream line;
        line << "\rEpoch " << epoch_ + 1 << "/" << epochs_ << " [" << std::string(static_cast<std::size_t>(filled), '=')
             << (filled < width ? ">" : "") << std::string(static_cast<std::size_t>(std::max(0, width - filled - 1)), ' ') << "] " << done
             << "/" << batches_ << " - ETA " << format_seconds(eta) << " - loss " << fixed(loss);
        if (has_accuracy) line << " - accuracy " << fixed(accuracy);
        out_ << line.str() << std::flush;
    }

    void end_epoch(const Logs& logs) {
        if (!enabled_) return;
        std::ostringstream line;
        if (terminal_) line << "\r\033[K";
        line << "Epoch " << epoch_ + 1 << "/" << epochs_;
        for (const char* key : {"loss", "accuracy", "val_loss", "val_accuracy"})
            if (auto it = logs.find(key); it != logs.end()) line << " - " << key << " " << fixed(it->second);
        if (auto it = logs.find("seconds"); it != logs.end()) line << " - " << format_seconds(it->second);
        if (auto it = logs.find("examples_per_second"); it != logs.end()) line << " (" << static_cast<long long>(it->second) << " examples/s)";
        out_ << line.str() << "\n" << std::flush;
    }

    void message(const std::string& text) {
        if (enabled_) out_ << text << "\n" << std::flush;
    }

private:
    using Clock = std::chrono::steady_clock;
    static std::string fixed(double v) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.4f", v);
        return buf;
    }
    static std::string format_seconds(double s) {
        char buf[32];
        if (s < 60) std::snprintf(buf, sizeof buf, "%.1fs", s);
        else std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
        return buf;
    }

    std::ostream& out_;
    bool enabled_, terminal_;
    int epoch_ = 0, epochs_ = 0;
    std::int64_t batches_ = 0;
    Clock::time_point start_, last_draw_;
};

}  // namespace tensortape::train
