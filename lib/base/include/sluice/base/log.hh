#pragma once
/// @file
/// Logging facade over rte_log (STYLE C7). Each module owns one log type named
/// `sluice.<module>`, declared with SLUICE_LOG_TYPE_DECLARE in a header and defined with
/// SLUICE_LOG_TYPE_DEFINE in one .cc. Data-path logging goes through SLUICE_DP_LOG, which
/// compiles out above RTE_LOG_DP_LEVEL. rte_log works before and without rte_eal_init.

#include <rte_log.h>

#define SLUICE_LOG_TYPE_DECLARE(module) extern int sluice_logtype_##module
#define SLUICE_LOG_TYPE_DEFINE(module)                                                             \
    RTE_LOG_REGISTER(sluice_logtype_##module, sluice.module, INFO)

/// SLUICE_LOG(INFO, glue, "port %s up", name): level is an rte_log level without RTE_LOG_.
#define SLUICE_LOG(level, module, fmt, ...)                                                        \
    rte_log(RTE_LOG_##level, sluice_logtype_##module,                                              \
            "sluice." #module ": " fmt "\n" __VA_OPT__(, ) __VA_ARGS__)

/// Data-path log: removed at compile time unless RTE_LOG_DP_LEVEL allows the level.
#define SLUICE_DP_LOG(level, module, fmt, ...)                                                     \
    do {                                                                                           \
        if (RTE_LOG_##level <= RTE_LOG_DP_LEVEL) {                                                 \
            SLUICE_LOG(level, module, fmt __VA_OPT__(, ) __VA_ARGS__);                             \
        }                                                                                          \
    } while (0)

SLUICE_LOG_TYPE_DECLARE(base);
