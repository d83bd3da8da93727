#include "sluice/ctl/store.hh"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>
#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "sluice/ctl/persist.hh"
#include "sluice/base/ascii.hh"

namespace sluice::ctl {
namespace {

constexpr const char* state_file = "mesh.json";

const std::vector<std::pair<std::vector<std::string_view>, std::string_view>>& kind_words()
{
    static const std::vector<std::pair<std::vector<std::string_view>, std::string_view>> k = {
        {{"virtualservices", "virtualservice", "vs"}, "VirtualService"},
        {{"destinationrules", "destinationrule", "dr"}, "DestinationRule"},
        {{"gateways", "gateway", "gw"}, "Gateway"},
        {{"serviceentries", "serviceentry", "se"}, "ServiceEntry"},
        {{"workloadentries", "workloadentry", "we"}, "WorkloadEntry"},
        {{"services", "service", "svc"}, "Service"},
        {{"endpointslices", "endpointslice"}, "EndpointSlice"},
    };
    return k;
}

std::string now_rfc3339()
{
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

nlohmann::json scalar_to_json(const YAML::Node& n)
{
    const std::string& v = n.Scalar();
    if (n.Tag() == "!") { // quoted: always a string
        return v;
    }
    if (v == "true" || v == "True" || v == "TRUE") {
        return true;
    }
    if (v == "false" || v == "False" || v == "FALSE") {
        return false;
    }
    if (v.empty() || v == "~" || v == "null" || v == "Null" || v == "NULL") {
        return nullptr;
    }
    int64_t i = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), i);
    if (ec == std::errc{} && p == v.data() + v.size()) {
        return i;
    }
    if (v.find_first_not_of("0123456789+-.eE") == std::string::npos &&
        v.find_first_of("0123456789") != std::string::npos) {
        try {
            size_t used = 0;
            const double d = std::stod(v, &used);
            if (used == v.size()) {
                return d;
            }
        } catch (const std::exception&) {
        }
    }
    return v;
}

nlohmann::json yaml_to_json(const YAML::Node& n)
{
    switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
        return nullptr;
    case YAML::NodeType::Scalar:
        return scalar_to_json(n);
    case YAML::NodeType::Sequence: {
        auto a = nlohmann::json::array();
        for (const auto& e : n) {
            a.push_back(yaml_to_json(e));
        }
        return a;
    }
    case YAML::NodeType::Map: {
        auto o = nlohmann::json::object();
        for (const auto& kv : n) {
            o[kv.first.as<std::string>()] = yaml_to_json(kv.second);
        }
        return o;
    }
    }
    return nullptr;
}

void flatten(nlohmann::json v, std::vector<nlohmann::json>& out)
{
    if (v.is_array()) {
        for (auto& e : v) {
            flatten(std::move(e), out);
        }
        return;
    }
    if (!v.is_object()) {
        return;
    }
    if (v.value("kind", "") == "List" && v.contains("items") && v["items"].is_array()) {
        for (auto& e : v["items"]) {
            flatten(std::move(e), out);
        }
        return;
    }
    out.push_back(std::move(v));
}

std::optional<object_key> key_of(const nlohmann::json& o)
{
    if (!o.contains("kind") || !o["kind"].is_string()) {
        return std::nullopt;
    }
    object_key k;
    k.kind = o["kind"].get<std::string>();
    const auto& md = o.contains("metadata") ? o["metadata"] : nlohmann::json::object();
    if (md.is_object()) {
        if (md.contains("name") && md["name"].is_string()) {
            k.name = md["name"].get<std::string>();
        }
        if (md.contains("namespace") && md["namespace"].is_string()) {
            k.ns = md["namespace"].get<std::string>();
        }
    }
    if (k.ns.empty()) {
        k.ns = "default";
    }
    return k;
}

model::diagnostic body_error(const std::string& message)
{
    model::diagnostic d;
    d.level = model::severity::error;
    d.message = message;
    return d;
}

/// 400 for a body that is not YAML/JSON at all.
outcome bad_body(const error& e, uint64_t generation)
{
    outcome o;
    o.status = 400;
    o.generation = generation;
    o.errors.push_back(body_error(e.to_string()));
    return o;
}

nlohmann::json diag_json(const model::diagnostic& d)
{
    nlohmann::json j = {{"object", d.object}, {"field", d.field}, {"message", d.message}};
    if (d.line > 0) {
        j["line"] = d.line;
    }
    return j;
}

/// Splits a decoded mesh into one single-object mesh per kind/namespace/name.
config_store::model_map split_by_key(model::mesh&& m)
{
    config_store::model_map out;
    auto take = [&out](auto& list, auto member) {
        for (auto& o : list) {
            object_key k{o.meta.kind, o.meta.ns, o.meta.name};
            auto& slot = out[k];
            slot = model::mesh{};
            (slot.*member).push_back(std::move(o));
        }
    };
    take(m.gateways, &model::mesh::gateways);
    take(m.virtual_services, &model::mesh::virtual_services);
    take(m.destination_rules, &model::mesh::destination_rules);
    take(m.service_entries, &model::mesh::service_entries);
    take(m.workload_entries, &model::mesh::workload_entries);
    take(m.services, &model::mesh::services);
    take(m.endpoint_slices, &model::mesh::endpoint_slices);
    return out;
}

/// The whole candidate model from the per-object ones (copies: the store keeps its own).
model::mesh combine(const config_store::model_map& models)
{
    model::mesh m;
    for (const auto& [k, one] : models) {
        auto add = [](auto& into, const auto& from) {
            into.insert(into.end(), from.begin(), from.end());
        };
        add(m.gateways, one.gateways);
        add(m.virtual_services, one.virtual_services);
        add(m.destination_rules, one.destination_rules);
        add(m.service_entries, one.service_entries);
        add(m.workload_entries, one.workload_entries);
        add(m.services, one.services);
        add(m.endpoint_slices, one.endpoint_slices);
    }
    return m;
}

/// The mesh of a set of stored objects: one List decoded at once (start-up).
model::decoded decode_objects(const std::map<object_key, nlohmann::json>& objects,
                              const model::options& opts)
{
    nlohmann::json list = {
        {"apiVersion", "v1"}, {"kind", "List"}, {"items", nlohmann::json::array()}};
    for (const auto& [k, v] : objects) {
        list["items"].push_back(v);
    }
    return model::decode(list.dump(), "", opts);
}

} // namespace

std::optional<std::string> canonical_kind(std::string_view word)
{
    const std::string w = to_lower(word);
    for (const auto& [words, kind] : kind_words()) {
        if (std::find(words.begin(), words.end(), w) != words.end() || w == to_lower(kind)) {
            return std::string(kind);
        }
    }
    return std::nullopt;
}

nlohmann::json outcome::to_json() const
{
    nlohmann::json j;
    if (status == 200) {
        j["generation"] = generation;
        j["applied"] = applied;
        j["skipped"] = skipped;
    } else {
        auto e = nlohmann::json::array();
        for (const auto& d : errors) {
            e.push_back(diag_json(d));
        }
        if (!message.empty()) {
            e.push_back({{"object", ""}, {"field", ""}, {"message", message}});
        }
        j["errors"] = e;
        if (status == 409) {
            j["generation"] = generation;
        }
    }
    auto w = nlohmann::json::array();
    for (const auto& d : warnings) {
        w.push_back(diag_json(d));
    }
    j["warnings"] = w;
    return j;
}

result<std::vector<nlohmann::json>> body_objects(std::string_view body)
{
    std::vector<nlohmann::json> out;
    const auto first = body.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos) {
        return out;
    }
    if (body[first] == '{' || body[first] == '[') {
        try {
            flatten(nlohmann::json::parse(body), out);
        } catch (const nlohmann::json::parse_error& e) {
            return err(std::string("invalid JSON: ") + e.what());
        }
        return out;
    }
    try {
        for (const auto& doc : YAML::LoadAll(std::string(body))) {
            flatten(yaml_to_json(doc), out);
        }
    } catch (const YAML::Exception& e) {
        return err("invalid YAML at line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
    }
    return out;
}

config_store::config_store(std::string state_dir, model::options opts, publisher pub)
    : _state_dir(std::move(state_dir)), _opts(std::move(opts)), _publish(std::move(pub))
{
}

uint64_t config_store::generation() const
{
    std::lock_guard lock(_mu);
    return _generation;
}

std::string config_store::applied_at() const
{
    std::lock_guard lock(_mu);
    return _applied_at;
}

size_t config_store::size() const
{
    std::lock_guard lock(_mu);
    return _objects.size();
}

outcome config_store::commit(std::map<object_key, nlohmann::json> next, model_map next_models,
                             std::vector<std::string> applied, std::vector<std::string> skipped,
                             std::vector<model::diagnostic> decode_diags, bool dry_run,
                             std::optional<uint64_t> if_match)
{
    // Caller holds _mu.
    outcome o;
    o.generation = _generation;
    o.applied = std::move(applied);
    o.skipped = std::move(skipped);
    for (auto& d : decode_diags) {
        (d.level == model::severity::error ? o.errors : o.warnings).push_back(std::move(d));
    }
    if (if_match && *if_match != _generation) {
        o.status = 409;
        o.message = "generation is " + std::to_string(_generation) + ", not " +
                    std::to_string(*if_match) + " (If-Match): re-read and retry";
        return o;
    }
    if (!o.errors.empty()) {
        o.status = 400;
        return o;
    }
    const model::mesh candidate = combine(next_models);
    for (auto& d : model::validate(candidate, _opts)) {
        (d.level == model::severity::error ? o.errors : o.warnings).push_back(std::move(d));
    }
    if (!o.errors.empty()) {
        o.status = 400;
        return o;
    }
    const uint64_t gen = _generation + 1;
    auto prepared = _publish.prepare(candidate, gen);
    if (!prepared) {
        o.status = 400;
        o.errors.push_back(body_error("compile: " + prepared.err().to_string()));
        return o;
    }
    if (dry_run) {
        return o; // validated and compiled; nothing published or persisted
    }
    nlohmann::json state = {
        {"generation", gen}, {"applied_at", now_rfc3339()}, {"objects", nlohmann::json::array()}};
    for (const auto& [k, v] : next) {
        state["objects"].push_back(v);
    }
    if (auto w = write_atomic(_state_dir, state_file, state.dump()); !w) {
        o.status = 500;
        o.message = "cannot persist generation " + std::to_string(gen) + ": " + w.err().message +
                    "; nothing was applied";
        return o;
    }
    _publish.activate(std::move(*prepared));
    _objects = std::move(next);
    _models = std::move(next_models);
    _generation = gen;
    _applied_at = state["applied_at"].get<std::string>();
    o.generation = gen;
    return o;
}

outcome config_store::apply(std::string_view body, bool dry_run, std::optional<uint64_t> if_match)
{
    std::lock_guard lock(_mu);
    auto objs = body_objects(body);
    if (!objs) {
        return bad_body(objs.err(), _generation);
    }
    // Decoding the body itself gives syntax/type errors their lines in the user's text, and
    // the model of exactly the objects this apply changes.
    auto dec = model::decode(body, "request", _opts);
    std::vector<model::diagnostic> diags;
    for (auto& d : dec.diagnostics) {
        if (d.level != model::severity::note) {
            diags.push_back(std::move(d));
        }
    }
    auto body_models = split_by_key(std::move(dec.objects));
    auto next = _objects;
    auto next_models = _models;
    std::vector<std::string> applied;
    std::vector<std::string> skipped;
    for (auto& o : *objs) {
        auto k = key_of(o);
        if (!k) {
            diags.push_back(body_error("an object without a kind"));
            continue;
        }
        if (!canonical_kind(k->kind) || to_lower(k->kind) != to_lower(*canonical_kind(k->kind))) {
            skipped.push_back(k->to_string() + ": kind not used by the appliance");
            continue;
        }
        if (k->name.empty()) {
            diags.push_back(body_error(k->kind + ": metadata.name is required"));
            continue;
        }
        if (!o["metadata"].contains("namespace")) {
            o["metadata"]["namespace"] = k->ns;
        }
        applied.push_back(k->to_string());
        if (auto m = body_models.find(*k); m != body_models.end()) {
            next_models[*k] = std::move(m->second);
        } else {
            next_models.erase(*k); // decode reported why; the apply fails on that error
        }
        next[*k] = std::move(o);
    }
    return commit(std::move(next), std::move(next_models), std::move(applied), std::move(skipped),
                  std::move(diags), dry_run, if_match);
}

outcome config_store::remove(std::string_view body, bool dry_run, std::optional<uint64_t> if_match)
{
    std::lock_guard lock(_mu);
    auto objs = body_objects(body);
    if (!objs) {
        return bad_body(objs.err(), _generation);
    }
    auto next = _objects;
    auto next_models = _models;
    std::vector<std::string> applied;
    std::vector<std::string> skipped;
    for (const auto& o : *objs) {
        auto k = key_of(o);
        if (!k) {
            continue;
        }
        next_models.erase(*k);
        if (next.erase(*k) > 0) {
            applied.push_back(k->to_string());
        } else {
            skipped.push_back(k->to_string() + ": not found");
        }
    }
    return commit(std::move(next), std::move(next_models), std::move(applied), std::move(skipped),
                  {}, dry_run, if_match);
}

outcome config_store::remove(const object_key& key, bool dry_run, std::optional<uint64_t> if_match)
{
    std::lock_guard lock(_mu);
    auto next = _objects;
    auto next_models = _models;
    next_models.erase(key);
    if (next.erase(key) == 0) {
        outcome o;
        o.status = 404;
        o.generation = _generation;
        o.message = key.to_string() + " not found";
        return o;
    }
    return commit(std::move(next), std::move(next_models), {key.to_string()}, {}, {}, dry_run,
                  if_match);
}

nlohmann::json config_store::list(const std::optional<std::string>& kind,
                                  const std::optional<std::string>& ns,
                                  const std::optional<std::string>& name) const
{
    std::lock_guard lock(_mu);
    auto out = nlohmann::json::array();
    for (const auto& [k, v] : _objects) {
        if ((kind && k.kind != *kind) || (ns && k.ns != *ns) || (name && k.name != *name)) {
            continue;
        }
        out.push_back(v);
    }
    return out;
}

result<void> config_store::load(const std::vector<std::string>& mesh_files)
{
    std::lock_guard lock(_mu);
    auto persisted = read_state(_state_dir, state_file);
    if (!persisted) {
        return persisted.err();
    }
    std::map<object_key, nlohmann::json> objects;
    uint64_t gen = 0;
    std::string at;
    std::vector<model::diagnostic> errors;
    if (persisted->has_value()) {
        nlohmann::json state;
        try {
            state = nlohmann::json::parse(**persisted);
            gen = state.at("generation").get<uint64_t>();
            at = state.value("applied_at", "");
            for (const auto& o : state.at("objects")) {
                if (auto k = key_of(o)) {
                    objects[*k] = o;
                }
            }
        } catch (const nlohmann::json::exception& e) {
            return err(_state_dir + "/" + state_file + ": " + e.what());
        }
    } else {
        for (const auto& f : mesh_files) {
            std::ifstream in(f, std::ios::binary);
            if (!in) {
                return err("mesh file " + f + ": cannot read");
            }
            std::stringstream ss;
            ss << in.rdbuf();
            auto dec = model::decode(ss.str(), f, _opts);
            for (auto& d : dec.diagnostics) {
                if (d.level == model::severity::error) {
                    errors.push_back(std::move(d));
                }
            }
            auto objs = body_objects(ss.str());
            if (!objs) {
                return err("mesh file " + f + ": " + objs.err().to_string());
            }
            for (auto& o : *objs) {
                auto k = key_of(o);
                if (k && canonical_kind(k->kind) && !k->name.empty()) {
                    if (!o["metadata"].contains("namespace")) {
                        o["metadata"]["namespace"] = k->ns;
                    }
                    objects[*k] = std::move(o);
                }
            }
        }
    }
    auto candidate = decode_objects(objects, _opts);
    for (auto& d : model::validate(candidate.objects, _opts)) {
        if (d.level == model::severity::error) {
            errors.push_back(std::move(d));
        }
    }
    for (auto& d : candidate.diagnostics) {
        if (d.level == model::severity::error) {
            errors.push_back(std::move(d));
        }
    }
    if (!errors.empty()) {
        return err(errors.front().to_string() +
                   (errors.size() > 1 ? " (and " + std::to_string(errors.size() - 1) + " more)"
                                      : std::string()));
    }
    const bool from_files = !persisted->has_value() && !objects.empty();
    if (from_files) {
        gen = 1;
        at = now_rfc3339();
    }
    auto prepared = _publish.prepare(candidate.objects, gen);
    if (!prepared) {
        return err("compile: " + prepared.err().to_string());
    }
    if (from_files) {
        nlohmann::json state = {
            {"generation", gen}, {"applied_at", at}, {"objects", nlohmann::json::array()}};
        for (const auto& [k, v] : objects) {
            state["objects"].push_back(v);
        }
        if (auto w = write_atomic(_state_dir, state_file, state.dump()); !w) {
            return w.err();
        }
    }
    _publish.activate(std::move(*prepared));
    _objects = std::move(objects);
    _models = split_by_key(std::move(candidate.objects));
    _generation = gen;
    _applied_at = at;
    return ok();
}

} // namespace sluice::ctl
