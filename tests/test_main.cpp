// The one translation unit that holds doctest's runner. It is built without the tests'
// precompiled header, because DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN must precede doctest.h.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
