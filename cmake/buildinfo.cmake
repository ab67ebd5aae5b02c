# SPDX-License-Identifier: Apache-2.0
# Writes OUT (a C file defining aimedres_build[]) with the commit the build is made from:
# `git describe --always --dirty` of SRC, or "unknown" outside a git checkout. configure_file
# rewrites OUT only when its text changes, so an unchanged commit rebuilds nothing.
execute_process(COMMAND git -C "${SRC}" describe --always --dirty --abbrev=12
                OUTPUT_VARIABLE AIMEDRES_BUILD OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR AIMEDRES_BUILD STREQUAL "")
  set(AIMEDRES_BUILD "unknown")
endif()
configure_file("${SRC}/cmake/buildinfo.c.in" "${OUT}" @ONLY)
