// main() of the EAL test programs: the EAL is process-wide and initialised once.
#include <gtest/gtest.h>

#include <cstdio>

#include "eal_env.hh"

int main(int argc, char** argv)
{
    ::testing::InitGoogleTest(&argc, argv);
    if (!sluice::test::init_eal(argv[0])) {
        std::fprintf(stderr, "EAL init failed: %s\n", rte_strerror(rte_errno));
        return 1;
    }
    const int rc = RUN_ALL_TESTS();
    rte_eal_cleanup();
    return rc;
}
