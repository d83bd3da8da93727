#include "live.hh"

#include "inputs.hh"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

namespace sluice::ctl_cli {
namespace {

struct reply {
    int status = 0;
    nlohmann::json body;
    std::string raw;
};

YAML::Node to_yaml(const nlohmann::json& j)
{
    YAML::Node n;
    if (j.is_object()) {
        n = YAML::Node(YAML::NodeType::Map);
        for (auto it = j.begin(); it != j.end(); ++it) {
            n[it.key()] = to_yaml(it.value());
        }
    } else if (j.is_array()) {
        n = YAML::Node(YAML::NodeType::Sequence);
        for (const auto& e : j) {
            n.push_back(to_yaml(e));
        }
    } else if (j.is_string()) {
        n = j.get<std::string>();
    } else if (j.is_null()) {
        n = YAML::Node(YAML::NodeType::Null);
    } else {
        n = j.dump();
    }
    return n;
}

void print(const server_opts& s, const nlohmann::json& j)
{
    if (s.output == "yaml") {
        YAML::Emitter e;
        e << to_yaml(j);
        std::cout << e.c_str() << "\n";
    } else {
        std::cout << j.dump(2) << "\n";
    }
}

/// The token: SLUICE_TOKEN, else the token file.
bool token(const server_opts& s, std::string& out)
{
    if (const char* t = std::getenv("SLUICE_TOKEN"); t != nullptr && *t != '\0') {
        out = t;
        return true;
    }
    std::ifstream in(s.token_file);
    if (!in) {
        std::cerr << "sluicectl: cannot read the token file " << s.token_file
                  << " (--token-file, or SLUICE_TOKEN)\n";
        return false;
    }
    std::getline(in, out);
    while (!out.empty() && (out.back() == '\r' || out.back() == ' ')) {
        out.pop_back();
    }
    return true;
}

/// One request. Returns false (and has said why) when there is no usable reply.
bool call(const server_opts& s, const std::string& method, const std::string& path,
          const std::string& body, const std::string& content_type, reply& r)
{
    std::string tok;
    if (!token(s, tok)) {
        return false;
    }
    httplib::Client c(s.server);
    if (!c.is_valid()) {
        std::cerr << "sluicectl: bad --server URL " << s.server << "\n";
        return false;
    }
    c.set_connection_timeout(5, 0);
    c.set_read_timeout(60, 0);
    httplib::Headers h = {{"Authorization", "Bearer " + tok}};
    auto res = method == "GET"    ? c.Get(path, h)
               : method == "POST" ? c.Post(path, h, body, content_type)
                                  : c.Delete(path, h);
    if (!res) {
        std::cerr << "sluicectl: cannot reach " << s.server << ": "
                  << httplib::to_string(res.error()) << "\n";
        return false;
    }
    r.status = res->status;
    r.raw = res->body;
    if (r.status == 401) {
        std::cerr << "sluicectl: " << s.server << " refused the token (401)\n";
        return false;
    }
    try {
        r.body = nlohmann::json::parse(res->body);
    } catch (const nlohmann::json::exception&) {
        r.body = nullptr;
    }
    return true;
}

/// Prints the server's diagnostics of one list ("errors" or "warnings"), each as
/// "LEVEL: OBJECT: FIELD: MESSAGE" (empty parts left out).
void print_diagnostics(const reply& r, const char* list, const char* level)
{
    if (!r.body.is_object() || !r.body.contains(list)) {
        return;
    }
    for (const auto& d : r.body[list]) {
        std::string line = std::string(level) + ": ";
        for (const char* part : {"object", "field"}) {
            if (!d.value(part, "").empty()) {
                line += d.value(part, "") + ": ";
            }
        }
        std::cerr << line << d.value("message", "") << "\n";
    }
}

/// Prints a failed reply's errors (with field paths); returns 1.
int fail(const reply& r)
{
    if (r.body.is_object() && r.body.contains("errors")) {
        print_diagnostics(r, "errors", "error");
    } else {
        std::cerr << "sluicectl: HTTP " << r.status << ": " << r.raw << "\n";
    }
    return 1;
}

void print_warnings(const reply& r)
{
    print_diagnostics(r, "warnings", "warning");
}

bool read_inputs(const std::vector<std::string>& files, std::string& body)
{
    for (const auto& f : files) {
        std::stringstream ss;
        if (f == "-") {
            ss << std::cin.rdbuf();
        } else {
            std::ifstream in(f, std::ios::binary);
            if (!in) {
                std::cerr << "sluicectl: cannot read " << f << "\n";
                return false;
            }
            ss << in.rdbuf();
        }
        // One YAML stream, a document per file (JSON is YAML, so JSON files join too).
        body += "---\n" + ss.str() + "\n";
    }
    return true;
}

std::string age_or(const nlohmann::json& o, const char* key)
{
    return o.contains(key) && o[key].is_string() ? o[key].get<std::string>() : "";
}

} // namespace

int run_apply(const server_opts& s, const std::vector<std::string>& files, bool dry_run,
              bool remove)
{
    const auto expanded = expand_paths(files);
    std::string body;
    if (!read_inputs(expanded, body)) {
        return 1;
    }
    reply r;
    const std::string path =
        std::string(remove ? "/v1/delete" : "/v1/apply") + (dry_run ? "?dryRun=true" : "");
    if (!call(s, "POST", path, body, "application/yaml", r)) {
        return 1;
    }
    print_warnings(r);
    if (r.status != 200) {
        return fail(r);
    }
    if (s.output != "table") {
        print(s, r.body);
        return 0;
    }
    const char* verb = remove ? "deleted" : "configured";
    for (const auto& a : r.body["applied"]) {
        std::cout << a.get<std::string>() << " " << verb << (dry_run ? " (dry run)" : "") << "\n";
    }
    for (const auto& k : r.body["skipped"]) {
        std::cout << k.get<std::string>() << " (skipped)\n";
    }
    std::cout << "generation " << r.body["generation"] << "\n";
    return 0;
}

int run_delete_one(const server_opts& s, const std::string& kind, const std::string& name,
                   const std::string& ns)
{
    reply r;
    if (!call(s, "DELETE", "/v1/objects/" + kind + "/" + ns + "/" + name, "", "", r)) {
        return 1;
    }
    if (r.status != 200) {
        return fail(r);
    }
    if (s.output != "table") {
        print(s, r.body);
        return 0;
    }
    for (const auto& a : r.body["applied"]) {
        std::cout << a.get<std::string>() << " deleted\n";
    }
    std::cout << "generation " << r.body["generation"] << "\n";
    return 0;
}

int run_get(const server_opts& s, const std::string& kind, const std::string& name,
            const std::string& ns, bool all_namespaces)
{
    std::string path = "/v1/objects/" + kind;
    if (!all_namespaces) {
        path += "/" + ns;
        if (!name.empty()) {
            path += "/" + name;
        }
    }
    reply r;
    if (!call(s, "GET", path, "", "", r)) {
        return 1;
    }
    if (r.status != 200) {
        return fail(r);
    }
    auto items = r.body["items"];
    if (all_namespaces && !name.empty()) {
        nlohmann::json kept = nlohmann::json::array();
        for (const auto& o : items) {
            if (o["metadata"].value("name", "") == name) {
                kept.push_back(o);
            }
        }
        items = kept;
    }
    if (s.output != "table") {
        print(s, items);
        return 0;
    }
    std::printf("%-20s %-32s %-16s %s\n", "NAMESPACE", "NAME", "KIND", "HOSTS");
    for (const auto& o : items) {
        const auto& md = o["metadata"];
        std::string hosts;
        const auto& spec = o.contains("spec") ? o["spec"] : nlohmann::json::object();
        if (spec.contains("hosts") && spec["hosts"].is_array()) {
            for (const auto& h : spec["hosts"]) {
                hosts += (hosts.empty() ? "" : ",") + h.get<std::string>();
            }
        } else if (spec.contains("host") && spec["host"].is_string()) {
            hosts = spec["host"].get<std::string>();
        }
        std::printf("%-20s %-32s %-16s %s\n", age_or(md, "namespace").c_str(),
                    age_or(md, "name").c_str(), age_or(o, "kind").c_str(), hosts.c_str());
    }
    return 0;
}

int run_endpoints(const server_opts& s, const std::string& host, const std::string& subset)
{
    std::string path = "/v1/endpoints?host=" + httplib::detail::encode_query_param(host);
    if (!subset.empty()) {
        path += "&subset=" + httplib::detail::encode_query_param(subset);
    }
    reply r;
    if (!call(s, "GET", path, "", "", r)) {
        return 1;
    }
    if (r.status != 200) {
        return fail(r);
    }
    if (s.output != "table") {
        print(s, r.body);
        return 0;
    }
    // CONNS: open connections to the endpoint (L4 TCP + L7 upstream), REQS: L7 requests.
    std::printf("%-22s %-6s %-28s %-12s %-8s %-6s %-6s %-6s %s\n", "ADDRESS", "PORT", "LOCALITY",
                "NETWORK", "PRIORITY", "WEIGHT", "CONNS", "REQS", "HEALTH");
    for (const auto& e : r.body["endpoints"]) {
        const std::string prio = e["priority"].is_null() ? "-" : e["priority"].dump();
        std::printf("%-22s %-6s %-28s %-12s %-8s %-6s %-6s %-6s %s\n",
                    e.value("address", "").c_str(), e["port"].dump().c_str(),
                    e.value("locality", "").c_str(), e.value("network", "").c_str(), prio.c_str(),
                    e["weight"].dump().c_str(),
                    std::to_string(e.value("active_connections", uint64_t{0})).c_str(),
                    std::to_string(e.value("active_requests", uint64_t{0})).c_str(),
                    e.value("health", "").c_str());
    }
    return 0;
}

int run_simple_get(const server_opts& s, const std::string& path)
{
    reply r;
    if (!call(s, "GET", path, "", "", r)) {
        return 1;
    }
    if (r.status != 200) {
        return fail(r);
    }
    if (s.output == "json" || s.output == "yaml") {
        print(s, r.body);
        return 0;
    }
    const auto& b = r.body;
    if (path == "/v1/status") {
        std::cout << "generation: " << b.value("generation", 0) << " (" << b.value("objects", 0)
                  << " objects, applied "
                  << (b.value("applied_at", "").empty() ? "never" : b.value("applied_at", ""))
                  << ")\nready: " << (b.value("ready", false) ? "yes" : "no") << "\n";
        if (b.contains("snapshot")) {
            const auto& sn = b["snapshot"];
            std::cout << "snapshot: " << sn.value("listeners", 0) << " listeners, "
                      << sn.value("clusters", 0) << " clusters, " << sn.value("endpoints", 0)
                      << " endpoints\n";
        }
        for (const auto& p : b["ports"]) {
            std::cout << "port " << p.value("name", "") << ": " << p.value("link", "") << ", "
                      << p.value("device", "") << "\n";
            if (p.value("flow_steering", "") == "rte_flow") {
                std::cout << "  flow steering: rte_flow (" << p.value("flow_rules", 0)
                          << " rules)\n";
            } else if (p.contains("flow_steering")) {
                std::cout << "  flow steering: software (" << p.value("flow_steering_reason", "")
                          << ")\n";
            }
        }
        return 0;
    }
    std::printf("%-8s %14s %14s %14s %14s\n", "PORT", "RX", "TX", "TO_KERNEL", "FROM_KERNEL");
    for (const auto& p : b["ports"]) {
        std::printf("%-8s %14s %14s %14s %14s\n", p.value("name", "").c_str(),
                    p["rx_packets"].dump().c_str(), p["tx_packets"].dump().c_str(),
                    p["to_kernel"].dump().c_str(), p["from_kernel"].dump().c_str());
    }
    for (auto it = b["drops"].begin(); it != b["drops"].end(); ++it) {
        if (it.value().get<uint64_t>() != 0) {
            std::cout << "drops " << it.key() << ": " << it.value() << "\n";
        }
    }
    return 0;
}

} // namespace sluice::ctl_cli
