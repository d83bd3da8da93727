#include "sluice/base/log.hh"

SLUICE_LOG_TYPE_DEFINE(base);
