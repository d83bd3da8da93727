#pragma once
// `sluicectl route check`: evaluates requests against the compiled routes, like Envoy's
// router_check_tool, with the same matcher the L7 engine uses (snapshot::match_route).

#include <string>
#include <vector>

namespace sluice::ctl_cli {

struct route_check_args {
    std::vector<std::string> files;   ///< mesh config
    std::string tests;                ///< TESTS.yaml, or empty
    std::string request;              ///< 'GET http://host/path', or empty
    std::vector<std::string> headers; ///< -H 'k: v'
    std::string gateway = "mesh";
    unsigned port = 0; ///< 0: from the URL scheme
    std::string cluster_domain = "cluster.local";
};

/// Runs the command; returns the exit status (0: all pass / decided, 1: failures or config
/// errors, 2: usage errors).
int run_route_check(const route_check_args& args);

} // namespace sluice::ctl_cli
