// Inverted-dropout masks of a batch, drawn per row of the global batch (SplitMix64),
// so that whichever process or call trains a row draws the same mask for it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "mlp.hpp"

namespace deltaprop {

// SplitMix64's output function (Steele, Lea and Flood): a 64-bit mixer.
inline std::uint64_t mix64(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// A small, fast generator for dropout masks (SplitMix64).
struct SplitMix64 {
    std::uint64_t state;
    std::uint64_t next() { return mix64(state += 0x9E3779B97F4A7C15ull); }
    double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // in [0, 1)
};

// Inverted dropout for B rows of global batch `batch` of the epoch, the first of them
// row `first_row` of that batch: each hidden unit is kept with probability 1 - rate and
// then scaled by 1 / (1 - rate), so that prediction needs no rescaling. Row i of the
// global batch draws its masks, layer after layer, from a generator of its own seeded by
// (seed, batch, i) alone: the same masks whichever process trains the row, and however
// an epoch is split into calls.
template <class T>
void draw_dropout_masks(const Mlp<T> &mlp, double rate, std::uint64_t seed, std::uint64_t batch,
                        std::size_t first_row, std::size_t B, DropoutMasks<T> &masks) {
    const std::uint64_t batch_seed = mix64(seed ^ mix64(batch));
    const T scale = T(1) / T(1 - rate);
    masks.resize(mlp.n_layers());
    for (std::size_t l = 1; l < mlp.n_layers(); ++l) {
        if (masks[l].size() < B * mlp.n_units(l)) masks[l].resize(B * mlp.n_units(l));
    }
    for (std::size_t i = 0; i < B; ++i) {
        SplitMix64 rng{mix64(batch_seed ^ mix64(first_row + i))};
        for (std::size_t l = 1; l < mlp.n_layers(); ++l) {
            const std::size_t n_units = mlp.n_units(l);
            T *mask = masks[l].data() + i * n_units;
            for (std::size_t j = 0; j < n_units; ++j) {
                mask[j] = rng.uniform() >= rate ? scale : T(0);
            }
        }
    }
}

}  // namespace deltaprop
