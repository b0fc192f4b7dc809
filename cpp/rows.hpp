// The rows a training call visits, batch by batch: their order and this process's share
// of each batch, each batch's rows gathered into buffers of their own (ahead of time by
// the team's idle workers) or read in place. No Python here.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "mlp.hpp"
#include "team.hpp"

namespace deltaprop {

// Data-parallel training, where several processes each train some rows of every batch:
// this process's share. Batch k of a call is positions [begin[k], end[k]) of the order
// (possibly none), the first of which is row position[k] of the global batch.
struct Shares {
    const std::int64_t *begin;
    const std::int64_t *end;
    const std::int64_t *position;
    std::size_t n_batches;
};

// The rows to train on: rows order[0..n_order) of X (n_rows, n_0), Y (n_rows, n_L) and
// optional sample_weight (n_rows,) (order == nullptr: rows 0..n_order in storage order),
// in batches of the settings' batch_size, the last one possibly smaller, or as `shares`
// says.
template <class T> struct Rows {
    const T *X = nullptr;              // nullptr: sparse_X
    const CsrMatrix<T> *sparse_X = nullptr;  // else X: its rows are read in place
    const T *Y = nullptr;
    const T *sample_weight = nullptr;  // nullptr: every sample_weight is 1
    std::size_t n_rows = 0;
    const std::int64_t *order = nullptr;
    std::size_t n_order = 0;
    const Shares *shares = nullptr;  // nullptr: one process trains every row
};

// A mini-batch: B = size rows of X (B, n_0), Y (B, n_L) and sample_weight (B,) or
// nullptr.
template <class T> struct Batch {
    Input<T> X;
    const T *Y;
    const T *sample_weight;
    std::size_t size;
};

// The rows order[0..B) of X, Y (and sample_weight) copied into buffers of their own:
// by the call that needs them (finish), or ahead of it, one row at a time, by the team's
// workers when idle (a Team::IdleWork) while the batch before is trained. Random rows
// of a large X come from memory, and gathering a batch took a few percent of an epoch
// of C: the workers' idle moments (while the calling thread runs the small output
// layer's products, say) now take most of it.
template <class T> class GatheredRows final : public Team::IdleWork {
  public:
    // Sized for B rows, none copied yet.
    void prepare(const Rows<T> &rows, const std::int64_t *order, std::size_t B, std::size_t n_in,
                 std::size_t n_out) {
        rows_ = &rows;
        order_ = order;
        size_ = B;
        n_in_ = n_in;
        n_out_ = n_out;
        if (rows.X && x_.size() < B * n_in) x_.resize(B * n_in);
        if (y_.size() < B * n_out) y_.resize(B * n_out);
        if (rows.sample_weight && sample_weight_.size() < B) sample_weight_.resize(B);
        claimed_.store(0, std::memory_order_relaxed);
    }

    // The next row nobody claimed, if any (a worker's piece of idle work).
    bool do_one() override {
        const std::size_t i = claimed_.fetch_add(1, std::memory_order_relaxed);
        if (i >= size_) return false;
        copy(i, i + 1);
        return true;
    }

    // Copies the rows nobody claimed on the team's threads; then all B rows are in place.
    // The workers must be done with their pieces (Team::withdraw_idle_work).
    void finish(int threads) {
        const std::size_t from = std::min(claimed_.exchange(size_), size_);
        // At least 32 KB of rows per job: the rows come from memory a few cache lines at
        // a time, and the team's cores fetch them side by side.
        const std::size_t rows_per_job = std::max<std::size_t>(1, (32 << 10) / (n_in_ * sizeof(T)));
        Team::instance().parallel_for(
            size_ - from, rows_per_job, threads,
            [&](std::size_t begin, std::size_t end) { copy(from + begin, from + end); });
    }

    const T *X() const { return x_.data(); }
    const T *Y() const { return y_.data(); }
    const T *sample_weight() const {
        return rows_->sample_weight ? sample_weight_.data() : nullptr;
    }

  private:
    // Rows [begin, end), each X row's cache lines asked for a few rows ahead of its copy:
    // the hardware prefetcher does not cross from one scattered row to the next.
    void copy(std::size_t begin, std::size_t end) {
        constexpr std::size_t kRowsAhead = 2, kLine = 64;
        const Rows<T> &rows = *rows_;
        for (std::size_t i = begin; i < end; ++i) {
            if (rows.X && i + kRowsAhead < size_) {
                const char *ahead = reinterpret_cast<const char *>(
                    rows.X + std::size_t(order_[i + kRowsAhead]) * n_in_);
                for (std::size_t at = 0; at < n_in_ * sizeof(T); at += kLine) {
                    __builtin_prefetch(ahead + at);
                }
            }
            const std::size_t row = std::size_t(order_[i]);
            if (rows.X) std::memcpy(x_.data() + i * n_in_, rows.X + row * n_in_, n_in_ * sizeof(T));
            std::memcpy(y_.data() + i * n_out_, rows.Y + row * n_out_, n_out_ * sizeof(T));
            if (rows.sample_weight) sample_weight_.data()[i] = rows.sample_weight[row];
        }
    }

    const Rows<T> *rows_ = nullptr;
    const std::int64_t *order_ = nullptr;
    std::size_t size_ = 0, n_in_ = 0, n_out_ = 0;
    Buffer<T> x_, y_, sample_weight_;
    std::atomic<std::size_t> claimed_{0};  // rows [0, claimed_) are someone's to copy
};

// A call's rows as batches: batch k gathered through the order (the rows of batch k + 1
// then offered to the team's idle workers, into the other buffer), or a slice of the
// data.
template <class T> class RowBatches {
  public:
    RowBatches(std::size_t n_inputs, std::size_t n_outputs)
        : n_inputs_(n_inputs), n_outputs_(n_outputs) {}

    // The batches of a call over `rows` (which outlive it), in batches of batch_size unless
    // rows.shares says otherwise. Throws std::invalid_argument on an order or shares
    // outside the rows.
    void begin(const Rows<T> &rows, std::size_t batch_size) {
        if (rows.order != nullptr) check_order(rows);
        if (rows.shares != nullptr) check_shares(rows);
        rows_ = &rows;
        batch_size_ = batch_size;
    }

    std::size_t count() const {
        return rows_->shares ? rows_->shares->n_batches
                             : (rows_->n_order - 1) / batch_size_ + 1;
    }

    // The position within its global batch of batch k's first row (this process's share).
    std::size_t first_position(std::size_t k) const {
        return rows_->shares ? std::size_t(rows_->shares->position[k]) : 0;
    }

    // Batch k (this process's share of it, with shares).
    Batch<T> at(std::size_t k) {
        const Rows<T> &rows = *rows_;
        const RowRange at = range_of(k);
        const T *sample_weight = rows.sample_weight ? rows.sample_weight + at.start : nullptr;
        if (rows.order == nullptr && rows.sparse_X) {
            return {Input<T>(rows.sparse_X, nullptr, at.start), rows.Y + at.start * n_outputs_,
                    sample_weight, at.size};
        }
        if (rows.order == nullptr) {
            return {rows.X + at.start * n_inputs_, rows.Y + at.start * n_outputs_, sample_weight,
                    at.size};
        }
        const bool gathered_ahead = ahead_ != nullptr && ahead_batch_ == k;
        GatheredRows<T> &batch = gathered_ahead ? *ahead_ : gathered_[0];
        stop_gathering_ahead();
        if (!gathered_ahead) prepare(batch, at);
        batch.finish(blas::get_num_threads());
        if (k + 1 < count()) {
            GatheredRows<T> &next = &batch == &gathered_[0] ? gathered_[1] : gathered_[0];
            const RowRange after = range_of(k + 1);
            prepare(next, after);
            if (after.size > 0 && Team::instance().post_idle_work(&next)) {
                ahead_ = &next;
                ahead_batch_ = k + 1;
            }
        }
        // Sparse X: the kernels read the rows of the order in place; Y and the weights are
        // gathered.
        const Input<T> X =
            rows.sparse_X ? Input<T>(rows.sparse_X, rows.order + at.start, 0) : Input<T>(batch.X());
        return {X, batch.Y(), batch.sample_weight(), at.size};
    }

    // Takes back the rows offered to the workers: none of them is copying any afterwards.
    void stop_gathering_ahead() {
        if (ahead_ != nullptr) Team::instance().withdraw_idle_work(ahead_);
        ahead_ = nullptr;
    }

  private:
    // Positions [start, start + size) of the order.
    struct RowRange {
        std::size_t start, size;
    };

    RowRange range_of(std::size_t k) const {
        if (rows_->shares != nullptr) {
            const std::size_t start = std::size_t(rows_->shares->begin[k]);
            return {start, std::size_t(rows_->shares->end[k]) - start};
        }
        const std::size_t start = k * batch_size_;
        return {start, std::min(batch_size_, rows_->n_order - start)};
    }

    void prepare(GatheredRows<T> &batch, RowRange at) const {
        batch.prepare(*rows_, rows_->order + at.start, at.size, n_inputs_, n_outputs_);
    }

    static void check_shares(const Rows<T> &rows) {
        const Shares &shares = *rows.shares;
        for (std::size_t k = 0; k < shares.n_batches; ++k) {
            const std::int64_t begin = shares.begin[k], end = shares.end[k];
            if (!(0 <= begin && begin <= end && std::uint64_t(end) <= rows.n_order &&
                  shares.position[k] >= 0)) {
                throw std::invalid_argument("shares: batch " + std::to_string(k) +
                                            " is not a range of the order with a position >= 0");
            }
        }
    }

    static void check_order(const Rows<T> &rows) {
        for (std::size_t i = 0; i < rows.n_order; ++i) {
            const std::int64_t row = rows.order[i];
            if (row < 0 || std::uint64_t(row) >= rows.n_rows) {
                throw std::invalid_argument("order: index " + std::to_string(row) +
                                            " at position " + std::to_string(i) +
                                            " is outside [0, " + std::to_string(rows.n_rows) + ")");
            }
        }
    }

    const std::size_t n_inputs_, n_outputs_;
    const Rows<T> *rows_ = nullptr;
    std::size_t batch_size_ = 1;
    std::array<GatheredRows<T>, 2> gathered_;  // a batch's rows, and the next batch's
    GatheredRows<T> *ahead_ = nullptr;         // offered to the team's idle workers
    std::size_t ahead_batch_ = 0;              // the batch whose rows ahead_ gathers
};

}  // namespace deltaprop
