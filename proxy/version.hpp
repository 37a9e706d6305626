// The version of this build, from the project version in CMakeLists.txt.
#pragma once

namespace gatehouse {

#ifndef GATEHOUSE_VERSION
#error "GATEHOUSE_VERSION must be defined by the build"
#endif

inline constexpr const char* version_string = GATEHOUSE_VERSION;

} // namespace gatehouse
