// parse_frame() is inline in its header (it runs per packet); this unit keeps the module's
// library non-empty and checks the header compiles on its own.
#include "sluice/net/parse.hh"
