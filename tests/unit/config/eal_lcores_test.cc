#include <gtest/gtest.h>

#include "sluice/config/appliance.hh"

namespace sluice::config {
namespace {

std::set<unsigned> enabled(const std::vector<std::string>& args)
{
    auto r = parse_eal_lcores(args);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err().message);
    return r.ok() && *r ? (*r)->enabled : std::set<unsigned>{};
}

TEST(EalLcores, ListForms)
{
    EXPECT_EQ(enabled({"-l", "0-2,5"}), (std::set<unsigned>{0, 1, 2, 5}));
    EXPECT_EQ(enabled({"-l0,3"}), (std::set<unsigned>{0, 3}));
    EXPECT_EQ(enabled({"-c", "0x5"}), (std::set<unsigned>{0, 2}));
    EXPECT_EQ(enabled({"-c", "f0"}), (std::set<unsigned>{4, 5, 6, 7}));
}

TEST(EalLcores, LcoreMaps)
{
    EXPECT_EQ(enabled({"--lcores", "(0-2)@(0-1)"}), (std::set<unsigned>{0, 1, 2}));
    EXPECT_EQ(enabled({"--lcores=1@0,2@1,(3,4)@2"}), (std::set<unsigned>{1, 2, 3, 4}));
    EXPECT_EQ(enabled({"--lcores", "0,5-6"}), (std::set<unsigned>{0, 5, 6}));
}

TEST(EalLcores, MainLcore)
{
    auto r = parse_eal_lcores({"-l", "2-4"});
    ASSERT_TRUE(r.ok() && *r);
    EXPECT_EQ((*r)->main, 2u);
    auto m = parse_eal_lcores({"-l", "2-4", "--main-lcore", "4"});
    ASSERT_TRUE(m.ok() && *m);
    EXPECT_EQ((*m)->main, 4u);
}

TEST(EalLcores, AbsentOrInvalid)
{
    auto none = parse_eal_lcores({"--no-huge", "-m", "512"});
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(*none);
    EXPECT_FALSE(parse_eal_lcores({"-l", "3-1"}).ok());
    EXPECT_FALSE(parse_eal_lcores({"-l", "x"}).ok());
    EXPECT_FALSE(parse_eal_lcores({"--lcores", "(0-2@1"}).ok());
    EXPECT_FALSE(parse_eal_lcores({"-c", "0xzz"}).ok());
    EXPECT_FALSE(parse_eal_lcores({"-l", "9999"}).ok());
}

} // namespace
} // namespace sluice::config
