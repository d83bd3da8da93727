#include "sluice/ctl/persist.hh"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace sluice::ctl {
namespace {

constexpr std::string_view tmp_marker = ".tmp.";

std::string errno_text(const std::string& what)
{
    return what + ": " + std::strerror(errno);
}

bool write_all(int fd, std::string_view data)
{
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
}

} // namespace

result<void> write_atomic(const std::string& dir, const std::string& name, std::string_view content)
{
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
        std::filesystem::create_directories(dir, ec);
        if (ec) {
            return err("cannot create " + dir + ": " + ec.message());
        }
        ::chmod(dir.c_str(), 0700); // a directory we made holds state: ours alone
    }
    const std::string final_path = dir + "/" + name;
    const std::string tmp = final_path + std::string(tmp_marker) + std::to_string(::getpid());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return err(errno_text("cannot create " + tmp));
    }
    if (!write_all(fd, content) || ::fsync(fd) != 0) {
        const auto e = errno_text("cannot write " + tmp);
        ::close(fd);
        ::unlink(tmp.c_str());
        return err(e);
    }
    ::close(fd);
    // The rename is the commit point; the directory fsync makes it durable.
    if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
        const auto e = errno_text("cannot rename " + tmp + " to " + final_path);
        ::unlink(tmp.c_str());
        return err(e);
    }
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        return err(errno_text("cannot open " + dir));
    }
    const int rc = ::fsync(dfd);
    ::close(dfd);
    if (rc != 0) {
        return err(errno_text("cannot fsync " + dir));
    }
    return ok();
}

result<std::optional<std::string>> read_state(const std::string& dir, const std::string& name)
{
    // Leftover temp files of a crash mid-write: never committed, so never read.
    if (DIR* d = ::opendir(dir.c_str())) {
        const std::string prefix = name + std::string(tmp_marker);
        while (dirent* e = ::readdir(d)) {
            if (std::string_view(e->d_name).substr(0, prefix.size()) == prefix) {
                ::unlinkat(::dirfd(d), e->d_name, 0);
            }
        }
        ::closedir(d);
    }
    const std::string path = dir + "/" + name;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            return std::optional<std::string>();
        }
        return err(errno_text("cannot open " + path));
    }
    std::string out;
    char buf[65536];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            const auto e = errno_text("cannot read " + path);
            ::close(fd);
            return err(e);
        }
        if (n == 0) {
            break;
        }
        out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return std::optional<std::string>(std::move(out));
}

} // namespace sluice::ctl
