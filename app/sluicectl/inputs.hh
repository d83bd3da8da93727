#pragma once
// Reading mesh config the way kubectl does: `-f FILE`, `-f -` (stdin), `-f DIR` (every
// .yaml/.yml/.json in it, sorted), then decoding and merging into one model.

#include <string>
#include <vector>

#include "sluice/model/decode.hh"

namespace sluice::ctl_cli {

struct loaded_mesh {
    model::mesh objects;
    std::vector<model::diagnostic> diagnostics; ///< decode diagnostics of every file
    std::vector<std::string> files;             ///< what was read
    bool io_error = false;                      ///< a path could not be read
};

/// The files of `paths`: a directory stands for its .yaml/.yml/.json files (sorted, not
/// recursive, as kubectl -f); "-" (stdin) and plain files stay as they are.
std::vector<std::string> expand_paths(const std::vector<std::string>& paths);

/// Reads and decodes every input; later files replace earlier objects of the same
/// kind/namespace/name.
loaded_mesh load_inputs(const std::vector<std::string>& paths, const model::options& opts);

} // namespace sluice::ctl_cli
