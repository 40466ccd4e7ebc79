// The pieces of the _tcache extension module. python/src/module.cc calls each
// bind_* once, in this order, from PYBIND11_MODULE(_tcache, m); each is
// defined, at global scope, in the file named beside it.
//
// Thread safety: the bind_* functions run once, with the GIL held, while the
// interpreter imports the module; they are not meant to be called again.
#pragma once

#include <pybind11/pybind11.h>

// python/src/errors.cc: tcache::Error -> the tcache.errors class of its Errc
// (imports tcache.errors and registers the exception translator).
void bind_errors(pybind11::module_& m);

// python/src/store.cc: _tcache.Store and _tcache.compact.
void bind_store(pybind11::module_& m);

// python/src/function.cc: _tcache.Function and its lease tokens.
void bind_function(pybind11::module_& m);

// python/src/config.cc: push_config/pop_config/current_config.
void bind_config(pybind11::module_& m);

// python/src/codec*.cc (pycodec): encode_key, encode_value, decode_value,
// cpp_encode, cpp_decode, cpp_fingerprint.
void bind_codec(pybind11::module_& m);
