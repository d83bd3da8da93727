#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "sluice/ctl/token.hh"

namespace sluice::ctl {
namespace {

TEST(Token, CreatedOnceWithMode0600ThenReused)
{
    char tmpl[] = "/tmp/sluice-token.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string path = std::string(tmpl) + "/etc/token";
    auto a = load_or_create_token(path);
    ASSERT_TRUE(a.ok()) << a.err().message;
    EXPECT_EQ(a->size(), 64u);
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    auto b = load_or_create_token(path);
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(*a, *b);
    // Refused when others could read it.
    ::chmod(path.c_str(), 0644);
    auto c = load_or_create_token(path);
    ASSERT_FALSE(c.ok());
    EXPECT_NE(c.err().message.find("chmod 600"), std::string::npos);
    std::filesystem::remove_all(tmpl);
}

TEST(Token, ConstantTimeCompare)
{
    EXPECT_TRUE(token_equal("abcdef0123456789", "abcdef0123456789"));
    EXPECT_FALSE(token_equal("abcdef0123456789", "abcdef0123456788"));
    EXPECT_FALSE(token_equal("abcdef0123456789", "abcdef012345678"));
    EXPECT_FALSE(token_equal("", "x"));
    EXPECT_TRUE(token_equal("", ""));
}

TEST(Token, BearerHeader)
{
    EXPECT_EQ(bearer_token("Bearer abc123"), "abc123");
    EXPECT_EQ(bearer_token("bearer   abc123  "), "abc123");
    EXPECT_EQ(bearer_token("Basic abc123"), "");
    EXPECT_EQ(bearer_token("Bearer"), "");
    EXPECT_EQ(bearer_token(""), "");
}

} // namespace
} // namespace sluice::ctl
