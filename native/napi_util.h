// Small N-API helpers for native/addon.cc: argument reading that reports failures as a JsError (a code the TS
// binding maps to a KilnError subclass, and a message) instead of throwing, since no C++ exception may cross
// into JS, and builders for the plain objects the addon returns.
#pragma once
#include <node_api.h>

#include <cmath>
#include <string>

#include "kiln/tensor_view.h"

namespace kiln {

struct JsError {
  const char* code;
  std::string message;
};

inline const char* code_for(StatusCode c) {
  switch (c) {
    case ST_SHAPE: return "KILN_SHAPE";
    case ST_DTYPE: return "KILN_DTYPE";
    case ST_ARG: return "KILN_ARG";
    case ST_OOM: return "KILN_OOM";
    default: return "KILN_BACKEND";
  }
}

#define NAPI_OK(call)                                                              \
  do {                                                                             \
    if ((call) != napi_ok) {                                                       \
      napi_throw_error(env, "KILN_BACKEND", "internal N-API call failed: " #call); \
      return nullptr;                                                              \
    }                                                                              \
  } while (0)

inline napi_value throw_js(napi_env env, const JsError& e) {
  napi_throw_error(env, e.code, e.message.c_str());
  return nullptr;
}

inline bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value* argv, JsError& err) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) {
    err = {"KILN_BACKEND", "could not read arguments"};
    return false;
  }
  if (argc < want) {
    err = {"KILN_ARG", "expected " + std::to_string(want) + " arguments, got " + std::to_string(argc)};
    return false;
  }
  return true;
}

inline bool get_number(napi_env env, napi_value v, const char* what, double& out, JsError& err) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    err = {"KILN_ARG", std::string(what) + " must be a number"};
    return false;
  }
  napi_get_value_double(env, v, &out);
  return true;
}

inline bool get_index(napi_env env, napi_value v, const char* what, double lo, double hi, int64_t& out, JsError& err) {
  double d;
  if (!get_number(env, v, what, d, err)) return false;
  if (!(d >= lo && d <= hi) || std::floor(d) != d) {
    err = {"KILN_ARG", std::string(what) + " must be an integer in [" + std::to_string(static_cast<int64_t>(lo)) +
                           ", " + std::to_string(static_cast<int64_t>(hi)) + "], got " + std::to_string(d)};
    return false;
  }
  out = static_cast<int64_t>(d);
  return true;
}

inline bool get_f64_array(napi_env env, napi_value v, const char* what, const double*& data, size_t& len,
                          JsError& err) {
  bool is_ta = false;
  napi_is_typedarray(env, v, &is_ta);
  if (!is_ta) {
    err = {"KILN_ARG", std::string(what) + " must be a Float64Array"};
    return false;
  }
  napi_typedarray_type type;
  void* raw = nullptr;
  napi_value ab;
  size_t off = 0;
  if (napi_get_typedarray_info(env, v, &type, &len, &raw, &ab, &off) != napi_ok || type != napi_float64_array) {
    err = {"KILN_ARG", std::string(what) + " must be a Float64Array"};
    return false;
  }
  data = static_cast<const double*>(raw);
  if (len > 0 && data == nullptr) {
    err = {"KILN_ARG", std::string(what) + " is detached"};
    return false;
  }
  return true;
}

/** A kernel's or runtime's Status as the JsError the binding understands. */
inline JsError js_error(const Status& st) { return JsError{code_for(st.code), st.message}; }

inline napi_value set_prop(napi_env env, napi_value obj, const char* key, napi_value v) {
  if (napi_set_named_property(env, obj, key, v) != napi_ok) return nullptr;
  return obj;
}
inline napi_value str(napi_env env, const std::string& s) {
  napi_value v = nullptr;
  napi_create_string_utf8(env, s.c_str(), s.size(), &v);
  return v;
}
inline napi_value num(napi_env env, double d) {
  napi_value v = nullptr;
  napi_create_double(env, d, &v);
  return v;
}
inline napi_value boolean(napi_env env, bool b) {
  napi_value v = nullptr;
  napi_get_boolean(env, b, &v);
  return v;
}

}  // namespace kiln
