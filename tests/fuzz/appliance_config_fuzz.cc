// Fuzz target: the appliance config parser reports errors, never crashes, on any text.
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "sluice/config/appliance.hh"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const std::string text(reinterpret_cast<const char*>(data), size);
    auto r = sluice::config::parse(text, "fuzz.conf");
    if (!r.config && r.errors.empty()) {
        __builtin_trap(); // a rejected config must say why
    }
    return 0;
}

std::vector<std::vector<uint8_t>> fuzz_seeds()
{
    std::ifstream in(std::string(SLUICE_SOURCE_DIR) + "/conf/sluice.conf");
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string s = ss.str();
    return {std::vector<uint8_t>(s.begin(), s.end())};
}
