// Training on sparse X with W^1 transposed: for the length of a train() call, the
// parameters' W^1 and the same segment of every array laid out like them (the optimizer's
// state; the gradient buffer is written afresh each batch) hold (W^1)^T, (n_0, n_1)
// row-major, which the sparse products read and write row by row (sparse.hpp). The
// updates are element-wise: they do not see the difference. Data-parallel training keeps
// W^1 as it is (its sums need one layout on every process, and a shard may be dense).
// No Python here.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "mlp.hpp"
#include "optimizers.hpp"
#include "sparse.hpp"

namespace deltaprop {

// Transposes W^1 of the parameters and of the optimizer's state on construction (when
// the rows are sparse) and back on destruction, however the call ends. `scratch`, one
// W^1 in size, is the transposition's buffer (kept by the caller between calls).
template <class T> class FirstLayerTransposed {
  public:
    FirstLayerTransposed(Mlp<T> &mlp, T *params, const OptimizerState<T> &state, bool sparse,
                         Buffer<T> &scratch)
        : mlp_(mlp), arrays_{params, state.first, state.second}, scratch_(scratch),
          active_(sparse) {
        if (!active_) return;
        scratch_.resize(mlp_.n_units(1) * mlp_.n_inputs());  // may throw: nothing changed yet
        for (T *array : arrays_) flip(array, mlp_.n_units(1), mlp_.n_inputs());
        mlp_.set_first_layer_transposed(true);
    }

    ~FirstLayerTransposed() {
        if (!active_) return;
        for (T *array : arrays_) flip(array, mlp_.n_inputs(), mlp_.n_units(1));
        mlp_.set_first_layer_transposed(false);
    }

    FirstLayerTransposed(const FirstLayerTransposed &) = delete;
    FirstLayerTransposed &operator=(const FirstLayerTransposed &) = delete;

  private:
    // W^1's segment of `array` (rows, cols) becomes its transpose (cols, rows).
    void flip(T *array, std::size_t rows, std::size_t cols) {
        if (array == nullptr || rows == 1 || cols == 1) return;  // the same layout either way
        T *weights = array + mlp_.layer(1).weights;
        transpose(weights, rows, cols, scratch_.data());
        std::copy(scratch_.begin(), scratch_.begin() + rows * cols, weights);
    }

    Mlp<T> &mlp_;
    std::array<T *, 3> arrays_;  // the parameters, the state's first and second arrays
    Buffer<T> &scratch_;
    bool active_;
};

// Momentum on sparse X, row by row of (W^1)^T. A batch's gradient of W^1 lives on the
// rows of its columns (the touched rows); every other row only coasts on its velocity,
// a linear step of (w, s) for s the velocity kept between batches (mu V, begin_sequence):
// the velocity is s + l2 w, then w <- w - lr (s + l2 w) and s <- decay (s + l2 w), that is
//     (w, s) <- M (w, s),  M = [[1 - lr l2, -lr], [decay l2, decay]],
// decay = mu between batches and 1 after a call's last. Instead of that pass over all of
// W^1 and V^1 each batch, a row waits: before a batch's forward pass reads its touched
// rows, each is brought up to date by M^p for the p batches it waited (one pass), then
// trained as momentum_step trains every row; at the call's end every row that waited
// catches up. The same steps as the dense update, rounded once instead of p times.
// Not for L1 (sign(w) is not linear) nor data-parallel training (V is summed whole).
template <class T> class LazyVelocity {
  public:
    // For a call of n_batches on `rows`' X, from a consistent W^1 and V^1.
    void begin(bool active, std::size_t n_rows, std::size_t n_units, const UpdateRule &rule) {
        active_ = active;
        if (!active_) return;
        n_units_ = n_units;
        batches_done_ = 0;
        current_.assign(n_rows, 0);
        seen_.assign(n_rows, -1);
        lr_ = rule.lr;
        l2_ = rule.l2;
        mu_ = rule.momentum;
        powers_.assign(1, {1, 0, 0, 1});  // M^0
    }

    bool active() const { return active_; }

    // Before batch X's forward pass: its touched rows of W^1 and V^1 up to date.
    void prepare(const Input<T> &X, std::size_t B, T *weights, T *velocity) {
        if (!active_) return;
        find_touched(X, B);
        const std::int64_t now = std::int64_t(batches_done_);
        power(batches_done_);  // every power a row may need, before the team reads them
        share_rows(touched_.size(), [&](std::size_t begin, std::size_t end) {
            for (std::size_t k = begin; k < end; ++k) {
                const std::size_t row = touched_[k];
                if (current_[row] == now) continue;
                catch_up(weights, velocity, row, powers_[std::size_t(now - current_[row])]);
                current_[row] = now;
            }
        });
    }

    // After BP4 added the batch's gradient to V^1's touched rows: their momentum step.
    void step(T *weights, T *velocity, bool more_follow) {
        const T lr = T(lr_), l2 = T(l2_), decay = more_follow ? T(mu_) : T(1);
        share_rows(touched_.size(), [&](std::size_t begin, std::size_t end) {
            for (std::size_t k = begin; k < end; ++k) {
                const std::size_t at = touched_[k] * n_units_;
                momentum_step(weights + at, velocity + at, n_units_, lr, l2, T(0), decay);
            }
        });
        ++batches_done_;
        for (std::size_t row : touched_) current_[row] = std::int64_t(batches_done_);
    }

    // Every row up to date at the call's end (`last_was_final`: its last batch stored V,
    // decay 1, as a call's last does; else mu V, as between batches).
    void finish(T *weights, T *velocity, bool last_was_final) {
        if (!active_) return;
        const std::int64_t done = std::int64_t(batches_done_);
        power(batches_done_);  // as in prepare
        share_rows(current_.size(), [&](std::size_t begin, std::size_t end) {
            for (std::size_t row = begin; row < end; ++row) {
                const std::size_t waited = std::size_t(done - current_[row]);
                if (waited == 0) continue;
                Coefficients m = powers_[waited - (last_was_final ? 1 : 0)];
                if (last_was_final) m = times(final_step(), m);
                catch_up(weights, velocity, row, m);
                current_[row] = done;
            }
        });
    }

  private:
    struct Coefficients {
        double a, b, c, d;  // (w, s) <- (a w + b s, c w + d s)
    };

    static Coefficients times(const Coefficients &x, const Coefficients &y) {
        return {x.a * y.a + x.b * y.c, x.a * y.b + x.b * y.d, x.c * y.a + x.d * y.c,
                x.c * y.b + x.d * y.d};
    }

    Coefficients between_batches() const { return {1 - lr_ * l2_, -lr_, mu_ * l2_, mu_}; }
    Coefficients final_step() const { return {1 - lr_ * l2_, -lr_, l2_, 1}; }

    // M^p, from the powers met so far (p is at most the call's batches); the team's jobs
    // only read them (prepare and finish compute the largest first).
    const Coefficients &power(std::size_t p) {
        while (powers_.size() <= p) powers_.push_back(times(between_batches(), powers_.back()));
        return powers_[p];
    }

    void catch_up(T *weights, T *velocity, std::size_t row, const Coefficients &m) const {
        const T a = T(m.a), b = T(m.b), c = T(m.c), d = T(m.d);
        T *w = weights + row * n_units_, *s = velocity + row * n_units_;
        for (std::size_t j = 0; j < n_units_; ++j) {
            const T w_j = w[j];
            w[j] = a * w_j + b * s[j];
            s[j] = flush_subnormal(c * w_j + d * s[j]);
        }
    }

    // The rows the batch's entries name, each once, into touched_.
    void find_touched(const Input<T> &X, std::size_t B) {
        touched_.clear();
        const std::int64_t stamp = std::int64_t(batches_done_);
        with_index_types(*X.sparse, [&](const auto *indices, const auto *indptr) {
            for (std::size_t i = 0; i < B; ++i) {
                const std::size_t r = X.row(i);
                for (auto k = indptr[r]; k < indptr[r + 1]; ++k) {
                    const std::size_t column = std::size_t(indices[k]);
                    if (seen_[column] == stamp) continue;
                    seen_[column] = stamp;
                    touched_.push_back(column);
                }
            }
        });
    }

    // The team shares `count` rows, each job at least kElementsPerJob weights.
    template <class Body> void share_rows(std::size_t count, const Body &body) const {
        const std::size_t grain = std::max<std::size_t>(1, kElementsPerJob / n_units_);
        Team::instance().parallel_for(count, grain, blas::get_num_threads(), body);
    }

    bool active_ = false;
    std::size_t n_units_ = 0;
    std::size_t batches_done_ = 0;      // in this call
    std::vector<std::int64_t> current_;  // row r has the updates of batches [0, current_[r])
    std::vector<std::int64_t> seen_;     // the batch that last named row r (find_touched)
    std::vector<std::size_t> touched_;   // the rows of the batch in training
    double lr_ = 0, l2_ = 0, mu_ = 0;
    std::vector<Coefficients> powers_;  // M^p, p = 0, 1, ...
};

}  // namespace deltaprop
