// The only file that knows oneDNN: its matmul primitive with bfloat16 operands and a
// float32 result, C = alpha op(A) op(B) + beta C. oneDNN is an optional library (the
// bf16 extra: PyPI's onednn-cpu-gomp), so the core does not link to it; load() opens
// libdnnl.so.3 at run time and takes the few C functions it needs. No Python here.
//
// The products run on the core's team, one row (or column) block per thread, each
// block a oneDNN call on one thread: one pool of threads for OpenBLAS, the element-wise
// passes and oneDNN, and no OpenMP threads spinning beside the team's.
#pragma once

#include <dlfcn.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "onednn_abi.hpp"
#include "team.hpp"

namespace deltaprop::onednn {

using bf16 = std::uint16_t;  // a bfloat16's bits: the top half of a float32's

// The C functions of libdnnl.so.3 the matmuls use.
struct Api {
    engine_create_f engine_create;
    stream_create_f stream_create;
    memory_desc_create_with_strides_f memory_desc_create_with_strides;
    memory_desc_destroy_f memory_desc_destroy;
    primitive_attr_create_f primitive_attr_create;
    primitive_attr_destroy_f primitive_attr_destroy;
    primitive_attr_set_post_ops_f primitive_attr_set_post_ops;
    post_ops_create_f post_ops_create;
    post_ops_destroy_f post_ops_destroy;
    post_ops_append_sum_f post_ops_append_sum;
    matmul_primitive_desc_create_f matmul_primitive_desc_create;
    primitive_desc_destroy_f primitive_desc_destroy;
    primitive_create_f primitive_create;
    primitive_destroy_f primitive_destroy;
    stream_destroy_f stream_destroy;
    memory_destroy_f memory_destroy;
    memory_create_f memory_create;
    memory_set_data_handle_f memory_set_data_handle;
    primitive_execute_f primitive_execute;
    stream_wait_f stream_wait;
    get_effective_cpu_isa_f get_effective_cpu_isa;
    primitive_attr_set_scales_mask_f primitive_attr_set_scales_mask;
    primitive_attr_set_scratchpad_mode_f primitive_attr_set_scratchpad_mode;
    primitive_desc_query_md_f primitive_desc_query_md;
    memory_desc_get_size_f memory_desc_get_size;
    void (*omp_set_num_threads)(int);
};

inline void check(status_t status, const char *what) {
    if (status != success) {
        throw std::runtime_error(std::string("oneDNN: ") + what + " failed (status " +
                                 std::to_string(int(status)) + ")");
    }
}

// Row-major C (M, N) = alpha op(A) op(B) + beta C, op(A) (M, K) and op(B) (K, N) of
// bfloat16, C of float32, as blas::gemm. Primitives are cached per shape and scalars.
class Matmul {
  public:
    static Matmul &instance() {
        static Matmul *matmul = new Matmul();  // never destroyed: as the team
        return *matmul;
    }

    // Opens the library at `path` (once; later calls do nothing).
    void load(const std::string &path) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (handle_ != nullptr) return;
        void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (handle == nullptr) throw std::runtime_error(std::string("oneDNN: ") + dlerror());
        Api api{};
        bind(handle, api.engine_create, "dnnl_engine_create");
        bind(handle, api.stream_create, "dnnl_stream_create");
        bind(handle, api.memory_desc_create_with_strides, "dnnl_memory_desc_create_with_strides");
        bind(handle, api.memory_desc_destroy, "dnnl_memory_desc_destroy");
        bind(handle, api.primitive_attr_create, "dnnl_primitive_attr_create");
        bind(handle, api.primitive_attr_destroy, "dnnl_primitive_attr_destroy");
        bind(handle, api.primitive_attr_set_post_ops, "dnnl_primitive_attr_set_post_ops");
        bind(handle, api.post_ops_create, "dnnl_post_ops_create");
        bind(handle, api.post_ops_destroy, "dnnl_post_ops_destroy");
        bind(handle, api.post_ops_append_sum, "dnnl_post_ops_append_sum");
        bind(handle, api.matmul_primitive_desc_create, "dnnl_matmul_primitive_desc_create");
        bind(handle, api.primitive_desc_destroy, "dnnl_primitive_desc_destroy");
        bind(handle, api.primitive_create, "dnnl_primitive_create");
        bind(handle, api.primitive_destroy, "dnnl_primitive_destroy");
        bind(handle, api.stream_destroy, "dnnl_stream_destroy");
        bind(handle, api.memory_destroy, "dnnl_memory_destroy");
        bind(handle, api.memory_create, "dnnl_memory_create");
        bind(handle, api.memory_set_data_handle, "dnnl_memory_set_data_handle");
        bind(handle, api.primitive_execute, "dnnl_primitive_execute");
        bind(handle, api.stream_wait, "dnnl_stream_wait");
        bind(handle, api.get_effective_cpu_isa, "dnnl_get_effective_cpu_isa");
        bind(handle, api.primitive_attr_set_scales_mask, "dnnl_primitive_attr_set_scales_mask");
        bind(handle, api.primitive_attr_set_scratchpad_mode,
             "dnnl_primitive_attr_set_scratchpad_mode");
        bind(handle, api.primitive_desc_query_md, "dnnl_primitive_desc_query_md");
        bind(handle, api.memory_desc_get_size, "dnnl_memory_desc_get_size");
        bind(handle, api.omp_set_num_threads, "omp_set_num_threads");  // its libgomp's
        check(api.engine_create(&engine_, engine_cpu, 0), "engine_create");
        api_ = api;
        // AVX512_BF16 (or AMX, whose ISA includes it): bfloat16 dot products in hardware.
        const unsigned isa = unsigned(api.get_effective_cpu_isa());
        native_ = (isa & isa_avx512_core_bf16) == isa_avx512_core_bf16;
        handle_ = handle;
    }

    bool loaded() const { return handle_ != nullptr; }

    // Whether oneDNN runs bfloat16 products natively on this CPU.
    bool native() const { return native_; }

    // On up to `threads` threads of the team, one block of C's rows each (or, when C has
    // too few rows for a block per thread, of its columns). Each block's operands are
    // dense: a block of op(A)'s rows that is a block of A's columns (trans_a) is first
    // copied out, because oneDNN runs strided operands in its slower non-AMX gemm (BP4's
    // products took 70 GFLOP/s per thread in it, against several hundred in brgemm).
    void gemm(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K, float alpha,
              const bf16 *A, std::size_t lda, const bf16 *B, std::size_t ldb, float beta, float *C,
              std::size_t ldc, int threads) {
        const std::size_t wanted = std::size_t(std::max(threads, 1));
        const bool by_rows = M >= wanted * kMinBlock || M >= N;
        const std::size_t extent = by_rows ? M : N;
        const std::size_t n_jobs =
            std::max<std::size_t>(1, std::min<std::size_t>(wanted, extent / kMinBlock));
        // parallel_for with a grain of 1 cuts [0, extent) into n_jobs blocks of
        // ceil(extent / n_jobs).
        const auto run_block = [&](std::size_t begin, std::size_t end) {
            const std::size_t size = end - begin;
            Call call{trans_a, trans_b, M, N, K, lda, ldb, ldc, alpha != 1, beta};
            const bf16 *a = A, *b = B;
            float *c = C;
            if (by_rows) {
                call.M = size;
                c += begin * ldc;
                if (trans_a && n_jobs > 1) {
                    a = dense_rows_of_transposed(A, lda, begin, size, K);
                    call.trans_a = false;
                    call.lda = K;
                } else {
                    a += trans_a ? begin : begin * lda;
                }
            } else {
                call.N = size;
                b += trans_b ? begin * ldb : begin;
                c += begin;
            }
            execute(call, alpha, a, b, c);
        };
        Team::instance().parallel_for(extent, 1, int(n_jobs), run_block);
    }

  private:
    // One product's shape, strides, whether alpha != 1 and beta: the key of a cached
    // primitive. alpha is a scale given at each call, so that a schedule's new rates reuse
    // the primitive.
    struct Call {
        bool trans_a, trans_b;
        std::size_t M, N, K, lda, ldb, ldc;
        bool scaled;
        float beta;
        auto key() const { return std::tie(trans_a, trans_b, M, N, K, lda, ldb, ldc, scaled, beta); }
        bool operator<(const Call &other) const { return key() < other.key(); }
    };

    // The memory objects whose data pointers each call sets, and a stream: one set per
    // thread that runs the primitive (streams and memory objects are not shared).
    // Each slot has its own scratchpad: oneDNN's own is one per process unless it was
    // built for concurrent execution, and the team's threads run blocks at once.
    struct Slot {
        stream_t stream = nullptr;
        memory_t src = nullptr, weights = nullptr, dst = nullptr, scratchpad = nullptr;
        memory_t scale = nullptr;  // alpha, one float32 at &alpha
        float alpha = 1;
        std::vector<unsigned char> scratch;
    };

    // A primitive and its memory descriptors, with a slot for each thread that ran it.
    struct Primitive {
        const Api &api;
        engine_t engine;
        primitive_t primitive = nullptr;
        primitive_desc_t desc = nullptr;  // kept: it owns the scratchpad's descriptor
        memory_desc_t src = nullptr, weights = nullptr, dst = nullptr, scale = nullptr;
        std::mutex mutex;
        std::map<std::thread::id, Slot> slots;

        Primitive(const Api &api_, engine_t engine_) : api(api_), engine(engine_) {}
        Primitive(const Primitive &) = delete;
        Primitive &operator=(const Primitive &) = delete;
        ~Primitive() {
            for (auto &[thread, slot] : slots) {
                api.memory_destroy(slot.src);
                api.memory_destroy(slot.weights);
                api.memory_destroy(slot.dst);
                api.memory_destroy(slot.scratchpad);
                if (slot.scale) api.memory_destroy(slot.scale);
                api.stream_destroy(slot.stream);
            }
            if (primitive) api.primitive_destroy(primitive);
            if (desc) api.primitive_desc_destroy(desc);
            for (memory_desc_t desc : {src, weights, dst, scale}) {
                if (desc) api.memory_desc_destroy(desc);
            }
        }

        Slot &slot_of_this_thread() {
            std::lock_guard<std::mutex> lock(mutex);
            const auto [at, added] = slots.try_emplace(std::this_thread::get_id());
            Slot &slot = at->second;
            if (added) {
                check(api.stream_create(&slot.stream, engine, stream_default),
                      "stream_create");
                check(api.memory_create(&slot.src, src, engine, nullptr), "memory");
                check(api.memory_create(&slot.weights, weights, engine, nullptr),
                      "memory");
                check(api.memory_create(&slot.dst, dst, engine, nullptr), "memory");
                const dnnl_memory_desc *scratchpad =
                    api.primitive_desc_query_md(desc, query_scratchpad_md, 0);
                slot.scratch.resize(std::max<std::size_t>(1, api.memory_desc_get_size(scratchpad)));
                check(api.memory_create(&slot.scratchpad, scratchpad, engine, slot.scratch.data()),
                      "memory");
                if (scale) check(api.memory_create(&slot.scale, scale, engine, &slot.alpha), "memory");
            }
            return slot;
        }
    };

    // Blocks of at least 64 rows or columns: oneDNN's kernels work in such tiles.
    static constexpr std::size_t kMinBlock = 64;

    // op(A)'s rows [begin, begin + rows) of a transposed A, stored (K, lda): A's columns
    // [begin, begin + rows), copied into this thread's buffer as a dense (rows, K) matrix,
    // in tiles that stay in cache.
    static const bf16 *dense_rows_of_transposed(const bf16 *A, std::size_t lda, std::size_t begin,
                                                std::size_t rows, std::size_t K) {
        constexpr std::size_t kTile = 32;
        thread_local std::vector<bf16> buffer;
        buffer.resize(rows * K);
        bf16 *to = buffer.data();
        for (std::size_t k0 = 0; k0 < K; k0 += kTile) {
            const std::size_t k1 = std::min(K, k0 + kTile);
            for (std::size_t i0 = 0; i0 < rows; i0 += kTile) {
                const std::size_t i1 = std::min(rows, i0 + kTile);
                for (std::size_t k = k0; k < k1; ++k) {
                    const bf16 *from = A + k * lda + begin;
                    for (std::size_t i = i0; i < i1; ++i) to[i * K + k] = from[i];
                }
            }
        }
        return to;
    }

    template <class F> static void bind(void *handle, F &function, const char *name) {
        function = reinterpret_cast<F>(dlsym(handle, name));
        if (function == nullptr) {
            throw std::runtime_error(std::string("oneDNN: the library lacks ") + name);
        }
    }

    // A (rows, cols) matrix at `ld` per row, or, transposed, its (cols, rows) storage read
    // as (rows, cols).
    memory_desc_t matrix(std::size_t rows, std::size_t cols, std::size_t ld, bool transposed,
                              int type) const {
        const dims_t dims = {dim_t(rows), dim_t(cols)};
        const dims_t strides = {transposed ? 1 : dim_t(ld),
                                     transposed ? dim_t(ld) : 1};
        memory_desc_t desc;
        check(api_.memory_desc_create_with_strides(&desc, 2, dims, type, strides), "memory_desc");
        return desc;
    }

    // alpha as a scale of the source (given at each call), beta C as a sum post-op (beta
    // = 0: C is not read, as in BLAS). An eltwise "linear" post-op for alpha would send
    // the blocks of a split product (strided operands) to oneDNN's reference kernel.
    std::shared_ptr<Primitive> create(const Call &call) const {
        auto made = std::make_shared<Primitive>(api_, engine_);
        made->src = matrix(call.M, call.K, call.lda, call.trans_a, data_type_bf16);
        made->weights = matrix(call.K, call.N, call.ldb, call.trans_b, data_type_bf16);
        made->dst = matrix(call.M, call.N, call.ldc, false, data_type_f32);
        post_ops_t post_ops;
        check(api_.post_ops_create(&post_ops), "post_ops_create");
        const std::unique_ptr<dnnl_post_ops, post_ops_destroy_f> post_ops_owner(
            post_ops, api_.post_ops_destroy);
        if (call.beta != 0) {
            check(api_.post_ops_append_sum(post_ops, call.beta, 0, data_type_undef),
                  "post_ops_append_sum");
        }
        primitive_attr_t attr;
        check(api_.primitive_attr_create(&attr), "primitive_attr_create");
        const std::unique_ptr<dnnl_primitive_attr, primitive_attr_destroy_f>
            attr_owner(attr, api_.primitive_attr_destroy);
        check(api_.primitive_attr_set_post_ops(attr, post_ops), "primitive_attr_set_post_ops");
        if (call.scaled) {
            check(api_.primitive_attr_set_scales_mask(attr, arg_src, 0), "set_scales_mask");
            const dims_t one = {1};
            check(api_.memory_desc_create_with_strides(&made->scale, 1, one, data_type_f32, one),
                  "memory_desc");
        }
        check(api_.primitive_attr_set_scratchpad_mode(attr, scratchpad_mode_user),
              "primitive_attr_set_scratchpad_mode");
        check(api_.matmul_primitive_desc_create(&made->desc, engine_, made->src, made->weights,
                                                nullptr, made->dst, attr),
              "matmul_primitive_desc_create");
        check(api_.primitive_create(&made->primitive, made->desc), "primitive_create");
        return made;
    }

    // Past kMaxCached shapes (a program of many networks), the cache starts afresh (a
    // call running one of the dropped primitives holds it until it returns).
    std::shared_ptr<Primitive> primitive_for(const Call &call) {
        constexpr std::size_t kMaxCached = 256;
        std::lock_guard<std::mutex> lock(mutex_);
        const auto found = cache_.find(call);
        if (found != cache_.end()) return found->second;
        if (cache_.size() >= kMaxCached) cache_.clear();
        return cache_[call] = create(call);
    }

    void execute(const Call &call, float alpha, const bf16 *A, const bf16 *B, float *C) {
        // One thread per block, from the primitive's creation on: oneDNN's OpenMP stays
        // on the calling team thread and starts no threads of its own.
        api_.omp_set_num_threads(1);
        const std::shared_ptr<Primitive> primitive = primitive_for(call);
        Slot &slot = primitive->slot_of_this_thread();
        check(api_.memory_set_data_handle(slot.src, const_cast<bf16 *>(A)), "set_data_handle");
        check(api_.memory_set_data_handle(slot.weights, const_cast<bf16 *>(B)), "set_data_handle");
        check(api_.memory_set_data_handle(slot.dst, C), "set_data_handle");
        slot.alpha = alpha;
        const exec_arg_t args[] = {{arg_src, slot.src},
                                   {arg_weights, slot.weights},
                                   {arg_dst, slot.dst},
                                   {arg_scratchpad, slot.scratchpad},
                                   {arg_src_scales, slot.scale}};
        check(api_.primitive_execute(primitive->primitive, slot.stream, call.scaled ? 5 : 4, args),
              "execute");
        check(api_.stream_wait(slot.stream), "stream_wait");
    }

    std::mutex mutex_;
    void *handle_ = nullptr;
    Api api_{};
    engine_t engine_ = nullptr;
    bool native_ = false;
    std::map<Call, std::shared_ptr<Primitive>> cache_;
};

}  // namespace deltaprop::onednn
