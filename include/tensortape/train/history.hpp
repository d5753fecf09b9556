#pragma once
// What fit() reports: per-epoch figures by name, like Keras's History.

#include <map>
#include <string>
#include <vector>

namespace tensortape::train {

// One epoch's figures: "loss", "accuracy", "val_loss", "val_accuracy", "seconds",
// "examples_per_second", "lr" (those that apply).
using Logs = std::map<std::string, double>;

struct History {
    std::vector<Logs> epochs;
    bool stopped_early = false;
    int best_epoch = -1;  // set by EarlyStopping: the epoch whose weights the model ends with

    std::vector<double> series(const std::string& key) const {
        std::vector<double> out;
        for (const auto& e : epochs)
            if (auto it = e.find(key); it != e.end()) out.push_back(it->second);
        return out;
    }
};

}  // namespace tensortape::train
