# Builds and runs the consumer project in tests/consumer/<MODE> against tensortape.
#   cmake -DMODE=find_package|fetch_content -DSOURCE_DIR=<tensortape checkout>
#         -DBINARY_DIR=<tensortape build dir> -DWORK_DIR=<scratch dir>
#         -DGENERATOR=<generator> -DCXX=<compiler> [-DBUILD_TYPE=<config>]
#         -P run_consumer.cmake
cmake_minimum_required(VERSION 3.21)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(args -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX}" "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
if(BUILD_TYPE)
  set(config --config "${BUILD_TYPE}")
endif()

if(MODE STREQUAL "find_package")
  run("${CMAKE_COMMAND}" --install "${BINARY_DIR}" --prefix "${WORK_DIR}/prefix" ${config})
  list(APPEND args "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix")
elseif(MODE STREQUAL "fetch_content")
  # A clone only sees commits, so uncommitted changes are not part of this test.
  # Without any commit there is nothing to clone: point FetchContent at the tree itself.
  find_program(GIT git)
  if(GIT)
    execute_process(COMMAND "${GIT}" -C "${SOURCE_DIR}" rev-parse --verify --quiet "HEAD^{commit}"
      OUTPUT_VARIABLE head OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
  endif()
  if(GIT AND rc EQUAL 0)
    message(STATUS "fetching tensortape commit ${head}")
    list(APPEND args "-DTENSORTAPE_GIT_REPOSITORY=${SOURCE_DIR}" "-DTENSORTAPE_GIT_TAG=${head}")
  else()
    message(STATUS "no git commit to fetch; using FETCHCONTENT_SOURCE_DIR_TENSORTAPE")
    list(APPEND args "-DFETCHCONTENT_SOURCE_DIR_TENSORTAPE=${SOURCE_DIR}")
  endif()
else()
  message(FATAL_ERROR "unknown MODE '${MODE}'")
endif()

run("${CMAKE_COMMAND}" -S "${SOURCE_DIR}/tests/consumer/${MODE}" -B "${WORK_DIR}/build" ${args})
run("${CMAKE_COMMAND}" --build "${WORK_DIR}/build" ${config})

set(exe "${WORK_DIR}/build/tensortape_consumer")
if(NOT EXISTS "${exe}")
  set(exe "${WORK_DIR}/build/${BUILD_TYPE}/tensortape_consumer")
endif()
run("${exe}")
