#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "sluice/ctl/persist.hh"

namespace sluice::ctl {
namespace {

class Persist : public ::testing::Test {
protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/sluice-persist.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        _dir = tmpl;
    }
    void TearDown() override { std::filesystem::remove_all(_dir); }
    std::string _dir;
};

TEST_F(Persist, WriteThenReadBack)
{
    auto none = read_state(_dir, "mesh.json");
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none->has_value());
    ASSERT_TRUE(write_atomic(_dir, "mesh.json", "{\"generation\":1}").ok());
    ASSERT_TRUE(write_atomic(_dir, "mesh.json", "{\"generation\":2}").ok());
    auto got = read_state(_dir, "mesh.json");
    ASSERT_TRUE(got.ok() && got->has_value());
    EXPECT_EQ(**got, "{\"generation\":2}");
    // No temp file is left behind by a successful write.
    size_t files = 0;
    for (const auto& e : std::filesystem::directory_iterator(_dir)) {
        (void)e;
        ++files;
    }
    EXPECT_EQ(files, 1u);
}

TEST_F(Persist, TornTempFileIsIgnoredAndRemoved)
{
    ASSERT_TRUE(write_atomic(_dir, "mesh.json", "whole generation 7").ok());
    // A crash between write and rename leaves a half-written temp file.
    {
        std::ofstream torn(_dir + "/mesh.json.tmp.4242");
        torn << "{\"generation\":8, \"obj";
    }
    auto got = read_state(_dir, "mesh.json");
    ASSERT_TRUE(got.ok() && got->has_value());
    EXPECT_EQ(**got, "whole generation 7");
    EXPECT_FALSE(std::filesystem::exists(_dir + "/mesh.json.tmp.4242"));
}

TEST_F(Persist, CreatesPrivateDirectory)
{
    const std::string sub = _dir + "/state/deeper";
    ASSERT_TRUE(write_atomic(sub, "x", "y").ok());
    struct stat st {};
    ASSERT_EQ(::stat(sub.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    ASSERT_EQ(::stat((sub + "/x").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(Persist, UnwritableDirectoryIsAnError)
{
    auto r = write_atomic("/proc/sluice-cannot-exist", "x", "y");
    EXPECT_FALSE(r.ok());
}

} // namespace
} // namespace sluice::ctl
