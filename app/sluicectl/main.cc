// sluicectl: drive sluice. Offline verbs work on YAML without a daemon:
//   sluicectl analyze -f FILE...          validate mesh config like istioctl analyze
// (REST verbs — apply, get, delete, status — arrive with the config port.)
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "inputs.hh"
#include "live.hh"
#include "route_check.hh"

namespace {

using namespace sluice;

int run_analyze(const std::vector<std::string>& files, const std::string& domain, bool quiet)
{
    model::options opts;
    opts.cluster_domain = domain;
    auto in = ctl_cli::load_inputs(files, opts);
    auto diags = in.diagnostics;
    auto more = model::validate(in.objects, opts);
    diags.insert(diags.end(), more.begin(), more.end());
    size_t errors = 0;
    size_t warnings = 0;
    for (const auto& d : diags) {
        if (d.level == model::severity::error) {
            ++errors;
        } else if (d.level == model::severity::warning) {
            ++warnings;
        } else if (quiet) {
            continue;
        }
        std::cout << d.to_string() << "\n";
    }
    const auto& m = in.objects;
    const size_t objects = m.gateways.size() + m.virtual_services.size() +
                           m.destination_rules.size() + m.service_entries.size() +
                           m.workload_entries.size() + m.services.size() + m.endpoint_slices.size();
    std::cout << in.files.size() << " file(s), " << objects << " object(s): " << errors
              << " error(s), " << warnings << " warning(s)\n";
    return errors == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"sluicectl: drive the sluice appliance and check mesh config offline"};
    app.set_version_flag("--version", std::string("sluicectl ") + SLUICE_VERSION);
    app.require_subcommand(1);
    app.fallthrough(); // global options may follow the verb: `sluicectl get vs -o json`

    std::vector<std::string> files;
    std::string domain = "cluster.local";
    bool quiet = false;
    auto* analyze = app.add_subcommand(
        "analyze", "validate Istio/Kubernetes YAML or JSON: errors, warnings; exit 1 on errors");
    analyze->add_option("-f,--filename", files, "file, directory of .yaml/.yml/.json, or - (stdin)")
        ->required();
    analyze->add_option("--cluster-domain", domain, "cluster domain of short host names")
        ->capture_default_str();
    analyze->add_flag("-q,--quiet", quiet, "do not print notes (skipped kinds)");

    auto* route = app.add_subcommand("route", "routing questions");
    route->require_subcommand(1);
    ctl_cli::route_check_args rc;
    auto* check = route->add_subcommand(
        "check", "evaluate requests against the compiled routes (like Envoy's router_check_tool)");
    check->add_option("-f,--filename", rc.files, "mesh config: file, directory, or -")->required();
    auto* tests_opt =
        check->add_option("--tests", rc.tests, "TESTS.yaml: requests and expectations");
    auto* req_opt =
        check->add_option("--request", rc.request, "one request, e.g. 'GET http://host/path'");
    tests_opt->excludes(req_opt);
    check->add_option("-H,--header", rc.headers, "request header 'name: value' (with --request)");
    check->add_option("--gateway", rc.gateway, "gateway ns/name, or mesh")->capture_default_str();
    check->add_option("--port", rc.port, "listener port (default from the URL scheme)");
    check->add_option("--cluster-domain", rc.cluster_domain, "cluster domain")
        ->capture_default_str();

    // Live verbs: a REST client of a running sluiced.
    ctl_cli::server_opts so;
    if (const char* env = std::getenv("SLUICE_SERVER"); env != nullptr && *env != '\0') {
        so.server = env;
    }
    app.add_option("--server", so.server, "sluiced REST URL (env SLUICE_SERVER)")
        ->capture_default_str();
    app.add_option("--token-file", so.token_file, "bearer token file (env SLUICE_TOKEN: the token)")
        ->capture_default_str();
    app.add_option("-o,--output", so.output, "table, yaml or json")
        ->check(CLI::IsMember({"table", "yaml", "json"}))
        ->capture_default_str();

    std::vector<std::string> apply_files;
    bool apply_dry = false;
    auto* apply = app.add_subcommand("apply", "create or replace objects from YAML/JSON");
    apply->add_option("-f,--filename", apply_files, "file, directory, or -")->required();
    apply->add_flag("--dry-run", apply_dry, "validate and compile only");

    std::vector<std::string> del_files;
    std::vector<std::string> del_args;
    std::string del_ns = "default";
    auto* del = app.add_subcommand("delete", "delete objects: -f FILE, or KIND NAME [-n NS]");
    del->add_option("-f,--filename", del_files, "file, directory, or -");
    del->add_option("args", del_args, "KIND NAME");
    del->add_option("-n,--namespace", del_ns, "namespace")->capture_default_str();

    std::string get_kind;
    std::string get_name;
    std::string get_ns = "default";
    bool get_all = false;
    auto* get = app.add_subcommand("get", "list objects: get KIND [NAME] [-n NS | -A]");
    get->add_option("kind", get_kind, "vs, dr, gw, se, we, svc, endpointslices, ...")->required();
    get->add_option("name", get_name, "object name");
    get->add_option("-n,--namespace", get_ns, "namespace")->capture_default_str();
    get->add_flag("-A,--all-namespaces", get_all, "every namespace");

    std::string ep_host;
    std::string ep_subset;
    auto* eps = app.add_subcommand("endpoints", "endpoints of a host: locality, priority, health");
    eps->add_option("host", ep_host, "service host (FQDN)")->required();
    eps->add_option("--subset", ep_subset, "DestinationRule subset");

    auto* stats = app.add_subcommand("stats", "counters per port and lcore, drops by reason");
    auto* status = app.add_subcommand("status", "generation, snapshot, ports and link state");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : 2; // usage errors exit 2
    }
    if (analyze->parsed()) {
        return run_analyze(files, domain, quiet);
    }
    if (apply->parsed()) {
        return ctl_cli::run_apply(so, apply_files, apply_dry, false);
    }
    if (del->parsed()) {
        if (!del_files.empty()) {
            return ctl_cli::run_apply(so, del_files, false, true);
        }
        if (del_args.size() != 2) {
            std::cerr << "delete: give -f FILE, or KIND NAME [-n NS]\n";
            return 2;
        }
        return ctl_cli::run_delete_one(so, del_args[0], del_args[1], del_ns);
    }
    if (get->parsed()) {
        return ctl_cli::run_get(so, get_kind, get_name, get_ns, get_all);
    }
    if (eps->parsed()) {
        return ctl_cli::run_endpoints(so, ep_host, ep_subset);
    }
    if (stats->parsed()) {
        return ctl_cli::run_simple_get(so, "/v1/stats");
    }
    if (status->parsed()) {
        return ctl_cli::run_simple_get(so, "/v1/status");
    }
    if (check->parsed()) {
        if (rc.tests.empty() && rc.request.empty()) {
            std::cerr << "route check: give --tests FILE or --request 'GET http://host/path'\n";
            return 2;
        }
        return ctl_cli::run_route_check(rc);
    }
    return 2;
}
