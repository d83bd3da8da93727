#include "sluice/glue/log.hh"

SLUICE_LOG_TYPE_DEFINE(glue);
