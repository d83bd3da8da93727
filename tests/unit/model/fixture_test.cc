#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "sluice/model/decode.hh"

namespace sluice::model {
namespace {

std::string fixture_dir()
{
    return std::string(SLUICE_SOURCE_DIR) + "/../shared/fixtures/istio-samples";
}

std::vector<std::filesystem::path> sample_files()
{
    std::vector<std::filesystem::path> out;
    for (const auto& e : std::filesystem::recursive_directory_iterator(fixture_dir())) {
        const auto ext = e.path().extension();
        if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json")) {
            out.push_back(e.path());
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::string slurp(const std::filesystem::path& p)
{
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

TEST(FixtureIstioSamples, EveryFileDecodesAndValidatesWithoutErrors)
{
    const auto files = sample_files();
    ASSERT_GE(files.size(), 27U) << "fixtures missing under " << fixture_dir();
    for (const auto& f : files) {
        SCOPED_TRACE(f.string());
        const auto d = decode(slurp(f), f.string());
        for (const auto& diag : d.diagnostics) {
            EXPECT_NE(diag.level, severity::error) << diag.to_string();
        }
        for (const auto& diag : validate(d.objects)) {
            EXPECT_NE(diag.level, severity::error) << diag.to_string();
        }
    }
}

TEST(FixtureIstioSamples, AllSamplesTogetherHaveNoErrors)
{
    // Applied as one mesh (as `sluicectl analyze -f samples/`), later files replace earlier
    // objects of the same name.
    mesh all;
    for (const auto& f : sample_files()) {
        auto d = decode(slurp(f), f.string());
        ASSERT_FALSE(d.has_errors()) << f;
        merge(all, std::move(d.objects));
    }
    EXPECT_FALSE(all.virtual_services.empty());
    EXPECT_FALSE(all.destination_rules.empty());
    EXPECT_FALSE(all.gateways.empty());
    EXPECT_FALSE(all.services.empty());
    EXPECT_EQ(all.service_entries.size(), 1U);
    for (const auto& diag : validate(all)) {
        EXPECT_NE(diag.level, severity::error) << diag.to_string();
    }
}

TEST(FixtureIstioSamples, SkippedDeploymentsAreNotes)
{
    const auto path =
        std::filesystem::path(fixture_dir()) / "samples" / "helloworld" / "helloworld.yaml";
    const auto d = decode(slurp(path), "helloworld.yaml");
    int notes = 0;
    for (const auto& diag : d.diagnostics) {
        EXPECT_EQ(diag.level, severity::note) << diag.to_string();
        ++notes;
    }
    EXPECT_EQ(notes, 2);
    ASSERT_EQ(d.objects.services.size(), 1U);
    EXPECT_EQ(d.objects.services[0].ports.at(0).port, 5000U);
}

} // namespace
} // namespace sluice::model
