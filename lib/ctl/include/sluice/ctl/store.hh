#pragma once
/// @file
/// The config store of the running appliance: the mesh objects as applied, their
/// generation, and the apply/delete transaction:
///   decode -> merge into a candidate -> validate -> compile+publish (the `publisher`) ->
///   persist atomically -> commit.
/// Any failure before the commit changes nothing. Applies and deletes are serialized;
/// reads take the same lock briefly. Config thread (REST handler threads) only.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/base/result.hh"
#include "sluice/model/decode.hh"

namespace sluice::ctl {

struct object_key {
    std::string kind;
    std::string ns;
    std::string name;
    auto operator<=>(const object_key&) const = default;
    [[nodiscard]] std::string to_string() const { return kind + " " + ns + "/" + name; }
};

/// "VirtualService" from "virtualservices", "virtualservice", "vs" (any case); nullopt for
/// a kind the store does not keep.
std::optional<std::string> canonical_kind(std::string_view word);

/// How the store hands a candidate to the data path, in two phases so that a generation is
/// persisted before it is published, and nothing is published that did not compile:
/// prepare() compiles (errors refuse the candidate, nothing changes); activate() publishes
/// what prepare() built and cannot fail.
struct publisher {
    std::function<result<std::shared_ptr<void>>(const model::mesh&, uint64_t generation)> prepare;
    std::function<void(std::shared_ptr<void>)> activate;
};

struct outcome {
    int status = 200; ///< HTTP status: 200, 400, 409, 500
    uint64_t generation = 0;
    std::vector<std::string> applied; ///< "Kind ns/name" created, replaced or deleted
    std::vector<std::string> skipped; ///< kinds the appliance does not use, not found
    std::vector<model::diagnostic> errors;
    std::vector<model::diagnostic> warnings;
    std::string message; ///< for 409/500

    /// The REST body: {generation, applied, skipped, warnings} or {errors, warnings}.
    [[nodiscard]] nlohmann::json to_json() const;
};

class config_store {
public:
    config_store(std::string state_dir, model::options opts, publisher pub);

    /// Loads the last persisted generation, or (when there is none) the given mesh files,
    /// and publishes it. Start-up only.
    result<void> load(const std::vector<std::string>& mesh_files);

    /// Creates or replaces the objects of a YAML/JSON body. `if_match`: apply only when
    /// the current generation equals it (409 otherwise).
    outcome apply(std::string_view body, bool dry_run, std::optional<uint64_t> if_match);
    /// Deletes the objects named by a YAML/JSON body (only kind/namespace/name are read).
    outcome remove(std::string_view body, bool dry_run, std::optional<uint64_t> if_match);
    /// Deletes one object.
    outcome remove(const object_key& key, bool dry_run, std::optional<uint64_t> if_match);

    /// Stored objects as applied, filtered by what is given (kind canonical).
    nlohmann::json list(const std::optional<std::string>& kind,
                        const std::optional<std::string>& ns,
                        const std::optional<std::string>& name) const;

    [[nodiscard]] uint64_t generation() const;
    /// RFC 3339 UTC time of the current generation ("" before the first).
    [[nodiscard]] std::string applied_at() const;
    /// Object count of the current generation.
    [[nodiscard]] size_t size() const;

    /// Decoded objects, one single-object mesh per key: an apply decodes only what it
    /// changes, and the candidate is assembled from these (a 1,000-object mesh is not
    /// decoded again on every apply).
    using model_map = std::map<object_key, model::mesh>;

private:
    outcome commit(std::map<object_key, nlohmann::json> next, model_map next_models,
                   std::vector<std::string> applied, std::vector<std::string> skipped,
                   std::vector<model::diagnostic> decode_diags, bool dry_run,
                   std::optional<uint64_t> if_match);

    const std::string _state_dir;
    const model::options _opts;
    const publisher _publish;
    mutable std::mutex _mu; // serializes applies; guards everything below
    std::map<object_key, nlohmann::json> _objects;
    model_map _models;
    uint64_t _generation = 0;
    std::string _applied_at;
};

/// Splits a YAML or JSON body into objects (documents, `kind: List` items) as JSON values.
/// YAML scalars become JSON numbers/booleans/null unless quoted. Errors carry the line.
result<std::vector<nlohmann::json>> body_objects(std::string_view body);

} // namespace sluice::ctl
