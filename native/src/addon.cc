// The N-API glue: one JS class surface (Engine, Session) over both engines.
// Every argument from JavaScript is checked here (type, range, buffer length,
// handle state) and turned into a JS TypeError/RangeError/Error, so that bad
// input never reaches the engines as a bad pointer. Work that takes long
// (setTargets, iterate, lossAndGradient) runs on a libuv worker thread and
// returns a Promise; the engine is then marked busy and every other call on
// it throws until the promise settles (engines are not re-entrant), but for
// estimateMemory and deviceMemoryAvailable (engine.h says why they may run).
// Engine failures become JS Errors carrying their data (napi_errors.h).
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine.h"
#include "flow/flow.h"
#include "kernels/adam.cuh"
#include "napi_args.h"
#include "napi_errors.h"
#include "napi_masks.h"
#include "session_config.h"
#include "tile_geometry.h"
#include "vector_ops.h"

namespace {

using nst::kVgg19;
using nst::napi_errors::guarded;
using namespace nst::napi_args;

Napi::Object loss_to_js(Napi::Env env, const nst::LossValues& l) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("content", l.content);
  o.Set("style", l.style);
  o.Set("tv", l.tv);
  o.Set("temporal", l.temporal);
  o.Set("total", l.total);
  return o;
}

Napi::Array losses_to_js(Napi::Env env, const std::vector<nst::LossValues>& losses) {
  Napi::Array a = Napi::Array::New(env, losses.size());
  for (size_t i = 0; i < losses.size(); i++) a.Set(uint32_t(i), loss_to_js(env, losses[i]));
  return a;
}

// ---- shared state ----------------------------------------------------------

struct SessionState;

struct EngineState {
  std::unique_ptr<nst::Engine> engine;
  std::vector<std::weak_ptr<SessionState>> sessions;
  int num_layers = 0;  // after setWeights
  bool busy = false;
  bool disposed = false;
  void release_if_disposed();
};

struct SessionState {
  std::shared_ptr<EngineState> engine;  // declared first: outlives `session`
  std::unique_ptr<nst::Session> session;
  std::unique_ptr<nst::TileSession> tile_session;  // a tile session's state holds this instead
  nst::SessionConfig config;
  nst::TileSessionConfig tile_config;
  bool disposed = false;
  size_t image_values() const { return size_t(config.batch) * config.height * config.width * 3; }
};

// Frees what dispose() asked to free once no worker uses it: sessions before their engine.
void EngineState::release_if_disposed() {
  if (busy) return;
  for (auto& weak : sessions)
    if (auto s = weak.lock(); s && (s->disposed || disposed)) {
      s->session.reset();
      s->tile_session.reset();
    }
  if (disposed) engine.reset();
}

void check_usable(Napi::Env env, const EngineState& e, const char* op) {
  if (e.disposed) throw Napi::Error::New(env, std::string(op) + ": the engine has been disposed");
  if (e.busy)
    throw Napi::Error::New(
        env, std::string(op) + ": the engine is busy with an earlier call that has not finished (await it)");
}

void check_usable(Napi::Env env, const SessionState& s, const char* op) {
  if (s.disposed) throw Napi::Error::New(env, std::string(op) + ": the session has been disposed");
  check_usable(env, *s.engine, op);
}

// ---- the worker behind every Promise ---------------------------------------

// Runs one engine call (setTargets, iterate, lossAndGradient) on a libuv
// worker thread and settles its Promise on the JS thread.

class EngineCallWorker : public Napi::AsyncProgressWorker<int> {
 public:
  using Work = std::function<void(const std::function<void(int)>&)>;
  using Result = std::function<Napi::Value(Napi::Env)>;

  // Marks the engine busy until the call settles.
  static Napi::Promise Start(Napi::Env env, std::shared_ptr<SessionState> state, Work work, Result result,
                             Napi::Value on_progress = Napi::Value()) {
    auto* worker = new EngineCallWorker(env, std::move(state), std::move(work), std::move(result), on_progress);
    Napi::Promise promise = worker->deferred_.Promise();
    worker->state_->engine->busy = true;
    worker->Queue();
    return promise;
  }

 protected:
  void Execute(const ExecutionProgress& progress) override {
    try {
      work_([&](int done) { progress.Send(&done, 1); });
    } catch (const std::exception& e) {
      failure_ = nst::napi_errors::capture(e);
      SetError(e.what());
    }
  }
  void OnProgress(const int* done, size_t count) override {
    if (count == 0 || on_progress_.IsEmpty()) return;
    Napi::HandleScope scope(Env());
    try {
      on_progress_.Call({Napi::Number::New(Env(), done[count - 1])});
    } catch (const Napi::Error&) {
      // A throwing progress callback must not abort the optimisation.
    }
  }
  void OnOK() override {
    finish();
    Napi::HandleScope scope(Env());
    deferred_.Resolve(result_(Env()));
  }
  // Rejects with the engine's error and its data (napi_errors.h).
  void OnError(const Napi::Error&) override {
    finish();
    Napi::HandleScope scope(Env());
    deferred_.Reject(nst::napi_errors::to_js(Env(), failure_).Value());
  }

 private:
  EngineCallWorker(Napi::Env env, std::shared_ptr<SessionState> state, Work work, Result result,
                   Napi::Value on_progress)
      : Napi::AsyncProgressWorker<int>(env, "nst:engine-call"),
        deferred_(Napi::Promise::Deferred::New(env)),
        state_(std::move(state)),
        work_(std::move(work)),
        result_(std::move(result)) {
    if (on_progress.IsFunction()) on_progress_ = Napi::Persistent(on_progress.As<Napi::Function>());
  }
  void finish() {
    state_->engine->busy = false;
    state_->engine->release_if_disposed();
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<SessionState> state_;
  Work work_;
  Result result_;
  Napi::FunctionReference on_progress_;
  nst::napi_errors::Failure failure_;
};

// ---- Session ---------------------------------------------------------------

class SessionWrap : public Napi::ObjectWrap<SessionWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "NativeSession",
        {InstanceMethod<&SessionWrap::SetTargets>("setTargets"), InstanceMethod<&SessionWrap::SetImages>("setImages"),
         InstanceMethod<&SessionWrap::Iterate>("iterate"),
         InstanceMethod<&SessionWrap::LossAndGradient>("lossAndGradient"),
         InstanceMethod<&SessionWrap::ReadImages>("readImages"),
         InstanceMethod<&SessionWrap::ReadOptimizerState>("readOptimizerState"),
         InstanceMethod<&SessionWrap::WriteOptimizerState>("writeOptimizerState"),
         InstanceMethod<&SessionWrap::Dispose>("dispose")});
  }

  // Only EngineWrap::CreateSession constructs these (it passes an External).
  SessionWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SessionWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      type_error(info.Env(), "NativeSession cannot be constructed directly: use engine.createSession()");
    state_ = *info[0].As<Napi::External<std::shared_ptr<SessionState>>>().Data();
  }

 private:
  SessionState& usable(Napi::Env env, const char* op) {
    check_usable(env, *state_, op);
    return *state_;
  }

  // setTargets([{ content: {height,width,data}, styles: [{ image, weight, maskIndex?, region? }],
  //               temporal?: { image: {height,width,data}, weights: Float32Array (height x width) },
  //               styleMasks?: (Float32Array[] | null)[], contentMask?: Float32Array[] }]) ->
  //               Promise<void>
  // Masks (spatial control) come pooled to each loss layer: styleMasks one
  // entry per style region (null: unmasked), each a mask per style layer at
  // the session's layer sizes; a style's region a mask per style layer at
  // its image's layer sizes; contentMask one per content layer.
  Napi::Value SetTargets(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    SessionState& s = usable(env, "setTargets");
    Napi::Array items = array_arg(env, info[0], "setTargets: targets");
    if (int(items.Length()) != s.config.batch)
      range_error(env, "setTargets: expected " + std::to_string(s.config.batch) +
                           " targets (one per batch item), got " + std::to_string(items.Length()));
    // The pixels are copied so that the worker never reads JS memory.
    using Masks = std::vector<std::vector<float>>;  // one per loss layer
    struct OwnedImage {
      int height, width;
      std::vector<float> data;
      float weight;
      int mask_index = 0;
      Masks region = {};
    };
    struct OwnedItem {
      OwnedImage content;
      std::vector<OwnedImage> styles;
      std::optional<std::pair<OwnedImage, std::vector<float>>> temporal;  // video: warped frame, pixel weights
      std::vector<Masks> style_masks = {};
      Masks content_mask = {};
    };
    auto owned = std::make_shared<std::vector<OwnedItem>>();
    auto read_image = [&](const Napi::Value& v, const std::string& what, float weight) {
      Napi::Object o = object_arg(env, v, what);
      int h = int_field(env, o, "height", what, 1, nst::kMaxImageSide);
      int w = int_field(env, o, "width", what, 1, nst::kMaxImageSide);
      auto data = floats_arg(env, o.Get("data"), what + ".data", (long long)h * w * 3);
      return OwnedImage{h, w, std::vector<float>(data.Data(), data.Data() + data.ElementLength()), weight};
    };
    for (uint32_t b = 0; b < items.Length(); b++) {
      std::string what = "setTargets: targets[" + std::to_string(b) + "]";
      Napi::Object t = object_arg(env, items.Get(b), what);
      OwnedImage content = read_image(t.Get("content"), what + ".content", 1.f);
      if (content.height != s.config.height || content.width != s.config.width)
        range_error(env, what + ".content must be " + std::to_string(s.config.height) + "x" +
                             std::to_string(s.config.width) + " (the session's size)");
      Napi::Array styles = array_arg(env, t.Get("styles"), what + ".styles");
      if (styles.Length() == 0) range_error(env, what + ".styles must hold at least one style image");
      std::vector<OwnedImage> style_images;
      for (uint32_t k = 0; k < styles.Length(); k++) {
        std::string swhat = what + ".styles[" + std::to_string(k) + "]";
        Napi::Object st = object_arg(env, styles.Get(k), swhat);
        double weight = number_field(env, st, "weight", swhat);
        if (weight < 0) range_error(env, swhat + ".weight must be >= 0");
        style_images.push_back(read_image(st.Get("image"), swhat + ".image", float(weight)));
        OwnedImage& style = style_images.back();
        if (!st.Get("maskIndex").IsUndefined()) style.mask_index = int_field(env, st, "maskIndex", swhat, 0, 1 << 16);
        if (!st.Get("region").IsUndefined())
          style.region = nst::napi_masks::layer_masks(env, st.Get("region"), swhat + ".region", s.config.loss.style,
                                                      style.height, style.width);
      }
      OwnedItem item{std::move(content), std::move(style_images), std::nullopt};
      Napi::Value style_masks = t.Get("styleMasks");
      if (!style_masks.IsUndefined()) {
        Napi::Array regions = array_arg(env, style_masks, what + ".styleMasks");
        for (uint32_t r = 0; r < regions.Length(); r++) {
          const std::string rwhat = what + ".styleMasks[" + std::to_string(r) + "]";
          const Napi::Value masks = regions.Get(r);
          item.style_masks.push_back(masks.IsNull()
                                         ? Masks{}
                                         : nst::napi_masks::layer_masks(env, masks, rwhat, s.config.loss.style,
                                                                        s.config.height, s.config.width));
        }
      }
      const size_t regions = std::max<size_t>(item.style_masks.size(), 1);
      for (size_t k = 0; k < item.styles.size(); k++)
        if (size_t(item.styles[k].mask_index) >= regions)
          range_error(env, what + ".styles[" + std::to_string(k) + "].maskIndex must name one of the " +
                               std::to_string(regions) + " styleMasks");
      for (size_t r = 0; r < item.style_masks.size(); r++) {
        bool used = false;
        for (const OwnedImage& st : item.styles) used = used || size_t(st.mask_index) == r;
        if (!used) range_error(env, what + ".styleMasks[" + std::to_string(r) + "] has no style");
      }
      if (!t.Get("contentMask").IsUndefined())
        item.content_mask = nst::napi_masks::layer_masks(env, t.Get("contentMask"), what + ".contentMask",
                                                         s.config.loss.content, s.config.height, s.config.width);
      Napi::Value temporal = t.Get("temporal");
      if (!temporal.IsUndefined()) {
        const std::string twhat = what + ".temporal";
        Napi::Object tt = object_arg(env, temporal, twhat);
        OwnedImage image = read_image(tt.Get("image"), twhat + ".image", 1.f);
        if (image.height != s.config.height || image.width != s.config.width)
          range_error(env, twhat + ".image must be " + std::to_string(s.config.height) + "x" +
                               std::to_string(s.config.width) + " (the session's size)");
        auto weights = floats_arg(env, tt.Get("weights"), twhat + ".weights (height x width)",
                                  (long long)s.config.height * s.config.width);
        std::vector<float> w(weights.Data(), weights.Data() + weights.ElementLength());
        for (float c : w)
          if (!(c >= 0.f && c <= 1.f)) range_error(env, twhat + ".weights must lie in 0..1");
        item.temporal.emplace(std::move(image), std::move(w));
      }
      owned->push_back(std::move(item));
    }
    auto state = state_;
    return EngineCallWorker::Start(
        env, state_,
        [state, owned](const std::function<void(int)>&) {
          std::vector<nst::TargetsView> views;
          for (const OwnedItem& item : *owned) {
            nst::TargetsView v{{item.content.height, item.content.width, item.content.data.data()}, {}};
            for (const auto& st : item.styles)
              v.styles.push_back(
                  {{st.height, st.width, st.data.data()}, st.weight, st.mask_index, nst::napi_masks::views(st.region)});
            if (item.temporal)
              v.temporal = nst::TemporalTargetView{item.temporal->first.data.data(), item.temporal->second.data()};
            for (const auto& masks : item.style_masks) v.style_masks.push_back(nst::napi_masks::views(masks));
            v.content_mask = nst::napi_masks::views(item.content_mask);
            views.push_back(std::move(v));
          }
          state->session->set_targets(views);
        },
        [](Napi::Env env) { return env.Undefined(); });
  }

  Napi::Value SetImages(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    SessionState& s = usable(env, "setImages");
    auto images =
        floats_arg(env, info[0], "setImages: images (batch x height x width x 3)", (long long)s.image_values());
    guarded(env, [&] { s.session->set_images(images.Data()); });
    return env.Undefined();
  }

  // iterate({beta1, beta2, eps}, stepSizes: Float32Array, onProgress?) -> Promise<LossValues[]>
  Napi::Value Iterate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    usable(env, "iterate");
    Napi::Object adam = object_arg(env, info[0], "iterate: adam");
    nst::AdamParams params{number_field(env, adam, "beta1", "iterate: adam"),
                           number_field(env, adam, "beta2", "iterate: adam"),
                           number_field(env, adam, "eps", "iterate: adam"),
                           {}};
    auto steps = floats_arg(env, info[1], "iterate: stepSizes", -1);
    params.step_sizes.assign(steps.Data(), steps.Data() + steps.ElementLength());
    for (float f : params.step_sizes)
      if (!std::isfinite(f)) range_error(env, "iterate: stepSizes must be finite");
    if (info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsFunction())
      type_error(env, "iterate: onProgress must be a function");
    auto state = state_;
    auto losses = std::make_shared<std::vector<nst::LossValues>>();
    return EngineCallWorker::Start(
        env, state_,
        [state, losses, params](const std::function<void(int)>& progress) {
          *losses = state->session->iterate(params, progress);
        },
        [losses](Napi::Env env) -> Napi::Value { return losses_to_js(env, *losses); },
        info.Length() > 2 ? info[2] : env.Undefined());
  }

  // lossAndGradient() -> Promise<{ losses, gradient: Float32Array }>
  Napi::Value LossAndGradient(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    SessionState& s = usable(env, "lossAndGradient");
    // The result array is made here and filled by the worker; the reference
    // keeps it alive (and unseen by JS) until the promise resolves.
    auto gradient = std::make_shared<Napi::Reference<Napi::Float32Array>>(
        Napi::Persistent(Napi::Float32Array::New(env, s.image_values())));
    float* out = gradient->Value().Data();
    auto state = state_;
    auto losses = std::make_shared<std::vector<nst::LossValues>>();
    return EngineCallWorker::Start(
        env, state_,
        [state, losses, out](const std::function<void(int)>&) { *losses = state->session->loss_and_gradient(out); },
        [losses, gradient](Napi::Env env) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("losses", losses_to_js(env, *losses));
          o.Set("gradient", gradient->Value());
          gradient->Reset();
          return o;
        });
  }

  Napi::Value ReadImages(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    SessionState& s = usable(env, "readImages");
    auto out = Napi::Float32Array::New(env, s.image_values());
    guarded(env, [&] { s.session->read_images(out.Data()); });
    return out;
  }

  Napi::Value ReadOptimizerState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    SessionState& s = usable(env, "readOptimizerState");
    auto m = Napi::Float32Array::New(env, s.image_values());
    auto v = Napi::Float32Array::New(env, s.image_values());
    guarded(env, [&] { s.session->read_optimizer_state(m.Data(), v.Data()); });
    Napi::Object o = Napi::Object::New(env);
    o.Set("m", m);
    o.Set("v", v);
    return o;
  }

  Napi::Value WriteOptimizerState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    SessionState& s = usable(env, "writeOptimizerState");
    auto m = floats_arg(env, info[0], "writeOptimizerState: m", (long long)s.image_values());
    auto v = floats_arg(env, info[1], "writeOptimizerState: v", (long long)s.image_values());
    guarded(env, [&] { s.session->write_optimizer_state(m.Data(), v.Data()); });
    return env.Undefined();
  }

  // Idempotent; frees the buffers now, or when the running call settles.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    state_->disposed = true;
    state_->engine->release_if_disposed();
    return info.Env().Undefined();
  }

  std::shared_ptr<SessionState> state_;
};

// ---- Engine ----------------------------------------------------------------

// The precisions an engine implements, by name (engine.h); nothing else is offered.
std::vector<nst::NamedPrecision> engine_precisions(const std::string& kind) {
  if (kind == "cpu") return {std::begin(nst::kCpuPrecisions), std::end(nst::kCpuPrecisions)};
  return {std::begin(nst::kCudaPrecisions), std::end(nst::kCudaPrecisions)};
}

// The precision `name` of the engine of `kind`; one it does not implement is
// refused as data (code 'unsupported', field 'precision'). "auto" is each
// engine's choice: cuda tf32; cpu fp32 (engine.h's cpu_auto_precision says
// why not bf16).
nst::Precision engine_precision(const std::string& kind, const std::string& name) {
  if (name == "auto") return kind == "cpu" ? nst::cpu_auto_precision() : nst::Precision::Tf32;
  std::string implemented;
  for (const nst::NamedPrecision& p : engine_precisions(kind)) {
    if (name == p.name) return p.precision;
    implemented += std::string(implemented.empty() ? "" : ", ") + p.name;
  }
  throw nst::Error(
      nst::ErrorCode::Unsupported, "precision",
      kind + ": precision '" + name + "' is not implemented by the " + kind + " engine (it has " + implemented + ")");
}

nst::LossSpec read_loss(Napi::Env env, const Napi::Value& value, const std::string& what);

// A session's configuration, its types checked: createSession's argument and
// estimateMemory's shape. Ranges, layers and duplicates are checked by
// validate_session_config.
nst::SessionConfig read_session_config(Napi::Env env, const Napi::Value& value, const std::string& what) {
  Napi::Object c = object_arg(env, value, what);
  nst::SessionConfig config;
  config.height = int_field(env, c, "height", what);
  config.width = int_field(env, c, "width", what);
  config.batch = int_field(env, c, "batch", what);
  std::string pooling = string_arg(env, c.Get("pooling"), what + ".pooling");
  if (pooling != "avg" && pooling != "max") range_error(env, what + ".pooling must be 'avg' or 'max'");
  config.pooling = pooling == "avg" ? nst::Pooling::Avg : nst::Pooling::Max;
  config.loss = read_loss(env, c.Get("loss"), what + ".loss");
  return config;
}

// A loss ({ content, style, alpha?, beta?, tvWeight? }), its types checked.
nst::LossSpec read_loss(Napi::Env env, const Napi::Value& value, const std::string& what) {
  Napi::Object loss = object_arg(env, value, what);
  nst::LossSpec spec;
  auto read_layers = [&](const char* key) {
    std::vector<nst::WeightedLayer> out;
    Napi::Array list = array_arg(env, loss.Get(key), what + "." + key);
    for (uint32_t i = 0; i < list.Length(); i++) {
      std::string lwhat = what + "." + key + "[" + std::to_string(i) + "]";
      Napi::Object l = object_arg(env, list.Get(i), lwhat);
      out.push_back({int_field(env, l, "convIndex", lwhat), float(number_field(env, l, "weight", lwhat))});
    }
    return out;
  };
  spec.content = read_layers("content");
  spec.style = read_layers("style");
  // Absent terms keep engine.h's defaults.
  spec.alpha = float(optional_number(env, loss, "alpha", what, spec.alpha));
  spec.beta = float(optional_number(env, loss, "beta", what, spec.beta));
  spec.tv_weight = float(optional_number(env, loss, "tvWeight", what, spec.tv_weight));
  spec.temporal_weight = float(optional_number(env, loss, "temporalWeight", what, spec.temporal_weight));
  return spec;
}

void validate(Napi::Env env, const nst::SessionConfig& config, int num_layers, const std::string& what) {
  try {
    nst::validate_session_config(config, num_layers);
  } catch (const nst::Error& error) {
    range_error(env, what + "." + error.what());
  }
}

// ---- Tile sessions (exact tiling: engine.h's TileSession) -------------------

nst::PixelRect read_rect(Napi::Env env, const Napi::Value& value, const std::string& what) {
  Napi::Object o = object_arg(env, value, what);
  nst::PixelRect r;
  r.y0 = int_field(env, o, "y0", what, 0, nst::kMaxImageSide);
  r.y1 = int_field(env, o, "y1", what, 0, nst::kMaxImageSide);
  r.x0 = int_field(env, o, "x0", what, 0, nst::kMaxImageSide);
  r.x1 = int_field(env, o, "x1", what, 0, nst::kMaxImageSide);
  return r;
}

// A tile's configuration: the largest tile, the pooling, the loss, the nets' budget.
nst::TileSessionConfig read_tile_config(Napi::Env env, const Napi::Value& value, const std::string& what) {
  Napi::Object c = object_arg(env, value, what);
  nst::TileSessionConfig config;
  config.max_tile_height = int_field(env, c, "tileHeight", what);
  config.max_tile_width = int_field(env, c, "tileWidth", what);
  std::string pooling = string_arg(env, c.Get("pooling"), what + ".pooling");
  if (pooling != "avg" && pooling != "max") range_error(env, what + ".pooling must be 'avg' or 'max'");
  config.pooling = pooling == "avg" ? nst::Pooling::Avg : nst::Pooling::Max;
  config.loss = read_loss(env, c.Get("loss"), what + ".loss");
  config.net_budget_bytes = optional_number(env, c, "netBudget", what, 0);
  return config;
}

void validate_tile(Napi::Env env, const nst::TileSessionConfig& config, int num_layers, const std::string& what) {
  try {
    nst::validate_tile_session_config(config, num_layers);
  } catch (const nst::Error& error) {
    range_error(env, what + "." + error.what());
  }
}

// JS arrays a worker reads or writes: referenced until the call settles (the
// references are released on the JS thread, with the worker).
struct Pinned {
  std::vector<Napi::Reference<Napi::Float32Array>> refs;
  float* pin(Napi::Float32Array a) {
    refs.push_back(Napi::Persistent(a));
    return a.Data();
  }
};

class TileSessionWrap : public Napi::ObjectWrap<TileSessionWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "NativeTileSession",
        {InstanceMethod<&TileSessionWrap::GramSums>("gramSums"),
         InstanceMethod<&TileSessionWrap::ContentActivations>("contentActivations"),
         InstanceMethod<&TileSessionWrap::Forward>("forward"), InstanceMethod<&TileSessionWrap::Backward>("backward"),
         InstanceMethod<&TileSessionWrap::Stats>("stats"), InstanceMethod<&TileSessionWrap::Dispose>("dispose")});
  }

  // Only EngineWrap::CreateTileSession constructs these (it passes an External).
  TileSessionWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TileSessionWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      type_error(info.Env(), "NativeTileSession cannot be constructed directly: use engine.createTileSession()");
    state_ = *info[0].As<Napi::External<std::shared_ptr<SessionState>>>().Data();
  }

 private:
  SessionState& usable(Napi::Env env, const char* op) {
    check_usable(env, *state_, op);
    return *state_;
  }

  const nst::TileSessionConfig& config() const { return state_->tile_config; }

  // The tile, checked against the layer table (exact tiles only) and the session's largest tile.
  nst::TileGeometry geometry_arg(Napi::Env env, const Napi::Value& value, const std::string& what) const {
    Napi::Object o = object_arg(env, value, what);
    nst::TileGeometry t;
    t.image_height = int_field(env, o, "imageHeight", what, 1, nst::kMaxImageSide);
    t.image_width = int_field(env, o, "imageWidth", what, 1, nst::kMaxImageSide);
    t.core = read_rect(env, o.Get("core"), what + ".core");
    t.extended = read_rect(env, o.Get("extended"), what + ".extended");
    const std::string problem = nst::tile_geometry_problem(t, nst::deepest_layer(config().loss),
                                                           config().max_tile_height, config().max_tile_width);
    if (!problem.empty()) range_error(env, what + ": " + problem);
    return t;
  }

  static long long pixel_values(const nst::TileGeometry& t) {
    return (long long)t.extended.height() * t.extended.width() * 3;
  }

  // One Float32Array of C x C per style layer.
  std::vector<float*> grams_arg(Napi::Env env, const Napi::Value& value, const std::string& what, Pinned& pins) const {
    Napi::Array list = array_arg(env, value, what);
    const auto& style = config().loss.style;
    if (list.Length() != style.size())
      range_error(env, what + " must hold " + std::to_string(style.size()) + " arrays (one per style layer)");
    std::vector<float*> out;
    for (uint32_t l = 0; l < list.Length(); l++) {
      const long long c = kVgg19[style[l].conv_index].out_channels;
      out.push_back(pins.pin(floats_arg(env, list.Get(l), what + "[" + std::to_string(l) + "]", c * c)));
    }
    return out;
  }

  // One Float32Array per content layer of the core's positions there x C.
  std::vector<float*> core_maps_arg(Napi::Env env, const Napi::Value& value, const std::string& what,
                                    const nst::TileGeometry& t, Pinned& pins) const {
    Napi::Array list = array_arg(env, value, what);
    const auto& content = config().loss.content;
    if (list.Length() != content.size())
      range_error(env, what + " must hold " + std::to_string(content.size()) + " arrays (one per content layer)");
    std::vector<float*> out;
    for (uint32_t k = 0; k < list.Length(); k++) {
      const int layer = content[k].conv_index;
      const nst::PixelRect c = nst::core_at_layer(t, layer);
      const long long n = (long long)c.height() * c.width() * kVgg19[layer].out_channels;
      out.push_back(pins.pin(floats_arg(env, list.Get(k), what + "[" + std::to_string(k) + "]", n)));
    }
    return out;
  }

  // { targets: Float32Array[] } or { pixels: Float32Array } (no content layers: anything).
  nst::TileContent content_arg(Napi::Env env, const Napi::Value& value, const std::string& what,
                               const nst::TileGeometry& t, Pinned& pins) const {
    nst::TileContent content;
    if (config().loss.content.empty()) return content;
    Napi::Object o = object_arg(env, value, what);
    if (!o.Get("targets").IsUndefined()) {
      for (float* p : core_maps_arg(env, o.Get("targets"), what + ".targets", t, pins)) content.targets.push_back(p);
    } else {
      content.pixels = pins.pin(floats_arg(env, o.Get("pixels"), what + ".pixels", pixel_values(t)));
    }
    return content;
  }

  static uint64_t tag_arg(Napi::Env env, const Napi::Value& value, const std::string& what) {
    if (!value.IsNumber()) type_error(env, what + " must be a number");
    const double d = value.As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0)
      range_error(env, what + " must be an integer in 0..2^53-1");
    return uint64_t(d);
  }

  // gramSums(tile, pixels, grams) -> Promise<void>
  Napi::Value GramSums(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    usable(env, "gramSums");
    auto pins = std::make_shared<Pinned>();
    const nst::TileGeometry t = geometry_arg(env, info[0], "gramSums: tile");
    const float* pixels = pins->pin(floats_arg(env, info[1], "gramSums: pixels", pixel_values(t)));
    std::vector<float*> grams = grams_arg(env, info[2], "gramSums: grams", *pins);
    auto state = state_;
    return EngineCallWorker::Start(
        env, state_,
        [state, pins, t, pixels, grams](const std::function<void(int)>&) {
          state->tile_session->gram_sums(t, pixels, grams);
        },
        [pins](Napi::Env env) { return env.Undefined(); });
  }

  // contentActivations(tile, pixels, out) -> Promise<void>
  Napi::Value ContentActivations(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    usable(env, "contentActivations");
    auto pins = std::make_shared<Pinned>();
    const nst::TileGeometry t = geometry_arg(env, info[0], "contentActivations: tile");
    const float* pixels = pins->pin(floats_arg(env, info[1], "contentActivations: pixels", pixel_values(t)));
    std::vector<float*> out = core_maps_arg(env, info[2], "contentActivations: out", t, *pins);
    auto state = state_;
    return EngineCallWorker::Start(
        env, state_,
        [state, pins, t, pixels, out](const std::function<void(int)>&) {
          state->tile_session->content_activations(t, pixels, out);
        },
        [pins](Napi::Env env) { return env.Undefined(); });
  }

  // forward(tile, pixels, content, tag, grams) -> Promise<number> (the core's content loss share)
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    usable(env, "forward");
    auto pins = std::make_shared<Pinned>();
    const nst::TileGeometry t = geometry_arg(env, info[0], "forward: tile");
    const float* pixels = pins->pin(floats_arg(env, info[1], "forward: pixels", pixel_values(t)));
    const nst::TileContent content = content_arg(env, info[2], "forward: content", t, *pins);
    const uint64_t tag = tag_arg(env, info[3], "forward: tag");
    std::vector<float*> grams = grams_arg(env, info[4], "forward: grams", *pins);
    auto state = state_;
    auto loss = std::make_shared<double>(0);
    return EngineCallWorker::Start(
        env, state_,
        [state, pins, t, pixels, content, tag, grams, loss](const std::function<void(int)>&) {
          *loss = state->tile_session->forward(t, pixels, content, tag, grams);
        },
        [pins, loss](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *loss); });
  }

  // backward(tile, pixels, content, tag, coefficients, gradient) -> Promise<void>
  Napi::Value Backward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    usable(env, "backward");
    auto pins = std::make_shared<Pinned>();
    const nst::TileGeometry t = geometry_arg(env, info[0], "backward: tile");
    const float* pixels = pins->pin(floats_arg(env, info[1], "backward: pixels", pixel_values(t)));
    const nst::TileContent content = content_arg(env, info[2], "backward: content", t, *pins);
    const uint64_t tag = tag_arg(env, info[3], "backward: tag");
    std::vector<const float*> coefficients;
    for (float* p : grams_arg(env, info[4], "backward: coefficients", *pins)) coefficients.push_back(p);
    float* gradient = pins->pin(floats_arg(env, info[5], "backward: gradient", pixel_values(t)));
    auto state = state_;
    return EngineCallWorker::Start(
        env, state_,
        [state, pins, t, pixels, content, tag, coefficients, gradient](const std::function<void(int)>&) {
          state->tile_session->backward(t, pixels, content, tag, coefficients, gradient);
        },
        [pins](Napi::Env env) { return env.Undefined(); });
  }

  // stats() -> { netsBuilt, forwards, forwardsReused, netBytes, peakNetBytes }
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    SessionState& s = usable(env, "stats");
    const nst::TileStats st = s.tile_session->stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("netsBuilt", st.nets_built);
    o.Set("forwards", st.forwards);
    o.Set("forwardsReused", st.forwards_reused);
    o.Set("netBytes", st.net_bytes);
    o.Set("peakNetBytes", st.peak_net_bytes);
    return o;
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    state_->disposed = true;
    state_->engine->release_if_disposed();
    return info.Env().Undefined();
  }

  std::shared_ptr<SessionState> state_;
};

// The classes, per Node environment (worker threads each load their own).
struct AddonData {
  Napi::FunctionReference engine_class, session_class, tile_session_class;
};

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "NativeEngine",
        {InstanceMethod<&EngineWrap::Describe>("describe"), InstanceMethod<&EngineWrap::SetWeights>("setWeights"),
         InstanceMethod<&EngineWrap::CreateSession>("createSession"),
         InstanceMethod<&EngineWrap::EstimateMemory>("estimateMemory"),
         InstanceMethod<&EngineWrap::CreateTileSession>("createTileSession"),
         InstanceMethod<&EngineWrap::EstimateTileMemory>("estimateTileMemory"),
         InstanceMethod<&EngineWrap::DeviceMemoryAvailable>("deviceMemoryAvailable"),
         InstanceMethod<&EngineWrap::Dispose>("dispose")});
  }

  // new NativeEngine('cpu' | 'cuda', { gpu?, precision? }): precision one the
  // engine implements or 'auto'; absent: cpu fp32, cuda tf32.
  EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
    Napi::Env env = info.Env();
    std::string kind = string_arg(env, info[0], "createEngine: kind");
    Napi::Object options = info.Length() > 1 && !info[1].IsUndefined()
                               ? object_arg(env, info[1], "createEngine: options")
                               : Napi::Object::New(env);
    if (kind != "cpu" && kind != "cuda")
      range_error(env, "createEngine: kind must be 'cpu' or 'cuda', got '" + kind + "'");
    Napi::Value p = options.Get("precision");
    const std::string precision_name = p.IsUndefined() ? "" : string_arg(env, p, "createEngine: options.precision");
    state_ = std::make_shared<EngineState>();
    if (kind == "cpu") {
      nst::CpuOptions o;  // fp32 unless asked
      if (!precision_name.empty()) o.precision = guarded(env, [&] { return engine_precision(kind, precision_name); });
      state_->engine = guarded(env, [&] { return nst::make_cpu_engine(o); });
    } else {
      nst::CudaOptions o;
      if (!options.Get("gpu").IsUndefined()) o.device = int_field(env, options, "gpu", "createEngine: options", 0, 63);
      if (!precision_name.empty()) o.precision = guarded(env, [&] { return engine_precision(kind, precision_name); });
      state_->engine = guarded(env, [&] { return nst::make_cuda_engine(o); });
    }
  }

 private:
  EngineState& usable(Napi::Env env, const char* op) {
    check_usable(env, *state_, op);
    return *state_;
  }

  Napi::Value Describe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (state_->disposed) throw Napi::Error::New(env, "describe: the engine has been disposed");
    return Napi::String::New(env, state_->engine->describe());
  }

  // setWeights([{ inChannels, outChannels, kernel: Float32Array (HWIO), bias }]), VGG-19 order.
  Napi::Value SetWeights(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EngineState& e = usable(env, "setWeights");
    Napi::Array layers = array_arg(env, info[0], "setWeights: layers");
    if (layers.Length() < 1 || layers.Length() > 16)
      range_error(env, "setWeights: expected 1 to 16 conv layers, got " + std::to_string(layers.Length()));
    std::vector<nst::ConvWeightsView> views;
    for (uint32_t i = 0; i < layers.Length(); i++) {
      std::string what = std::string("setWeights: layers[") + std::to_string(i) + "] (" + kVgg19[i].name + ")";
      Napi::Object l = object_arg(env, layers.Get(i), what);
      int in = int_field(env, l, "inChannels", what, 1, 4096), out = int_field(env, l, "outChannels", what, 1, 4096);
      if (in != kVgg19[i].in_channels || out != kVgg19[i].out_channels)
        range_error(env, what + " must have " + std::to_string(kVgg19[i].in_channels) + "->" +
                             std::to_string(kVgg19[i].out_channels) + " channels, got " + std::to_string(in) + "->" +
                             std::to_string(out));
      auto kernel = floats_arg(env, l.Get("kernel"), what + ".kernel", 9LL * in * out);
      auto bias = floats_arg(env, l.Get("bias"), what + ".bias", out);
      views.push_back({in, out, kernel.Data(), bias.Data()});
    }
    guarded(env, [&] { e.engine->set_weights(views); });
    e.num_layers = int(views.size());
    return env.Undefined();
  }

  // createSession({ height, width, batch, pooling, loss: { content, style, alpha, beta, tvWeight, temporalWeight } })
  Napi::Value CreateSession(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EngineState& e = usable(env, "createSession");
    if (e.num_layers == 0) throw Napi::Error::New(env, "createSession: call setWeights first");
    const std::string what = "createSession: config";
    nst::SessionConfig config = read_session_config(env, info[0], what);
    validate(env, config, e.num_layers, what);

    auto state = std::make_shared<SessionState>();
    state->engine = state_;
    state->config = config;
    state->session = guarded(env, [&] { return e.engine->create_session(config); });
    e.sessions.push_back(state);
    auto holder = Napi::External<std::shared_ptr<SessionState>>::New(
        env, new std::shared_ptr<SessionState>(state), [](Napi::Env, std::shared_ptr<SessionState>* p) { delete p; });
    return env.GetInstanceData<AddonData>()->session_class.New({holder});
  }

  // estimateMemory({ height, width, batch, pooling, loss, styleSizes: [{ height, width }], regions?, contentMask? })
  // -> bytes, or
  // Infinity for a shape the engine cannot take at any memory (beyond the
  // sizes a session accepts, or beyond what its libraries can describe).
  // Allocates nothing and touches no engine state, so it may run while a
  // call is in progress; before setWeights it plans for VGG-19's 16 layers.
  Napi::Value EstimateMemory(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (state_->disposed) throw Napi::Error::New(env, "estimateMemory: the engine has been disposed");
    const std::string what = "estimateMemory: shape";
    nst::SessionConfig config = read_session_config(env, info[0], what);
    Napi::Array sizes = array_arg(env, info[0].As<Napi::Object>().Get("styleSizes"), what + ".styleSizes");
    const double beyond = std::numeric_limits<double>::infinity();
    bool too_large =
        config.height > nst::kMaxImageSide || config.width > nst::kMaxImageSide || config.batch > nst::kMaxBatch;
    std::vector<nst::ImageSize> style_sizes;
    for (uint32_t i = 0; i < sizes.Length(); i++) {
      const std::string swhat = what + ".styleSizes[" + std::to_string(i) + "]";
      Napi::Object s = object_arg(env, sizes.Get(i), swhat);
      style_sizes.push_back(
          {int_field(env, s, "height", swhat, 1, INT32_MAX), int_field(env, s, "width", swhat, 1, INT32_MAX)});
      too_large =
          too_large || style_sizes.back().height > nst::kMaxImageSide || style_sizes.back().width > nst::kMaxImageSide;
    }
    if (too_large) return Napi::Number::New(env, beyond);
    validate(env, config, state_->num_layers > 0 ? state_->num_layers : int(std::size(kVgg19)), what);
    const nst::MaskShape masks = nst::napi_masks::mask_shape(env, info[0].As<Napi::Object>(), what);
    return Napi::Number::New(env,
                             guarded(env, [&] { return state_->engine->estimate_memory(config, style_sizes, masks); }));
  }

  // createTileSession({ tileHeight, tileWidth, pooling, loss, netBudget? }): exact tiling (engine.h).
  Napi::Value CreateTileSession(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EngineState& e = usable(env, "createTileSession");
    if (e.num_layers == 0) throw Napi::Error::New(env, "createTileSession: call setWeights first");
    const std::string what = "createTileSession: config";
    nst::TileSessionConfig config = read_tile_config(env, info[0], what);
    validate_tile(env, config, e.num_layers, what);
    auto state = std::make_shared<SessionState>();
    state->engine = state_;
    state->tile_config = config;
    state->tile_session = guarded(env, [&] { return e.engine->create_tile_session(config); });
    e.sessions.push_back(state);
    auto holder = Napi::External<std::shared_ptr<SessionState>>::New(
        env, new std::shared_ptr<SessionState>(state), [](Napi::Env, std::shared_ptr<SessionState>* p) { delete p; });
    return env.GetInstanceData<AddonData>()->tile_session_class.New({holder});
  }

  // estimateTileMemory(config, shapes: [{ height, width }]) -> { fixed, nets: number[] }: the bytes a
  // tile session holds whatever its tiles, and one net per tile shape (Infinity in `fixed` for a tile
  // beyond what the engine can describe). Allocates nothing; may run while a call is in progress.
  Napi::Value EstimateTileMemory(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (state_->disposed) throw Napi::Error::New(env, "estimateTileMemory: the engine has been disposed");
    const std::string what = "estimateTileMemory: config";
    nst::TileSessionConfig config = read_tile_config(env, info[0], what);
    validate_tile(env, config, state_->num_layers > 0 ? state_->num_layers : int(std::size(kVgg19)), what);
    Napi::Array list = array_arg(env, info[1], "estimateTileMemory: shapes");
    std::vector<nst::ImageSize> shapes;
    for (uint32_t i = 0; i < list.Length(); i++) {
      const std::string swhat = "estimateTileMemory: shapes[" + std::to_string(i) + "]";
      Napi::Object o = object_arg(env, list.Get(i), swhat);
      shapes.push_back({int_field(env, o, "height", swhat, 1, config.max_tile_height),
                        int_field(env, o, "width", swhat, 1, config.max_tile_width)});
    }
    const nst::TileMemory m = guarded(env, [&] { return state_->engine->estimate_tile_memory(config, shapes); });
    Napi::Object o = Napi::Object::New(env);
    o.Set("fixed", m.fixed);
    Napi::Array nets = Napi::Array::New(env, m.net_per_shape.size());
    for (size_t i = 0; i < m.net_per_shape.size(); i++) nets.Set(uint32_t(i), m.net_per_shape[i]);
    o.Set("nets", nets);
    return o;
  }

  // deviceMemoryAvailable() -> the bytes the engine may still allocate on its
  // device (cuda: the GPU's free memory), or undefined for an engine that
  // computes in host memory (cpu). May run while a call is in progress.
  Napi::Value DeviceMemoryAvailable(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (state_->disposed) throw Napi::Error::New(env, "deviceMemoryAvailable: the engine has been disposed");
    std::optional<double> free_bytes = guarded(env, [&] { return state_->engine->device_memory_available(); });
    return free_bytes ? Napi::Number::New(env, *free_bytes) : env.Undefined();
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    state_->disposed = true;
    state_->release_if_disposed();
    return info.Env().Undefined();
  }

  std::shared_ptr<EngineState> state_;
};

Napi::Value CreateEngine(const Napi::CallbackInfo& info) {
  std::vector<napi_value> args(info.Length());
  for (size_t i = 0; i < info.Length(); i++) args[i] = info[i];
  return info.Env().GetInstanceData<AddonData>()->engine_class.New(args);
}

// precisions('cpu' | 'cuda') -> the precisions that engine implements, by name.
Napi::Value Precisions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string kind = string_arg(env, info[0], "precisions: kind");
  if (kind != "cpu" && kind != "cuda") range_error(env, "precisions: kind must be 'cpu' or 'cuda', got '" + kind + "'");
  const std::vector<nst::NamedPrecision> list = engine_precisions(kind);
  Napi::Array names = Napi::Array::New(env, list.size());
  for (size_t i = 0; i < list.size(); i++) names.Set(uint32_t(i), list[i].name);
  return names;
}

// vectorDot(a, b): sum a[i] b[i] in double, for core's L-BFGS (vector_ops.h).
Napi::Value VectorDot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array a = nst::napi_args::floats_arg(env, info[0], "vectorDot: a", -1);
  Napi::Float32Array b =
      nst::napi_args::floats_arg(env, info[1], "vectorDot: b", static_cast<long long>(a.ElementLength()));
  return Napi::Number::New(env, nst::vector_dot(a.Data(), b.Data(), a.ElementLength()));
}

// vectorAxpy(alpha, x, y): y += alpha x in place, for core's L-BFGS (vector_ops.h).
Napi::Value VectorAxpy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) nst::napi_args::type_error(env, "vectorAxpy: alpha must be a number");
  const double alpha = info[0].As<Napi::Number>().DoubleValue();
  Napi::Float32Array x = nst::napi_args::floats_arg(env, info[1], "vectorAxpy: x", -1);
  Napi::Float32Array y =
      nst::napi_args::floats_arg(env, info[2], "vectorAxpy: y", static_cast<long long>(x.ElementLength()));
  nst::vector_axpy(alpha, x.Data(), y.Data(), x.ElementLength());
  return env.Undefined();
}

// adamUpdate(x, m, v, g, lr, { beta1, beta2, eps }): one Adam update in place,
// the engines' float32 arithmetic (kernels/adam.cuh), for tiled sessions,
// whose images live on the host.
Napi::Value AdamUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array x = floats_arg(env, info[0], "adamUpdate: x", -1);
  const auto n = static_cast<long long>(x.ElementLength());
  Napi::Float32Array m = floats_arg(env, info[1], "adamUpdate: m", n);
  Napi::Float32Array v = floats_arg(env, info[2], "adamUpdate: v", n);
  Napi::Float32Array g = floats_arg(env, info[3], "adamUpdate: g", n);
  if (!info[4].IsNumber()) type_error(env, "adamUpdate: lr must be a number");
  const float lr = float(info[4].As<Napi::Number>().DoubleValue());
  if (!std::isfinite(lr)) range_error(env, "adamUpdate: lr must be finite");
  Napi::Object adam = object_arg(env, info[5], "adamUpdate: adam");
  const double beta1 = number_field(env, adam, "beta1", "adamUpdate: adam");
  const double beta2 = number_field(env, adam, "beta2", "adamUpdate: adam");
  const double eps = number_field(env, adam, "eps", "adamUpdate: adam");
  const int step = 0;
  nst::kernels::adam_cpu(x.Data(), m.Data(), v.Data(), g.Data(), size_t(n), beta1, beta2, eps, &lr, &step);
  return env.Undefined();
}

// ---- optical flow (nst video; flow/flow.h) ----------------------------------

// flowInfo() -> { available, detail }: whether this build has OpenCV's DIS
// optical flow, and its version or why not (with the command that fixes it).
Napi::Value FlowInfo(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("available", nst::flow::available());
  o.Set("detail", nst::flow::describe());
  return o;
}

// opticalFlow({ from, to, width, height, preset: 'ultrafast' | 'fast' | 'medium' })
//   -> Float32Array (height x width x 2: dx, dy per pixel), from frame `from`
// to frame `to`, both grey Uint8Arrays of width x height. Synchronous: a
// frame pair at the render sizes of video takes tens of milliseconds.
Napi::Value OpticalFlow(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string what = "opticalFlow";
  Napi::Object o = object_arg(env, info[0], what);
  const int width = int_field(env, o, "width", what, 1, nst::kMaxImageSide);
  const int height = int_field(env, o, "height", what, 1, nst::kMaxImageSide);
  const std::string preset_name = string_arg(env, o.Get("preset"), what + ".preset");
  nst::flow::Preset preset;
  if (preset_name == "medium")
    preset = nst::flow::Preset::Medium;
  else if (preset_name == "fast")
    preset = nst::flow::Preset::Fast;
  else if (preset_name == "ultrafast")
    preset = nst::flow::Preset::UltraFast;
  else
    range_error(env, what + ".preset must be 'ultrafast', 'fast' or 'medium', got '" + preset_name + "'");
  const size_t pixels = size_t(width) * height;
  auto frame = [&](const char* key) {
    Napi::Value v = o.Get(key);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      type_error(env, what + "." + key + " must be a Uint8Array");
    Napi::Uint8Array a = v.As<Napi::Uint8Array>();
    if (a.ElementLength() != pixels)
      range_error(env, what + "." + key + " must hold width x height = " + std::to_string(pixels) + " values, got " +
                           std::to_string(a.ElementLength()));
    return a;
  };
  Napi::Uint8Array from = frame("from"), to = frame("to");
  auto out = Napi::Float32Array::New(env, pixels * 2);
  guarded(env, [&] { nst::flow::dis_flow(from.Data(), to.Data(), width, height, preset, out.Data()); });
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Function engine = EngineWrap::Define(env);
  Napi::Function session = SessionWrap::Define(env);
  Napi::Function tile_session = TileSessionWrap::Define(env);
  env.SetInstanceData(
      new AddonData{Napi::Persistent(engine), Napi::Persistent(session), Napi::Persistent(tile_session)});
  exports.Set("NativeEngine", engine);
  exports.Set("NativeSession", session);
  exports.Set("NativeTileSession", tile_session);
  exports.Set("createEngine", Napi::Function::New<CreateEngine>(env, "createEngine"));
  exports.Set("precisions", Napi::Function::New<Precisions>(env, "precisions"));
  exports.Set("vectorDot", Napi::Function::New<VectorDot>(env, "vectorDot"));
  exports.Set("vectorAxpy", Napi::Function::New<VectorAxpy>(env, "vectorAxpy"));
  exports.Set("adamUpdate", Napi::Function::New<AdamUpdate>(env, "adamUpdate"));
  exports.Set("flowInfo", Napi::Function::New<FlowInfo>(env, "flowInfo"));
  exports.Set("opticalFlow", Napi::Function::New<OpticalFlow>(env, "opticalFlow"));
#ifdef NST_HAVE_CUDA
  exports.Set("cudaCompiled", true);
#else
  exports.Set("cudaCompiled", false);
#endif
  return exports;
}

}  // namespace

NODE_API_MODULE(nst_native, Init)
