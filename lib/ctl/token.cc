#include "sluice/ctl/token.hh"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "sluice/ctl/persist.hh"

namespace sluice::ctl {

result<std::string> load_or_create_token(const std::string& path)
{
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
        if ((st.st_mode & 0077) != 0) {
            return err("token file " + path + " is readable by group or others (chmod 600 it)");
        }
        const auto slash = path.rfind('/');
        auto text = read_state(slash == std::string::npos ? "." : path.substr(0, slash),
                               slash == std::string::npos ? path : path.substr(slash + 1));
        if (!text) {
            return text.err();
        }
        std::string t = text->value_or("");
        const auto b = t.find_first_not_of(" \t\r\n");
        const auto e = t.find_last_not_of(" \t\r\n");
        t = b == std::string::npos ? std::string() : t.substr(b, e - b + 1);
        if (t.size() < 16) {
            return err("token file " + path + " holds fewer than 16 characters");
        }
        return t;
    }
    if (errno != ENOENT) {
        return err("cannot stat " + path + ": " + std::strerror(errno));
    }
    unsigned char raw[32];
    if (::getrandom(raw, sizeof(raw), 0) != static_cast<ssize_t>(sizeof(raw))) {
        return err(std::string("getrandom: ") + std::strerror(errno));
    }
    static const char* hex = "0123456789abcdef";
    std::string token;
    for (unsigned char c : raw) {
        token += hex[c >> 4];
        token += hex[c & 15];
    }
    const auto slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
    const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    if (auto r = write_atomic(dir, name, token + "\n"); !r) {
        return r.err();
    }
    return token;
}

bool token_equal(std::string_view a, std::string_view b) noexcept
{
    // Every byte of the longer string is visited whatever the content.
    const size_t n = a.size() > b.size() ? a.size() : b.size();
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (size_t i = 0; i < n; ++i) {
        const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
        const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
        diff |= static_cast<unsigned char>(x ^ y);
    }
    return diff == 0;
}

std::string_view bearer_token(std::string_view authorization) noexcept
{
    constexpr std::string_view scheme = "Bearer ";
    if (authorization.size() <= scheme.size()) {
        return {};
    }
    for (size_t i = 0; i < scheme.size(); ++i) {
        const char c = authorization[i];
        const char s = scheme[i];
        if ((c | 0x20) != (s | 0x20)) {
            return {};
        }
    }
    auto t = authorization.substr(scheme.size());
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) {
        t.remove_prefix(1);
    }
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) {
        t.remove_suffix(1);
    }
    return t;
}

} // namespace sluice::ctl
