// A bounded fuzz driver for GCC builds: replays seeds from the target, then applies random
// mutations (bit flips, byte sets, truncation, extension, splicing) for a fixed number of
// iterations or seconds, whichever ends first. Sanitizers turn any bug into an abort.
//   usage: fuzz-x [iterations=200000] [seconds=20] [seed=1]
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

// libconfig leaks its error-message buffer when a parse fails; not ours to fix.
extern "C" const char* __lsan_default_suppressions()
{
    return "leak:libconfig\n";
}
std::vector<std::vector<uint8_t>> fuzz_seeds();

int main(int argc, char** argv)
{
    const unsigned long iters = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 200000;
    const double seconds = argc > 2 ? std::strtod(argv[2], nullptr) : 20.0;
    std::mt19937_64 rng(argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1);
    auto corpus = fuzz_seeds();
    for (const auto& s : corpus) {
        LLVMFuzzerTestOneInput(s.data(), s.size());
    }
    if (corpus.empty()) {
        corpus.emplace_back();
    }
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(static_cast<long>(seconds * 1000));
    unsigned long n = 0;
    std::vector<uint8_t> buf;
    for (; n < iters; ++n) {
        if ((n & 1023) == 0 && std::chrono::steady_clock::now() > deadline) {
            break;
        }
        buf = corpus[rng() % corpus.size()];
        const int mutations = 1 + static_cast<int>(rng() % 4);
        for (int m = 0; m < mutations; ++m) {
            switch (rng() % 6) {
            case 0:
                if (!buf.empty()) {
                    buf[rng() % buf.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
                }
                break;
            case 1:
                if (!buf.empty()) {
                    buf[rng() % buf.size()] = static_cast<uint8_t>(rng());
                }
                break;
            case 2:
                buf.resize(buf.empty() ? 0 : rng() % buf.size());
                break;
            case 3:
                buf.resize(buf.size() + rng() % 64, static_cast<uint8_t>(rng()));
                break;
            case 4: {
                const auto& other = corpus[rng() % corpus.size()];
                if (!other.empty() && !buf.empty()) {
                    const size_t at = rng() % buf.size();
                    const size_t from = rng() % other.size();
                    for (size_t i = 0; at + i < buf.size() && from + i < other.size() && i < 16;
                         ++i) {
                        buf[at + i] = other[from + i];
                    }
                }
                break;
            }
            default:
                if (buf.size() >= 2) { // interesting 16-bit values (lengths, types)
                    static const uint16_t vals[] = {0,      1,      0x7f,   0x80, 0xff, 0x100,
                                                    0x7fff, 0x8000, 0xffff, 20,   40,   14};
                    const size_t at = rng() % (buf.size() - 1);
                    const uint16_t v = vals[rng() % (sizeof(vals) / sizeof(vals[0]))];
                    buf[at] = static_cast<uint8_t>(v >> 8);
                    buf[at + 1] = static_cast<uint8_t>(v);
                }
                break;
            }
        }
        LLVMFuzzerTestOneInput(buf.data(), buf.size());
        if (rng() % 64 == 0 && corpus.size() < 4096) {
            corpus.push_back(buf);
        }
    }
    std::printf("%s: %lu inputs, no crash\n", argv[0], n);
    return 0;
}
