// Times decode + validate + compile of one mesh file and reports peak RSS: the measuring
// half of perf/compile_scale.sh. Prints one line: "objects=N decode_ms=A validate_ms=B
// compile_ms=C total_ms=D rss_mb=E".
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "sluice/compile/compile.hh"
#include "sluice/model/decode.hh"

namespace {
double rss_now_mb()
{
    std::ifstream f("/proc/self/statm");
    long pages = 0;
    long resident = 0;
    f >> pages >> resident;
    return static_cast<double>(resident) * 4096.0 / (1024.0 * 1024.0);
}
} // namespace

int main(int argc, char** argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: compile_scale MESH.yaml\n");
        return 2;
    }
    std::ifstream in(argv[1], std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    auto dec = sluice::model::decode(text, argv[1]);
    const auto t1 = clock::now();
    const double rss_decoded = rss_now_mb();
    auto diags = sluice::model::validate(dec.objects);
    const auto t2 = clock::now();
    auto snap = sluice::compile::compile(dec.objects, sluice::compile::node_locality{});
    const auto t3 = clock::now();
    if (dec.has_errors() || !snap) {
        std::fprintf(stderr, "compile_scale: the mesh did not compile\n");
        return 1;
    }
    size_t errors = 0;
    for (const auto& d : diags) {
        errors += d.level == sluice::model::severity::error ? 1 : 0;
    }
    const auto& m = dec.objects;
    const size_t objects = m.virtual_services.size() + m.destination_rules.size() +
                           m.services.size() + m.endpoint_slices.size() + m.gateways.size();
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    auto ms = [](auto a, auto b) {
        return std::chrono::duration<double, std::milli>(b - a).count();
    };
    std::printf("objects=%zu errors=%zu clusters=%zu decode_ms=%.1f validate_ms=%.1f "
                "compile_ms=%.1f total_ms=%.1f rss_after_decode_mb=%.1f rss_mb=%.1f\n",
                objects, errors, snap->clusters.size(), ms(t0, t1), ms(t1, t2), ms(t2, t3),
                ms(t0, t3), rss_decoded, static_cast<double>(ru.ru_maxrss) / 1024.0);
    return errors == 0 ? 0 : 1;
}
