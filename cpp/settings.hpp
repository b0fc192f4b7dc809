// The options of a call of mini-batch training, as one struct of named fields: they
// travel from Python (deltaprop._core.TrainSettings) to the trainer in one piece.
// Adding an option: a field here, its line in bind_train_settings (bindings.cpp), and
// its line where python/deltaprop/_minibatch.py fills the settings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "optimizers.hpp"

namespace deltaprop {

struct TrainSettings {
    std::size_t batch_size = 0;     // rows per mini-batch (the last possibly fewer), >= 1
    UpdateRule rule;                // the optimizer's update after each batch
    double dropout = 0;             // fraction of hidden units dropped, in [0, 1)
    std::uint64_t seed = 0;         // of the dropout masks (see draw_dropout_masks)
    std::uint64_t first_batch = 0;  // the index within its epoch of the call's first batch
};

inline void check_settings(const TrainSettings &settings) {
    if (settings.batch_size < 1) throw std::invalid_argument("batch_size: must be at least 1");
    if (!(settings.dropout >= 0 && settings.dropout < 1)) {
        throw std::invalid_argument("dropout: must lie in [0, 1)");
    }
    check_rule(settings.rule);
}

}  // namespace deltaprop
