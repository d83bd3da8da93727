#pragma once
// sluicectl's live verbs: a REST client of a running sluiced.

#include <string>
#include <vector>

namespace sluice::ctl_cli {

struct server_opts {
    std::string server = "http://127.0.0.1:9180"; ///< --server / SLUICE_SERVER
    std::string token_file = "/etc/sluice/token"; ///< --token-file (SLUICE_TOKEN wins)
    std::string output = "table";                 ///< table | yaml | json
};

int run_apply(const server_opts& s, const std::vector<std::string>& files, bool dry_run,
              bool remove);
int run_delete_one(const server_opts& s, const std::string& kind, const std::string& name,
                   const std::string& ns);
int run_get(const server_opts& s, const std::string& kind, const std::string& name,
            const std::string& ns, bool all_namespaces);
int run_endpoints(const server_opts& s, const std::string& host, const std::string& subset);
int run_simple_get(const server_opts& s, const std::string& path); ///< stats, status

} // namespace sluice::ctl_cli
