#pragma once
#include "sluice/base/log.hh"

SLUICE_LOG_TYPE_DECLARE(glue);
