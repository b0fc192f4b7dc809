// The core's threads: one team that runs OpenBLAS's parallel work (registered as its
// threading backend) and the core's own element-wise passes. With OpenBLAS's own
// threads, a pass of the core (the momentum step, gathering a batch) ran on the
// calling thread while OpenBLAS's other threads spun idle on the other cores; one team
// serves both without two pools competing for the cores. No Python here.
#pragma once

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DELTAPROP_PAUSE() _mm_pause()
#else
#define DELTAPROP_PAUSE() std::this_thread::yield()
#endif

namespace deltaprop {

// The least of an element-wise pass worth a job of its own on the team: 4K elements
// (16 KB of float32) take a microsecond or more, a parallel region a fraction of one.
constexpr std::size_t kElementsPerJob = std::size_t(1) << 12;

// A parallel region: job(i) for every i in [0, n_jobs), all at once (OpenBLAS's jobs
// wait for each other's packed blocks, so they may not run one after another).
class Team {
  public:
    using Job = void (*)(void *context, int index);

    // The one team of the process (never destroyed: its threads outlive static
    // destructors at exit).
    static Team &instance() {
        static Team *team = new Team();
        return *team;
    }

    // Runs job(context, i) for i in [0, n_jobs), job 0 on the calling thread, the others
    // on workers, and returns when all are done. One region at a time: a region started
    // from another thread meanwhile waits. A job may not start a region itself.
    void run(int n_jobs, Job job, void *context) {
        if (n_jobs <= 1) {
            if (n_jobs == 1) job(context, 0);
            return;
        }
        std::lock_guard<std::mutex> region(region_);
        hire(std::size_t(n_jobs - 1));
        job_ = job;
        context_ = context;
        n_jobs_ = n_jobs;
        // Every worker answers every region, those without a job too: none can still be
        // reading this region's job when the next one is written.
        unfinished_.store(int(n_workers_), std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_seq_cst);
        if (sleepers_.load(std::memory_order_seq_cst) > 0) {
            std::lock_guard<std::mutex> lock(sleep_mutex_);
            wake_.notify_all();
        }
        job(context, 0);
        wait_for_workers();
    }

    // A loop over [0, count) in chunks of `grain` (a multiple of it, but the last), one
    // per job, on at most `threads` threads: each element's arithmetic stays the same
    // whatever the split, so the results do not depend on the number of threads.
    template <class Body>
    void parallel_for(std::size_t count, std::size_t grain, int threads, const Body &body) {
        const std::size_t chunks = (count + grain - 1) / grain;
        const int n_jobs = int(std::min<std::size_t>(std::max(threads, 1), chunks));
        if (n_jobs <= 1) {
            body(std::size_t(0), count);
            return;
        }
        struct Loop {
            const Body &body;
            std::size_t count, per_job;
        } loop{body, count, (chunks + std::size_t(n_jobs) - 1) / std::size_t(n_jobs) * grain};
        run(
            n_jobs,
            [](void *context, int index) {
                const Loop &loop = *static_cast<const Loop *>(context);
                const std::size_t begin = std::min(loop.count, std::size_t(index) * loop.per_job);
                const std::size_t end = std::min(loop.count, begin + loop.per_job);
                if (begin < end) loop.body(begin, end);
            },
            &loop);
    }

    // parallel_for over a body that answers whether its chunk was good (finite, say):
    // whether every chunk was.
    template <class Body>
    bool parallel_all(std::size_t count, std::size_t grain, int threads, const Body &body) {
        std::atomic<bool> all{true};
        parallel_for(count, grain, threads, [&](std::size_t begin, std::size_t end) {
            if (!body(begin, end)) all.store(false, std::memory_order_relaxed);
        });
        return all.load(std::memory_order_relaxed);
    }

    // Work that idle workers take up between regions, one piece at a time (the rows of
    // the next batch, gathered ahead): a region started meanwhile waits at most for the
    // pieces in hand. Pieces must not start regions.
    class IdleWork {
      public:
        virtual bool do_one() = 0;  // false: nothing left to do

      protected:
        ~IdleWork() = default;
    };

    // Offers `work` to the workers; false when another thread's work is posted already
    // (then nobody but the caller does it).
    bool post_idle_work(IdleWork *work) {
        IdleWork *none = nullptr;
        return idle_work_.compare_exchange_strong(none, work);
    }

    // Takes `work` back, if posted, and returns once no worker is inside a piece of it:
    // what they did is then visible to the caller.
    void withdraw_idle_work(IdleWork *work) {
        IdleWork *posted = work;
        idle_work_.compare_exchange_strong(posted, nullptr);
        for (unsigned spins = 1; in_idle_work_.load() != 0; ++spins) pause_or_yield(spins);
    }

    // In the child of a fork, which has only the forking thread: forget the workers and
    // reset the locks. The Python layer forks only when no call of the core is running.
    void forget_workers_after_fork() {
        idle_work_.store(nullptr);
        in_idle_work_.store(0);
        n_workers_ = 0;
        new (&region_) std::mutex();
        new (&sleep_mutex_) std::mutex();
        new (&wake_) std::condition_variable();
        new (&done_mutex_) std::mutex();
        new (&done_) std::condition_variable();
        caller_asleep_.store(false);
        sleepers_.store(0);
        unfinished_.store(0);
    }

  private:
    // How long an idle worker spins before it sleeps: long enough to span the gaps
    // between the GEMMs and passes of one batch, short enough to leave the core soon
    // after a call (as OpenBLAS's own threads, which spin 2^20 cycles here).
    static constexpr auto kSpin = std::chrono::microseconds(300);

    Team() {
        pthread_atfork(nullptr, nullptr, [] { instance().forget_workers_after_fork(); });
    }

    // A pause while spinning, and every 256th time a yield of the core: with more threads
    // than cores (set_num_threads above the core count, or several processes), the thread
    // waited for may need this one's core to finish.
    static void pause_or_yield(unsigned spins) {
        if (spins % 256 == 0) {
            std::this_thread::yield();
        } else {
            DELTAPROP_PAUSE();
        }
    }

    // How long the caller spins for the workers' jobs before it sleeps: a worker that
    // is late has waited for a core (another process computes there), and a caller that
    // sleeps frees its own core for that worker. Spinning on, it would hold the core
    // the worker needs for a time slice of the scheduler, region after region (an epoch
    // of 20,000 rows beside one busy process: 1.3 s instead of 0.25 s alone).
    static constexpr auto kCallerSpin = std::chrono::microseconds(30);

    void wait_for_workers() {
        const auto until = std::chrono::steady_clock::now() + kCallerSpin;
        for (unsigned spins = 1; unfinished_.load(std::memory_order_acquire) != 0; ++spins) {
            pause_or_yield(spins);
            if (spins % 64 == 0 && std::chrono::steady_clock::now() > until) {
                // The last worker to finish reads caller_asleep_ after its decrement; this
                // thread reads unfinished_ after setting it (both sequentially consistent):
                // either the wait sees 0, or the worker wakes it.
                std::unique_lock<std::mutex> lock(done_mutex_);
                caller_asleep_.store(true, std::memory_order_seq_cst);
                done_.wait(lock, [&] { return unfinished_.load(std::memory_order_seq_cst) == 0; });
                caller_asleep_.store(false, std::memory_order_relaxed);
                return;
            }
        }
    }

    // A new worker starts from the generation before the region that hires it.
    void hire(std::size_t n_workers) {
        const std::uint64_t seen = generation_.load(std::memory_order_relaxed);
        for (; n_workers_ < n_workers; ++n_workers_) {
            const int index = int(n_workers_) + 1;
            std::thread([this, index, seen] { work(index, seen); }).detach();
        }
    }

    void work(int index, std::uint64_t seen) {
        for (;;) {
            seen = next_generation(seen);
            if (index < n_jobs_) job_(context_, index);
            if (unfinished_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
                caller_asleep_.load(std::memory_order_seq_cst)) {
                std::lock_guard<std::mutex> lock(done_mutex_);
                done_.notify_one();
            }
        }
    }

    // Waits for a region newer than `seen`: spinning first, then asleep.
    std::uint64_t next_generation(std::uint64_t seen) {
        const auto until = std::chrono::steady_clock::now() + kSpin;
        for (unsigned spins = 0;; ++spins) {
            const std::uint64_t now = generation_.load(std::memory_order_acquire);
            if (now != seen) return now;
            if (!do_idle_work()) pause_or_yield(spins);
            if (spins % 256 == 255 && std::chrono::steady_clock::now() > until) break;
        }
        std::unique_lock<std::mutex> lock(sleep_mutex_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        // run() bumps the generation before it reads sleepers_: either this load sees
        // the new generation, or run() sees this sleeper and wakes it.
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_seq_cst) != seen; });
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
        return generation_.load(std::memory_order_acquire);
    }

    // One piece of the posted idle work, if any; whether there was one. The count goes
    // up before the work is read, and withdraw_idle_work clears the work before it
    // reads the count (both sequentially consistent): either this thread sees no work,
    // or the withdrawal waits for this piece.
    bool do_idle_work() {
        in_idle_work_.fetch_add(1);
        IdleWork *work = idle_work_.load();
        const bool did = work != nullptr && work->do_one();
        in_idle_work_.fetch_sub(1, std::memory_order_release);
        return did;
    }

    std::mutex region_;          // one parallel region at a time
    std::size_t n_workers_ = 0;  // detached threads, which live as long as the process
    std::atomic<std::uint64_t> generation_{0};  // bumped by each region
    std::atomic<int> unfinished_{0};            // workers yet to finish the region
    std::atomic<int> sleepers_{0};
    std::atomic<IdleWork *> idle_work_{nullptr};
    std::atomic<int> in_idle_work_{0};  // workers inside a piece of idle work
    std::mutex sleep_mutex_;
    std::condition_variable wake_;
    std::atomic<bool> caller_asleep_{false};  // run() waits in done_ for the last worker
    std::mutex done_mutex_;
    std::condition_variable done_;
    Job job_ = nullptr;  // the region's job and its context (written before the bump)
    void *context_ = nullptr;
    int n_jobs_ = 0;
};

}  // namespace deltaprop
