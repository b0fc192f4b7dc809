// The part of oneDNN 3's C interface (dnnl.h, Apache-2.0) that onednn_matmul.hpp calls:
// opaque handles, the enum values it passes and the functions' types. libdnnl.so.3 keeps
// this interface stable within its major version, so the core builds without oneDNN's
// headers and opens the library at run time. Values are those of oneDNN 3.2's
// dnnl_common_types.h and dnnl_types.h.
#pragma once

#include <cstddef>
#include <cstdint>

namespace deltaprop::onednn {

struct dnnl_engine;
struct dnnl_stream;
struct dnnl_memory_desc;
struct dnnl_memory;
struct dnnl_primitive_desc;
struct dnnl_primitive_attr;
struct dnnl_post_ops;
struct dnnl_primitive;

using engine_t = dnnl_engine *;
using stream_t = dnnl_stream *;
using memory_desc_t = dnnl_memory_desc *;
using memory_t = dnnl_memory *;
using primitive_desc_t = dnnl_primitive_desc *;
using primitive_attr_t = dnnl_primitive_attr *;
using post_ops_t = dnnl_post_ops *;
using primitive_t = dnnl_primitive *;

using status_t = int;  // dnnl_status_t
using dim_t = std::int64_t;
using dims_t = dim_t[12];  // DNNL_MAX_NDIMS

constexpr status_t success = 0;
constexpr int engine_cpu = 1;               // dnnl_cpu
constexpr int data_type_undef = 0;          // dnnl_data_type_undef
constexpr int data_type_bf16 = 2;           // dnnl_bf16
constexpr int data_type_f32 = 3;            // dnnl_f32
constexpr unsigned stream_default = 0x1u;   // dnnl_stream_default_flags (in order)
constexpr unsigned isa_avx512_core_bf16 = 0xe7u;  // dnnl_cpu_isa_avx512_core_bf16's bits
constexpr int arg_src = 1, arg_weights = 33, arg_dst = 17, arg_scratchpad = 80;  // DNNL_ARG_*
constexpr int arg_src_scales = 4096 | arg_src;  // DNNL_ARG_ATTR_SCALES | DNNL_ARG_SRC
constexpr int scratchpad_mode_user = 1;  // dnnl_scratchpad_mode_user
constexpr int query_scratchpad_md = 136;  // dnnl_query_scratchpad_md

struct exec_arg_t {  // dnnl_exec_arg_t
    int arg;
    memory_t memory;
};

// The functions' types, in dnnl.h's order of arguments.
using engine_create_f = status_t (*)(engine_t *, int kind, std::size_t index);
using stream_create_f = status_t (*)(stream_t *, engine_t, unsigned flags);
using memory_desc_create_with_strides_f = status_t (*)(memory_desc_t *, int ndims,
                                                       const dims_t dims, int data_type,
                                                       const dims_t strides);
using memory_desc_destroy_f = status_t (*)(memory_desc_t);
using primitive_attr_create_f = status_t (*)(primitive_attr_t *);
using primitive_attr_destroy_f = status_t (*)(primitive_attr_t);
using primitive_attr_set_post_ops_f = status_t (*)(primitive_attr_t, const dnnl_post_ops *);
using post_ops_create_f = status_t (*)(post_ops_t *);
using post_ops_destroy_f = status_t (*)(post_ops_t);
using post_ops_append_sum_f = status_t (*)(post_ops_t, float scale, std::int32_t zero_point,
                                           int data_type);
using matmul_primitive_desc_create_f = status_t (*)(primitive_desc_t *, engine_t,
                                                    const dnnl_memory_desc *src,
                                                    const dnnl_memory_desc *weights,
                                                    const dnnl_memory_desc *bias,
                                                    const dnnl_memory_desc *dst,
                                                    const dnnl_primitive_attr *attr);
using primitive_desc_destroy_f = status_t (*)(primitive_desc_t);
using primitive_create_f = status_t (*)(primitive_t *, const dnnl_primitive_desc *);
using primitive_destroy_f = status_t (*)(primitive_t);
using stream_destroy_f = status_t (*)(stream_t);
using memory_destroy_f = status_t (*)(memory_t);
using memory_create_f = status_t (*)(memory_t *, const dnnl_memory_desc *, engine_t,
                                     void *handle);
using memory_set_data_handle_f = status_t (*)(memory_t, void *handle);
using primitive_execute_f = status_t (*)(const dnnl_primitive *, stream_t, int nargs,
                                         const exec_arg_t *args);
using stream_wait_f = status_t (*)(stream_t);
using get_effective_cpu_isa_f = int (*)();
using primitive_attr_set_scales_mask_f = status_t (*)(primitive_attr_t, int arg, int mask);
using primitive_attr_set_scratchpad_mode_f = status_t (*)(primitive_attr_t, int mode);
using primitive_desc_query_md_f = const dnnl_memory_desc *(*)(const dnnl_primitive_desc *,
                                                              int what, int index);
using memory_desc_get_size_f = std::size_t (*)(const dnnl_memory_desc *);

}  // namespace deltaprop::onednn
