#include "sluice/ctl/api.hh"

#include <charconv>

#include <httplib.h>

#include "sluice/ctl/token.hh"

namespace sluice::ctl {
namespace {

http_response json_response(int status, const nlohmann::json& body)
{
    http_response r;
    r.status = status;
    r.body = body.dump(2) + "\n";
    return r;
}

http_response error_response(int status, const std::string& message)
{
    return json_response(status,
                         {{"errors", {{{"object", ""}, {"field", ""}, {"message", message}}}},
                          {"warnings", nlohmann::json::array()}});
}

std::vector<std::string> split_path(const std::string& path)
{
    std::vector<std::string> parts;
    size_t i = 0;
    while (i < path.size()) {
        while (i < path.size() && path[i] == '/') {
            ++i;
        }
        const size_t j = path.find('/', i);
        if (i < path.size()) {
            parts.push_back(path.substr(i, j == std::string::npos ? std::string::npos : j - i));
        }
        i = j == std::string::npos ? path.size() : j;
    }
    return parts;
}

http_response method_not_allowed(const char* allow)
{
    auto r = error_response(405, std::string("method not allowed; use ") + allow);
    r.headers.emplace_back("Allow", allow);
    return r;
}

} // namespace

api::api(config_store& store, api_hooks hooks, std::string token)
    : _store(store), _hooks(std::move(hooks)), _token(std::move(token))
{
}

http_response api::handle(const http_request& req) const
{
    const auto parts = split_path(req.path);
    if (req.path == "/healthz") {
        if (req.method != "GET" && req.method != "HEAD") {
            return method_not_allowed("GET");
        }
        http_response r;
        r.content_type = "text/plain";
        r.body = "ok\n";
        return r;
    }
    // Everything but /healthz needs the bearer token.
    const auto auth = req.headers.find("authorization");
    if (auth == req.headers.end() || !token_equal(bearer_token(auth->second), _token)) {
        auto r = error_response(401, "missing or wrong bearer token (Authorization: Bearer ...)");
        r.headers.emplace_back("WWW-Authenticate", "Bearer");
        return r;
    }
    if (req.body.size() > max_body_bytes) {
        return error_response(413, "request body over 8 MiB");
    }
    const bool get = req.method == "GET" || req.method == "HEAD";
    if (req.path == "/readyz") {
        if (!get) {
            return method_not_allowed("GET");
        }
        const bool ready = _hooks.ready ? _hooks.ready() : true;
        http_response r;
        r.status = ready ? 200 : 503;
        r.content_type = "text/plain";
        r.body = ready ? "ready\n" : "not ready\n";
        return r;
    }
    if (req.path == "/metrics") {
        if (!get) {
            return method_not_allowed("GET");
        }
        http_response r;
        r.content_type = "text/plain; version=0.0.4";
        r.body = _hooks.metrics ? _hooks.metrics() : std::string();
        return r;
    }
    if (parts.size() >= 2 && parts[0] == "v1") {
        const std::string& what = parts[1];
        if (what == "apply" && parts.size() == 2) {
            return req.method == "POST" ? apply(req, false) : method_not_allowed("POST");
        }
        if (what == "delete" && parts.size() == 2) {
            return req.method == "POST" ? apply(req, true) : method_not_allowed("POST");
        }
        if (what == "objects" && parts.size() <= 5) {
            if (req.method == "DELETE") {
                return parts.size() == 5 ? objects(req, parts)
                                         : method_not_allowed("GET (DELETE needs kind/ns/name)");
            }
            return get ? objects(req, parts) : method_not_allowed("GET, DELETE");
        }
        if ((what == "status" || what == "stats") && parts.size() == 2) {
            if (!get) {
                return method_not_allowed("GET");
            }
            nlohmann::json j = what == "status"
                                   ? (_hooks.status ? _hooks.status() : nlohmann::json::object())
                                   : (_hooks.stats ? _hooks.stats() : nlohmann::json::object());
            if (what == "status") {
                j["generation"] = _store.generation();
                j["applied_at"] = _store.applied_at();
                j["objects"] = _store.size();
            }
            return json_response(200, j);
        }
        if (what == "endpoints" && parts.size() == 2) {
            if (!get) {
                return method_not_allowed("GET");
            }
            const auto host = req.query.find("host");
            if (host == req.query.end() || host->second.empty()) {
                return error_response(400, "query parameter host is required");
            }
            const auto subset = req.query.find("subset");
            if (!_hooks.endpoints) {
                return error_response(404, "no cluster for host " + host->second);
            }
            auto e =
                _hooks.endpoints(host->second, subset == req.query.end() ? "" : subset->second);
            if (!e) {
                return error_response(404, e.err().message);
            }
            return json_response(200, *e);
        }
    }
    return error_response(404, "no such path: " + req.path);
}

http_response api::apply(const http_request& req, bool remove) const
{
    const auto dry = req.query.find("dryRun");
    const bool dry_run = dry != req.query.end() && (dry->second == "true" || dry->second == "1");
    std::optional<uint64_t> if_match;
    if (const auto h = req.headers.find("if-match"); h != req.headers.end()) {
        std::string v = h->second;
        if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
            v = v.substr(1, v.size() - 2);
        }
        uint64_t g = 0;
        const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), g);
        if (v.empty() || ec != std::errc{} || p != v.data() + v.size()) {
            return error_response(400, "If-Match must be a generation number, got \"" + h->second +
                                           "\"");
        }
        if_match = g;
    }
    if (const auto ct = req.headers.find("content-type"); ct != req.headers.end()) {
        const std::string& t = ct->second;
        if (t.find("yaml") == std::string::npos && t.find("json") == std::string::npos &&
            t.find("text/plain") == std::string::npos) {
            return error_response(415, "Content-Type must be application/yaml or application/json");
        }
    }
    const auto o = remove ? _store.remove(req.body, dry_run, if_match)
                          : _store.apply(req.body, dry_run, if_match);
    return json_response(o.status, o.to_json());
}

http_response api::objects(const http_request& req, const std::vector<std::string>& parts) const
{
    std::optional<std::string> kind;
    std::optional<std::string> ns;
    std::optional<std::string> name;
    if (parts.size() >= 3) {
        kind = canonical_kind(parts[2]);
        if (!kind) {
            return error_response(404, "unknown kind \"" + parts[2] + "\"");
        }
    }
    if (parts.size() >= 4) {
        ns = parts[3];
    }
    if (parts.size() >= 5) {
        name = parts[4];
    }
    if (req.method == "DELETE") {
        const auto dry = req.query.find("dryRun");
        const bool dry_run = dry != req.query.end() && dry->second == "true";
        const auto o = _store.remove(object_key{*kind, *ns, *name}, dry_run, std::nullopt);
        if (o.status == 404) {
            return error_response(404, o.message);
        }
        return json_response(o.status, o.to_json());
    }
    auto items = _store.list(kind, ns, name);
    if (name && items.empty()) {
        return error_response(404, *kind + " " + *ns + "/" + *name + " not found");
    }
    return json_response(200, {{"generation", _store.generation()}, {"items", items}});
}

struct rest_server::impl {
    httplib::Server server;
};

rest_server::rest_server() : _impl(std::make_unique<impl>()) {}

rest_server::~rest_server()
{
    stop();
}

result<void> rest_server::start(const api& a, const net::ip_addr& address, uint16_t port)
{
    auto& s = _impl->server;
    s.set_payload_max_length(max_body_bytes); // larger bodies: 413 before they are read
    s.new_task_queue = [] { return new httplib::ThreadPool(4); };
    auto handler = [&a](const httplib::Request& hreq, httplib::Response& hres) {
        http_request req;
        req.method = hreq.method;
        req.path = hreq.path;
        for (const auto& [k, v] : hreq.params) {
            req.query[k] = v;
        }
        for (const auto& [k, v] : hreq.headers) {
            std::string lk = k;
            for (auto& c : lk) {
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            }
            req.headers[lk] = v;
        }
        req.body = hreq.body;
        const auto res = a.handle(req);
        hres.status = res.status;
        for (const auto& [k, v] : res.headers) {
            hres.set_header(k, v);
        }
        hres.set_content(res.body, res.content_type);
    };
    const char* any = R"(/.*)";
    s.Get(any, handler);
    s.Post(any, handler);
    s.Put(any, handler);
    s.Delete(any, handler);
    s.Patch(any, handler);
    s.Options(any, handler);
    const std::string host = address.to_string();
    int bound = port;
    if (port == 0) {
        bound = s.bind_to_any_port(host.c_str());
    } else if (!s.bind_to_port(host.c_str(), port)) {
        bound = -1;
    }
    if (bound <= 0) {
        return err("cannot listen on " + host + ":" + std::to_string(port) +
                   " (address in use or not on this host?)");
    }
    _port = static_cast<uint16_t>(bound);
    _thread = std::thread([this] { _impl->server.listen_after_bind(); });
    return ok();
}

void rest_server::stop()
{
    if (_thread.joinable()) {
        _impl->server.stop();
        _thread.join();
    }
}

} // namespace sluice::ctl
