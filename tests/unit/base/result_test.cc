#include <gtest/gtest.h>

#include "sluice/base/result.hh"

namespace sluice {
namespace {

result<int> half(int v)
{
    if (v % 2 != 0) {
        return err("odd value " + std::to_string(v), "input");
    }
    return v / 2;
}

TEST(Result, CarriesValueOrError)
{
    auto a = half(8);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(*a, 4);
    auto b = half(3);
    ASSERT_FALSE(b.ok());
    EXPECT_EQ(b.err().message, "odd value 3");
    EXPECT_EQ(b.err().to_string(), "input: odd value 3");
}

TEST(Result, VoidResult)
{
    result<void> good = ok();
    EXPECT_TRUE(good.ok());
    result<void> bad = err("nope");
    EXPECT_FALSE(bad.ok());
    EXPECT_EQ(bad.err().to_string(), "nope");
}

} // namespace
} // namespace sluice
