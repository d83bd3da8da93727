#include "inputs.hh"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

namespace sluice::ctl_cli {
namespace {

bool read_all(std::istream& in, std::string& out)
{
    std::ostringstream ss;
    ss << in.rdbuf();
    out = ss.str();
    return !in.bad();
}

} // namespace

std::vector<std::string> expand_paths(const std::vector<std::string>& paths)
{
    namespace fs = std::filesystem;
    std::vector<std::string> files;
    for (const auto& p : paths) {
        std::error_code ec;
        if (p != "-" && fs::is_directory(p, ec)) {
            std::vector<std::string> in_dir;
            for (const auto& e : fs::directory_iterator(p, ec)) {
                const auto ext = e.path().extension().string();
                if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json")) {
                    in_dir.push_back(e.path().string());
                }
            }
            std::sort(in_dir.begin(), in_dir.end());
            files.insert(files.end(), in_dir.begin(), in_dir.end());
        } else {
            files.push_back(p);
        }
    }
    return files;
}

loaded_mesh load_inputs(const std::vector<std::string>& paths, const model::options& opts)
{
    loaded_mesh out;
    const auto files = expand_paths(paths);
    for (const auto& f : files) {
        std::string text;
        bool good = false;
        if (f == "-") {
            good = read_all(std::cin, text);
        } else {
            std::ifstream in(f, std::ios::binary);
            good = in.good() && read_all(in, text);
        }
        if (!good) {
            model::diagnostic d;
            d.level = model::severity::error;
            d.file = f;
            d.message = "cannot read the file";
            out.diagnostics.push_back(d);
            out.io_error = true;
            continue;
        }
        auto dec = model::decode(text, f, opts);
        out.diagnostics.insert(out.diagnostics.end(),
                               std::make_move_iterator(dec.diagnostics.begin()),
                               std::make_move_iterator(dec.diagnostics.end()));
        model::merge(out.objects, std::move(dec.objects));
        out.files.push_back(f);
    }
    return out;
}

} // namespace sluice::ctl_cli
