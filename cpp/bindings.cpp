// deltaprop._core: the only file that knows Python. It checks every array
// (dtype, contiguity, alignment, shape, writability), releases the GIL and
// calls the core. Arrays are taken strictly (noconvert): a silent conversion
// would copy, and writes into the copy would be lost.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "blas.hpp"
#include "network.hpp"

namespace py = pybind11;
using deltaprop::Mlp;
using deltaprop::Network;

namespace {

template <class T> using Array = py::array_t<T, py::array::c_style>;

std::string shape_of(const py::array &array) {
    std::string text = "(";
    for (py::ssize_t d = 0; d < array.ndim(); ++d) {
        text += (d ? ", " : "") + std::to_string(array.shape(d));
    }
    return text + (array.ndim() == 1 ? ",)" : ")");
}

template <class T> void check_aligned(const py::array &array, const char *name) {
    if (reinterpret_cast<std::uintptr_t>(array.data()) % alignof(T) != 0) {
        throw std::invalid_argument(std::string(name) + ": array is not aligned");
    }
}

template <class T> void check_writeable(const py::array &array, const char *name) {
    if (!array.writeable()) throw std::invalid_argument(std::string(name) + ": array is read-only");
}

// The bytes an array's elements occupy (all arrays here are contiguous).
struct Span {
    const char *name;
    const py::array *array;
    bool written;
};

// A written argument must not share memory with any other argument: the core would
// read values it has already overwritten.
void check_disjoint(std::initializer_list<Span> spans, const std::vector<Span> &more = {}) {
    std::vector<Span> all(spans);
    all.insert(all.end(), more.begin(), more.end());
    for (std::size_t i = 0; i < all.size(); ++i) {
        for (std::size_t j = 0; j < all.size(); ++j) {
            if (i == j || !all[i].written || !all[i].array || !all[j].array) continue;
            const char *a = static_cast<const char *>(all[i].array->data());
            const char *b = static_cast<const char *>(all[j].array->data());
            const auto a_bytes = std::size_t(all[i].array->nbytes());
            const auto b_bytes = std::size_t(all[j].array->nbytes());
            if (a_bytes && b_bytes && a < b + b_bytes && b < a + a_bytes) {
                throw std::invalid_argument(std::string(all[i].name) + ": shares memory with " +
                                            all[j].name);
            }
        }
    }
}

template <class T> void check_sample_weight(const Array<T> &sample_weight, std::size_t n_rows) {
    check_aligned<T>(sample_weight, "sample_weight");
    if (sample_weight.ndim() != 1 || std::size_t(sample_weight.shape(0)) != n_rows) {
        throw std::invalid_argument("sample_weight: expected shape (" + std::to_string(n_rows) +
                                    ",), got " + shape_of(sample_weight));
    }
}

// A (rows, cols) matrix; without rows, any number of rows (at least min_rows).
template <class T>
std::size_t check_matrix(const Array<T> &array, const char *name, std::optional<std::size_t> rows,
                         std::size_t cols, std::size_t min_rows = 1) {
    check_aligned<T>(array, name);
    const bool ok =
        array.ndim() == 2 && std::size_t(array.shape(1)) == cols &&
        (rows ? std::size_t(array.shape(0)) == *rows : std::size_t(array.shape(0)) >= min_rows);
    if (!ok) {
        const std::string n = rows ? std::to_string(*rows) : "n >= " + std::to_string(min_rows);
        throw std::invalid_argument(std::string(name) + ": expected shape (" + n + ", " +
                                    std::to_string(cols) + "), got " + shape_of(array));
    }
    return std::size_t(array.shape(0));
}

// X of a call: a C-contiguous array of T, taken strictly (as noconvert), or the CSR
// matrix of deltaprop._sparse.SparseRows (data of T, int32 or int64 indices and row
// pointers), whose rows the core reads in place.
template <class T> struct InputArg {
    Array<T> values;  // the dense X, or the CSR matrix's data
    std::optional<py::array> indices, indptr;
    std::size_t n_rows = 0, n_cols = 0;
    deltaprop::CsrMatrix<T> csr{};

    bool sparse() const { return indices.has_value(); }

    // The rows of X, checked: (rows, n_in), or any number of rows (at least min_rows).
    // A CSR matrix's structure is checked in full (see check_structure).
    std::size_t check(std::optional<std::size_t> rows, std::size_t n_in, std::size_t min_rows = 1) {
        if (!sparse()) return check_matrix(values, "X", rows, n_in, min_rows);
        const auto index_array = [](const py::array &array, const char *name, std::size_t size) {
            const bool wide = py::array_t<std::int64_t, py::array::c_style>::check_(array);
            if (!wide && !py::array_t<std::int32_t, py::array::c_style>::check_(array)) {
                throw std::invalid_argument(std::string("X: ") + name +
                                            " must be a C-contiguous int32 or int64 array");
            }
            if (wide) check_aligned<std::int64_t>(array, "X");
            if (!wide) check_aligned<std::int32_t>(array, "X");
            if (array.ndim() != 1 || std::size_t(array.shape(0)) != size) {
                throw std::invalid_argument(std::string("X: ") + name + " must have shape (" +
                                            std::to_string(size) + ",), got " + shape_of(array));
            }
            return wide;
        };
        check_aligned<T>(values, "X");
        if (values.ndim() != 1) throw std::invalid_argument("X: data must be 1-D");
        const auto nnz = std::size_t(values.shape(0));
        const bool indices_64 = index_array(*indices, "indices", nnz);
        const bool indptr_64 = index_array(*indptr, "indptr", n_rows + 1);
        if (n_cols != n_in || (rows ? n_rows != *rows : n_rows < min_rows)) {
            const std::string n = rows ? std::to_string(*rows) : "n >= " + std::to_string(min_rows);
            throw std::invalid_argument("X: expected shape (" + n + ", " + std::to_string(n_in) +
                                        "), got (" + std::to_string(n_rows) + ", " +
                                        std::to_string(n_cols) + ")");
        }
        csr = {values.data(), indices->data(), indices_64, indptr->data(), indptr_64,
               nnz,           n_rows,          n_cols};
        py::gil_scoped_release nogil;
        deltaprop::check_structure(csr);
        return n_rows;
    }

    // After check(): the core's view of X (this argument outlives the call).
    deltaprop::Input<T> input() const {
        if (sparse()) return deltaprop::Input<T>(&csr, nullptr, 0);
        return deltaprop::Input<T>(values.data());
    }
    const T *dense() const { return sparse() ? nullptr : values.data(); }
    const deltaprop::CsrMatrix<T> *csr_or_null() const { return sparse() ? &csr : nullptr; }
};

}  // namespace

namespace pybind11::detail {
template <class T> struct type_caster<InputArg<T>> {
    PYBIND11_TYPE_CASTER(InputArg<T>, const_name("numpy.ndarray | SparseRows"));

    // Strict, as noconvert: an array of another dtype or layout is not taken.
    bool load(handle source, bool) {
        if (Array<T>::check_(source)) {
            value.values = reinterpret_borrow<Array<T>>(source);
            return true;
        }
        if (!hasattr(source, "_deltaprop_csr")) return false;
        const object data = source.attr("data");
        if (!Array<T>::check_(data)) return false;
        const auto shape = source.attr("shape").cast<std::pair<std::size_t, std::size_t>>();
        value.values = reinterpret_borrow<Array<T>>(data);
        value.indices = source.attr("indices").cast<array>();
        value.indptr = source.attr("indptr").cast<array>();
        value.n_rows = shape.first;
        value.n_cols = shape.second;
        return true;
    }
};
}  // namespace pybind11::detail

namespace {

template <class T> void check_params(const Mlp<T> &mlp, const Array<T> &params, const char *name) {
    check_aligned<T>(params, name);
    if (params.ndim() != 1 || std::size_t(params.shape(0)) != mlp.n_params()) {
        throw std::invalid_argument(std::string(name) + ": expected shape (" +
                                    std::to_string(mlp.n_params()) + ",), got " + shape_of(params));
    }
}

// The optimizer's state arrays, as many as the method keeps, each shaped like params.
template <class T>
deltaprop::OptimizerState<T> optimizer_state(const Mlp<T> &mlp, const deltaprop::UpdateRule &rule,
                                             std::vector<Array<T>> &state,
                                             Array<std::int64_t> &step) {
    const std::size_t needed = std::size_t(deltaprop::state_arrays(rule.method));
    if (state.size() != needed) {
        throw std::invalid_argument("state: this optimizer keeps " + std::to_string(needed) +
                                    " arrays, got " + std::to_string(state.size()));
    }
    check_aligned<std::int64_t>(step, "step");
    check_writeable<std::int64_t>(step, "step");
    if (step.ndim() != 1 || step.shape(0) != 1 || step.data()[0] < 0) {
        throw std::invalid_argument("step: expected one non-negative count, shape (1,)");
    }
    deltaprop::OptimizerState<T> memory;
    memory.step = step.mutable_data();
    for (std::size_t i = 0; i < needed; ++i) {
        check_params(mlp, state[i], "state");
        check_writeable<T>(state[i], "state");
        (i == 0 ? memory.first : memory.second) = state[i].mutable_data();
    }
    return memory;
}

std::size_t check_order(const Array<std::int64_t> &order, bool may_be_empty) {
    check_aligned<std::int64_t>(order, "order");
    if (order.ndim() != 1 || (order.shape(0) < 1 && !may_be_empty)) {
        throw std::invalid_argument("order: expected a non-empty 1-D array, got shape " +
                                    shape_of(order));
    }
    return std::size_t(order.shape(0));
}

// Data-parallel training's shares: rows begin, end and position of each batch.
deltaprop::Shares check_shares(const Array<std::int64_t> &shares) {
    check_aligned<std::int64_t>(shares, "shares");
    if (shares.ndim() != 2 || shares.shape(0) != 3 || shares.shape(1) < 1) {
        throw std::invalid_argument("shares: expected shape (3, n_batches >= 1), got " +
                                    shape_of(shares));
    }
    const auto n_batches = std::size_t(shares.shape(1));
    const std::int64_t *data = shares.data();
    return {data, data + n_batches, data + 2 * n_batches, n_batches};
}

// The reductions of data-parallel training: Python callables that sum, in place, a
// float array over the processes. The core calls them with the GIL, on arrays that view
// its own memory (the statuses, the parameters, the velocity or a gradient buffer) and
// are valid during the call only.
template <class T> std::function<void(T *, std::size_t)> summing_with(const py::function &reduce) {
    // `reduce` outlives the call: the lambda holds a reference, never a copy (no py::
    // object is copied or destroyed without the GIL).
    return [&reduce](T *values, std::size_t count) {
        py::gil_scoped_acquire gil;
        const py::capsule no_owner(values, [](void *) {});  // a view: numpy copies nothing
        reduce(py::array_t<T>(py::ssize_t(count), values, no_owner));
    };
}

// fit(diagnostics=True)'s accumulator: float64, writeable, diagnostics_size entries.
template <class T>
void check_diagnostics(const deltaprop::Mlp<T> &mlp, const Array<double> &diagnostics) {
    check_aligned<double>(diagnostics, "diagnostics");
    check_writeable<double>(diagnostics, "diagnostics");
    const std::size_t size = deltaprop::diagnostics_size(mlp.architecture());
    if (diagnostics.ndim() != 1 || std::size_t(diagnostics.shape(0)) != size) {
        throw std::invalid_argument("diagnostics: expected shape (" + std::to_string(size) +
                                    ",), got " + shape_of(diagnostics));
    }
}

// The L2 and L1 coefficients of the regularisation term.
void check_strengths(double l2, double l1) {
    if (!(std::isfinite(l2) && l2 >= 0 && std::isfinite(l1) && l1 >= 0)) {
        throw std::invalid_argument("l2, l1: expected finite numbers >= 0");
    }
}

std::string to_string(deltaprop::Activation f) {
    using deltaprop::Activation;
    switch (f) {
        case Activation::sigmoid: return "sigmoid";
        case Activation::tanh: return "tanh";
        case Activation::relu: return "relu";
        case Activation::leaky_relu: return "leaky_relu";
        case Activation::identity: return "identity";
        case Activation::softmax: return "softmax";
    }
    return "";
}

std::string to_string(deltaprop::Cost cost) {
    switch (cost) {
        case deltaprop::Cost::quadratic: return "quadratic";
        case deltaprop::Cost::cross_entropy: return "cross_entropy";
        case deltaprop::Cost::log_likelihood: return "log_likelihood";
    }
    return "";
}

std::string to_string(deltaprop::MatmulPrecision precision) {
    return precision == deltaprop::MatmulPrecision::bfloat16 ? "bfloat16" : "highest";
}

// deltaprop._core.TrainSettings, built from keyword arguments only, one per field: an
// unknown, missing or ill-typed field is a TypeError naming it, a value out of range a
// ValueError (check_settings). The fields are read-only afterwards.
class SettingsFields {
  public:
    using Settings = deltaprop::TrainSettings;

    explicit SettingsFields(py::class_<Settings> &cls) : cls_(cls) {}

    // A field: its name, member, whether a call must give it, its type and meaning.
    template <class Field>
    void add(const char *name, Field Settings::*member, bool required, const char *type,
             const char *doc) {
        cls_.def_readonly(name, member, doc);
        const auto set = [member](Settings &settings, py::handle value) {
            settings.*member = value.cast<Field>();
        };
        fields_.push_back({name, required, type, set});
    }

    // The constructor and repr, once every field is added.
    void finish() {
        const std::vector<Field> fields = fields_;
        cls_.def(py::init([fields](const py::kwargs &kwargs) { return build(fields, kwargs); }),
                 ("Keyword arguments only: " + names(fields) + ".").c_str());
        cls_.def("__repr__", [fields](const py::object &self) {
            std::string text = "TrainSettings(";
            for (const Field &field : fields) {
                text += (&field == &fields.front() ? "" : ", ") + std::string(field.name) + "=" +
                        py::repr(self.attr(field.name)).cast<std::string>();
            }
            return text + ")";
        });
    }

  private:
    struct Field {
        const char *name;
        bool required;
        const char *type;
        std::function<void(Settings &, py::handle)> set;
    };

    static std::string names(const std::vector<Field> &fields) {
        std::string text;
        for (const Field &field : fields) {
            text += (text.empty() ? "" : ", ") + std::string(field.name) +
                    (field.required ? "" : " (optional)");
        }
        return text;
    }

    static Settings build(const std::vector<Field> &fields, const py::kwargs &kwargs) {
        Settings settings;
        for (const auto &[key, value] : kwargs) {
            const std::string name = py::str(key);
            const auto field = std::find_if(fields.begin(), fields.end(),
                                            [&](const Field &f) { return name == f.name; });
            if (field == fields.end()) {
                throw py::type_error("TrainSettings: unknown field '" + name + "'; the fields are " +
                                     names(fields));
            }
            try {
                field->set(settings, value);
            } catch (const py::cast_error &) {
                throw py::type_error("TrainSettings: " + name + ": expected " + field->type +
                                     ", got " + py::repr(value).cast<std::string>());
            }
        }
        for (const Field &field : fields) {
            if (field.required && !kwargs.contains(field.name)) {
                throw py::type_error("TrainSettings: missing field '" + std::string(field.name) +
                                     "'");
            }
        }
        deltaprop::check_settings(settings);
        return settings;
    }

    py::class_<Settings> &cls_;
    std::vector<Field> fields_;
};

// Adding a training option: its field in settings.hpp, its line here.
void bind_train_settings(py::module_ &m) {
    using deltaprop::TrainSettings;
    py::class_<TrainSettings> cls(m, "TrainSettings", "The options of a call of Mlp.train.");
    SettingsFields fields(cls);
    fields.add("batch_size", &TrainSettings::batch_size, true, "an int >= 1",
               "Rows per mini-batch; the last may be smaller.");
    fields.add("rule", &TrainSettings::rule, true, "an UpdateRule", "The update after each batch.");
    fields.add("dropout", &TrainSettings::dropout, false, "a float in [0, 1)",
               "Fraction of hidden units dropped (default 0).");
    fields.add("seed", &TrainSettings::seed, false, "an int in [0, 2**64)",
               "Seed of the dropout masks (default 0).");
    fields.add("first_batch", &TrainSettings::first_batch, false, "an int in [0, 2**64)",
               "Index within its epoch of the call's first batch (default 0): batch k's "
               "dropout masks depend on (seed, first_batch + k).");
    fields.finish();
}

// The sums of data-parallel training: `reduction` has reduce(values) and
// reduce_statuses(statuses), which sum a float array over the processes in place, lead
// and bucket_bytes (see deltaprop._distributed.Group).
template <class T> struct ReductionArg {
    py::function reduce, reduce_statuses;
    bool lead;
    std::size_t bucket_bytes;

    explicit ReductionArg(const py::object &reduction) {
        try {
            reduce = reduction.attr("reduce").cast<py::function>();
            reduce_statuses = reduction.attr("reduce_statuses").cast<py::function>();
            lead = reduction.attr("lead").cast<bool>();
            bucket_bytes = reduction.attr("bucket_bytes").cast<std::size_t>();
        } catch (const py::error_already_set &error) {
            if (!error.matches(PyExc_AttributeError)) throw;
            throw py::type_error(expected(reduction));
        } catch (const py::cast_error &) {
            throw py::type_error(expected(reduction));
        }
    }

    deltaprop::AcrossProcesses<T> across() const {
        return {summing_with<T>(reduce_statuses), summing_with<T>(reduce), lead, bucket_bytes};
    }

  private:
    static std::string expected(const py::object &reduction) {
        return "reduction: expected an object with reduce and reduce_statuses (callables), lead "
               "(bool) and bucket_bytes (int >= 0), got " +
               py::repr(reduction).cast<std::string>();
    }
};

template <class T> void bind_mlp(py::module_ &m, const char *class_name) {
    py::class_<Network<T>>(m, class_name,
                           "The network's architecture and workspaces (parameters live in a flat "
                           "array passed to each call).")
        .def(py::init([](const std::vector<std::size_t> &sizes,
                         const std::vector<std::string> &activations, const std::string &output,
                         const std::string &cost, const std::vector<double> &leaky_slopes) {
                 std::vector<deltaprop::Activation> hidden;
                 for (const std::string &name : activations) {
                     hidden.push_back(deltaprop::parse_activation(name, "activation"));
                 }
                 return new Network<T>(deltaprop::Architecture{
                     sizes, hidden, deltaprop::parse_activation(output, "output"),
                     deltaprop::parse_cost(cost), leaky_slopes});
             }),
             py::arg("sizes"), py::arg("activations"), py::arg("output"), py::arg("cost"),
             py::arg("leaky_slopes"),
             "One activation and one leaky_relu slope per hidden layer (l = 1..L-1).")
        .def_property_readonly("sizes",
                               [](const Network<T> &net) { return net.mlp().architecture().sizes; })
        .def_property_readonly("activations",
                               [](const Network<T> &net) {
                                   std::vector<std::string> names;
                                   for (deltaprop::Activation f : net.mlp().architecture().hidden) {
                                       names.push_back(to_string(f));
                                   }
                                   return names;
                               })
        .def_property_readonly(
            "output",
            [](const Network<T> &net) { return to_string(net.mlp().architecture().output); })
        .def_property_readonly(
            "cost_name",
            [](const Network<T> &net) { return to_string(net.mlp().architecture().cost); })
        .def_property_readonly(
            "leaky_slopes",
            [](const Network<T> &net) { return net.mlp().architecture().leaky_slopes; })
        .def_property(
            "matmul_precision",
            [](const Network<T> &net) { return to_string(net.mlp().matmul_precision()); },
            [](Network<T> &net, const std::string &name) {
                net.set_matmul_precision(deltaprop::parse_matmul_precision(name));
            },
            "The precision of the GEMMs: 'highest' (the dtype's) or 'bfloat16' (float32 "
            "only).")
        .def_property_readonly("n_params",
                               [](const Network<T> &net) { return net.mlp().n_params(); })
        .def_property_readonly(
            "diagnostics_size",
            [](const Network<T> &net) {
                return deltaprop::diagnostics_size(net.mlp().architecture());
            },
            "Entries of train's diagnostics accumulator (see cpp/diagnostics.hpp).")
        .def(
            "predict",
            [](Network<T> &net, const Array<T> &params, InputArg<T> &X, Array<T> &out) {
                check_params(net.mlp(), params, "params");
                const std::size_t n = X.check(std::nullopt, net.mlp().n_inputs());
                check_matrix(out, "out", n, net.mlp().n_outputs());
                check_writeable<T>(out, "out");
                check_disjoint(
                    {{"out", &out, true}, {"params", &params, false}, {"X", &X.values, false}});
                const T *p = params.data();
                const deltaprop::Input<T> x = X.input();
                T *o = out.mutable_data();
                py::gil_scoped_release nogil;
                net.predict(p, x, n, o);
            },
            py::arg("params").noconvert(), py::arg("X").noconvert(), py::arg("out").noconvert(),
            "out (n, n_L) <- output activations a^L for the n rows of X (n, n_0).")
        .def(
            "cost",
            [](Network<T> &net, const Array<T> &params, InputArg<T> &X, const Array<T> &Y) {
                check_params(net.mlp(), params, "params");
                const std::size_t n = X.check(std::nullopt, net.mlp().n_inputs());
                check_matrix(Y, "Y", n, net.mlp().n_outputs());
                const T *p = params.data(), *y = Y.data();
                const deltaprop::Input<T> x = X.input();
                py::gil_scoped_release nogil;
                return net.cost(p, x, y, n);
            },
            py::arg("params").noconvert(), py::arg("X").noconvert(), py::arg("Y").noconvert(),
            "Mean cost over the rows of X (n, n_0) with targets Y (n, n_L).")
        .def(
            "layers",
            [](Network<T> &net, const Array<T> &params, InputArg<T> &X,
               const std::optional<Array<T>> &Y, Array<T> &z_out, Array<T> &a_out,
               std::optional<Array<T>> &delta_out) {
                check_params(net.mlp(), params, "params");
                const std::size_t n = X.check(std::nullopt, net.mlp().n_inputs());
                if (Y) check_matrix(*Y, "Y", n, net.mlp().n_outputs());
                if (Y.has_value() != delta_out.has_value()) {
                    throw std::invalid_argument("layers: Y and delta_out go together");
                }
                std::size_t values = 0;
                for (std::size_t l = 1; l <= net.mlp().n_layers(); ++l) {
                    values += n * net.mlp().architecture().sizes[l];
                }
                const auto check_output = [values](const Array<T> &array, const char *name) {
                    check_writeable<T>(array, name);
                    if (std::size_t(array.size()) != values || array.ndim() != 1) {
                        throw std::invalid_argument(std::string(name) + ": expected " +
                                                    std::to_string(values) + " values");
                    }
                };
                check_output(z_out, "z_out");
                check_output(a_out, "a_out");
                if (delta_out) check_output(*delta_out, "delta_out");
                check_disjoint({{"z_out", &z_out, true},
                                {"a_out", &a_out, true},
                                {"delta_out", delta_out ? &*delta_out : nullptr, true},
                                {"params", &params, false},
                                {"X", &X.values, false},
                                {"Y", Y ? &*Y : nullptr, false}});
                const T *p = params.data(), *y = Y ? Y->data() : nullptr;
                const deltaprop::Input<T> x = X.input();
                T *z = z_out.mutable_data(), *a = a_out.mutable_data();
                T *d = delta_out ? delta_out->mutable_data() : nullptr;
                py::gil_scoped_release nogil;
                net.layers(p, x, y, n, z, a, d);
            },
            py::arg("params").noconvert(), py::arg("X").noconvert(), py::arg("Y").noconvert(),
            py::arg("z_out").noconvert(), py::arg("a_out").noconvert(),
            py::arg("delta_out").noconvert(),
            "z^l, a^l and (with Y) each row's delta^l of every layer, layer after layer.")
        .def(
            "gradients",
            [](Network<T> &net, const Array<T> &params, InputArg<T> &X, const Array<T> &Y,
               Array<T> &grads) {
                check_params(net.mlp(), params, "params");
                check_params(net.mlp(), grads, "grads");
                check_writeable<T>(grads, "grads");
                const std::size_t B = X.check(std::nullopt, net.mlp().n_inputs());
                check_matrix(Y, "Y", B, net.mlp().n_outputs());
                check_disjoint({{"grads", &grads, true},
                                {"params", &params, false},
                                {"X", &X.values, false},
                                {"Y", &Y, false}});
                const T *p = params.data(), *y = Y.data();
                const deltaprop::Input<T> x = X.input();
                T *g = grads.mutable_data();
                py::gil_scoped_release nogil;
                return net.gradients(p, x, y, B, g);
            },
            py::arg("params").noconvert(), py::arg("X").noconvert(), py::arg("Y").noconvert(),
            py::arg("grads").noconvert(),
            "grads <- batch-averaged dC/dparams; returns the batch's mean cost.")
        .def(
            "objective",
            [](Network<T> &net, const Array<T> &params, InputArg<T> &X, const Array<T> &Y,
               const std::optional<Array<T>> &sample_weight, double l2, double l1,
               Array<T> &grads) {
                check_params(net.mlp(), params, "params");
                check_params(net.mlp(), grads, "grads");
                check_writeable<T>(grads, "grads");
                const std::size_t n = X.check(std::nullopt, net.mlp().n_inputs());
                check_matrix(Y, "Y", n, net.mlp().n_outputs());
                if (sample_weight) check_sample_weight(*sample_weight, n);
                check_strengths(l2, l1);
                check_disjoint(
                    {{"grads", &grads, true},
                     {"params", &params, false},
                     {"X", &X.values, false},
                     {"Y", &Y, false},
                     {"sample_weight", sample_weight ? &*sample_weight : nullptr, false}});
                const T *p = params.data(), *y = Y.data();
                const deltaprop::Input<T> x = X.input();
                const T *w = sample_weight ? sample_weight->data() : nullptr;
                T *g = grads.mutable_data();
                py::gil_scoped_release nogil;
                return net.objective(p, x, y, w, n, l2, l1, g);
            },
            py::arg("params").noconvert(), py::arg("X").noconvert(), py::arg("Y").noconvert(),
            py::arg("sample_weight").noconvert(), py::arg("l2"), py::arg("l1"),
            py::arg("grads").noconvert(),
            "Full-batch objective: the (weighted) mean cost over all rows plus "
            "l2/2 ||W||^2 + l1 ||W||_1; grads <- its gradient.")
        .def(
            "regularise",
            [](Network<T> &net, const Array<T> &params, double l2, double l1, Array<T> &grads) {
                check_params(net.mlp(), params, "params");
                check_params(net.mlp(), grads, "grads");
                check_writeable<T>(grads, "grads");
                check_strengths(l2, l1);
                check_disjoint({{"grads", &grads, true}, {"params", &params, false}});
                const T *p = params.data();
                T *g = grads.mutable_data();
                py::gil_scoped_release nogil;
                return net.regularise(p, l2, l1, g);
            },
            py::arg("params").noconvert(), py::arg("l2"), py::arg("l1"),
            py::arg("grads").noconvert(),
            "l2/2 ||W||^2 + l1 ||W||_1 over the weights; grads += its gradient.")
        .def(
            "train",
            [](Network<T> &net, Array<T> &params, std::vector<Array<T>> &state,
               Array<std::int64_t> &step, InputArg<T> &X, const Array<T> &Y,
               const std::optional<Array<T>> &sample_weight,
               const std::optional<Array<std::int64_t>> &order, const py::object &settings_arg,
               const std::optional<Array<std::int64_t>> &shares,
               const std::optional<py::object> &reduction_arg,
               std::optional<Array<double>> &diagnostics) {
                if (!py::isinstance<deltaprop::TrainSettings>(settings_arg)) {
                    throw py::type_error("settings: expected a deltaprop._core.TrainSettings, got " +
                                         py::repr(settings_arg).cast<std::string>());
                }
                const auto settings = settings_arg.cast<deltaprop::TrainSettings>();
                check_params(net.mlp(), params, "params");
                check_writeable<T>(params, "params");
                deltaprop::OptimizerState<T> memory =
                    optimizer_state(net.mlp(), settings.rule, state, step);
                // A process of data-parallel training may have no rows of its own.
                const std::size_t n_rows =
                    X.check(std::nullopt, net.mlp().n_inputs(), shares ? 0 : 1);
                check_matrix(Y, "Y", n_rows, net.mlp().n_outputs());
                const std::size_t n_order = order ? check_order(*order, bool(shares)) : n_rows;
                if (sample_weight) check_sample_weight(*sample_weight, n_rows);
                deltaprop::check_settings(settings);
                if (bool(shares) != bool(reduction_arg)) {
                    throw std::invalid_argument(
                        "shares, reduction: give both (data-parallel training) or neither");
                }
                std::vector<Span> spans;
                for (const auto &array : state) spans.push_back({"state", &array, true});
                check_disjoint({{"params", &params, true},
                                {"step", &step, true},
                                {"X", &X.values, false},
                                {"Y", &Y, false},
                                {"sample_weight", sample_weight ? &*sample_weight : nullptr, false},
                                {"order", order ? &*order : nullptr, false},
                                {"shares", shares ? &*shares : nullptr, false},
                                {"diagnostics", diagnostics ? &*diagnostics : nullptr, true}},
                               spans);
                if (diagnostics) check_diagnostics(net.mlp(), *diagnostics);
                std::optional<deltaprop::Shares> share;
                std::optional<ReductionArg<T>> sums;  // holds the callables during the call
                std::optional<deltaprop::AcrossProcesses<T>> across;
                deltaprop::Alone<T> alone;
                if (shares) {
                    share = check_shares(*shares);
                    sums.emplace(*reduction_arg);
                    across.emplace(sums->across());
                }
                deltaprop::Reduction<T> &reduction =
                    across ? static_cast<deltaprop::Reduction<T> &>(*across) : alone;
                T *p = params.mutable_data();
                deltaprop::Rows<T> rows;
                rows.X = X.dense();
                rows.sparse_X = X.csr_or_null();
                rows.Y = Y.data();
                rows.sample_weight = sample_weight ? sample_weight->data() : nullptr;
                rows.n_rows = n_rows;
                rows.order = order ? order->data() : nullptr;
                rows.n_order = n_order;
                rows.shares = share ? &*share : nullptr;
                deltaprop::TrainOutcome outcome;
                {
                    py::gil_scoped_release nogil;
                    outcome = net.train(p, memory, rows, settings, reduction,
                                        diagnostics ? diagnostics->mutable_data() : nullptr);
                }
                return py::make_tuple(outcome.cost, outcome.sample_weight, outcome.diverged_batch,
                                      outcome.stopped_batch);
            },
            py::arg("params").noconvert(), py::arg("state").noconvert(),
            py::arg("step").noconvert(), py::arg("X").noconvert(), py::arg("Y").noconvert(),
            py::arg("sample_weight").noconvert(), py::arg("order").noconvert(),
            py::arg("settings"), py::arg("shares").noconvert() = py::none(),
            py::arg("reduction") = py::none(), py::arg("diagnostics").noconvert() = py::none(),
            "Mini-batch training over the rows order (None: all rows in storage order) as "
            "settings (a TrainSettings) say, updating params, the optimizer state and its step "
            "count in place. With shares (3, n_batches) (this process's rows begin, end and "
            "position in each global batch) and a reduction, each batch calls "
            "reduction.reduce_statuses(statuses) (REDUCTION_TAIL entries: cost, sample "
            "weight, non-finite counts, stop requests) and then reduction.reduce(values) (a "
            "bucket of layers' velocity, parameters or gradient, of reduction.bucket_bytes or "
            "more, from the top layer down), each to sum its array over the processes in "
            "place; reduction.lead: this process adds the state every process shares. "
            "Returns (summed cost, summed sample weight, diverged batch or -1, batch stopped "
            "after or -1). With diagnostics (float64, diagnostics_size entries), each batch "
            "adds its measures to them (see cpp/diagnostics.hpp).");
}

// all_finite(values): no NaN or infinity among the values of a C-contiguous, aligned
// float32 or float64 array, checked with the core's BLAS thread count.
template <class T> void bind_all_finite(py::module_ &m) {
    m.def(
        "all_finite",
        [](const Array<T> &values) {
            check_aligned<T>(values, "values");
            const T *data = values.data();
            const auto count = std::size_t(values.size());
            py::gil_scoped_release release;
            return deltaprop::all_finite(data, count, deltaprop::blas::get_num_threads());
        },
        py::arg("values").noconvert(), "Whether every value is finite (no NaN or infinity).");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "deltaprop's compiled core: batched backpropagation on OpenBLAS (private API)";
    deltaprop::blas::use_team();
    py::class_<deltaprop::UpdateRule>(m, "UpdateRule", "Hyper-parameters of a parameter update.")
        .def(py::init([](const std::string &method, double lr, double momentum, double beta1,
                         double beta2, double eps, double l2, double l1, double decoupled_decay,
                         double eta_minus, double eta_plus, double step_min, double step_max) {
                 const deltaprop::UpdateRule rule{deltaprop::parse_method(method),
                                                  lr,
                                                  momentum,
                                                  beta1,
                                                  beta2,
                                                  eps,
                                                  l2,
                                                  l1,
                                                  decoupled_decay,
                                                  eta_minus,
                                                  eta_plus,
                                                  step_min,
                                                  step_max};
                 deltaprop::check_rule(rule);
                 return rule;
             }),
             py::arg("method"), py::arg("lr"), py::arg("momentum") = 0.0, py::arg("beta1") = 0.9,
             py::arg("beta2") = 0.999, py::arg("eps") = 1e-8, py::arg("l2") = 0.0,
             py::arg("l1") = 0.0, py::arg("decoupled_decay") = 0.0, py::arg("eta_minus") = 0.5,
             py::arg("eta_plus") = 1.2, py::arg("step_min") = 1e-6, py::arg("step_max") = 50.0)
        .def_readonly("lr", &deltaprop::UpdateRule::lr)
        .def_readonly("l2", &deltaprop::UpdateRule::l2)
        .def_readonly("l1", &deltaprop::UpdateRule::l1);
    // The statuses data-parallel training sums per batch; the last counts stop requests.
    m.attr("REDUCTION_TAIL") = py::int_(std::size_t(deltaprop::kReductionTail));
    bind_train_settings(m);
    bind_mlp<float>(m, "Mlp32");
    bind_mlp<double>(m, "Mlp64");
    bind_all_finite<float>(m);
    bind_all_finite<double>(m);
    m.def(
        "set_num_threads",
        [](int n) {
            if (n < 1) throw std::invalid_argument("n: expected a positive integer");
            deltaprop::blas::set_num_threads(n);
        },
        py::arg("n"), "Set the number of OpenBLAS threads deltaprop uses.");
    m.def("get_num_threads", &deltaprop::blas::get_num_threads,
          "Number of OpenBLAS threads deltaprop uses.");
    m.def(
        "load_onednn", [](const std::string &path) { deltaprop::onednn::Matmul::instance().load(path); },
        py::arg("path"), "Open oneDNN's library (libdnnl.so.3) at path for bfloat16 products.");
    m.def(
        "onednn_loaded", [] { return deltaprop::onednn::Matmul::instance().loaded(); },
        "Whether oneDNN's library is open.");
    m.def(
        "bfloat16_native", [] { return deltaprop::Bfloat16Path::instance().native(); },
        "Whether bfloat16 products run natively in oneDNN (else the float32 fallback).");
    m.def(
        "bfloat16_bits",
        [](py::array_t<float, py::array::c_style | py::array::forcecast> values,
           const std::string &instructions) {
            using deltaprop::RoundingKernel;
            const std::map<std::string, RoundingKernel> kernels = {
                {"scalar", RoundingKernel::scalar},
                {"avx2", RoundingKernel::avx2},
                {"avx512", RoundingKernel::avx512}};
            const auto found = kernels.find(instructions);
            if (found == kernels.end()) {
                throw std::invalid_argument(
                    "instructions: expected 'scalar', 'avx2' or 'avx512', got '" + instructions +
                    "'");
            }
            if (!deltaprop::cpu_has(found->second)) {
                throw std::invalid_argument("instructions: this CPU has no " + instructions);
            }
            py::array_t<std::uint16_t> bits(values.size());
            deltaprop::to_bf16(values.data(), bits.mutable_data(), std::size_t(values.size()),
                               found->second);
            return bits;
        },
        py::arg("values"), py::arg("instructions"),
        "The bfloat16 bits of float32 values (nearest, ties to even), rounded with the given "
        "instructions (for tests).");
    m.def(
        "force_bfloat16_fallback",
        [](bool forced) { deltaprop::Bfloat16Path::instance().force_fallback(forced); },
        py::arg("forced"), "Run bfloat16 products through the float32 fallback (for tests).");
}
