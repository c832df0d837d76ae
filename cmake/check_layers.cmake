cmake_minimum_required(VERSION 3.25)
# Fails (FATAL_ERROR) when an include goes up the layers, or when a pure layer reaches for I/O or
# the clock (docs/architecture.md, "Layers"). Run as the ctest test `layering`:
#   cmake -DSOURCE_DIR=<repo> -P cmake/check_layers.cmake
#
# Layers, bottom first. A file may include its own folder and any folder of a lower rank; two
# different folders of the same rank may not include each other.
set(ranks
  "fhir=0" "fhir/client=1" "mappings=2"
  "gateway/base=3" "gateway/io=3"
  "gateway/ccm=4"
  "gateway/store=5" "gateway/config=5"
  "gateway/billing=6" "gateway/ingest=6"
  "gateway/sync=7"
  "gateway/writeback=8" "gateway/tools=8"
  "gateway/app=9"
  "gateway/server=10"
  "gateway/cli=11"
  "gateway=12")  # gateway/main.cpp

# Pure code: no SQLite, no HTTP (libcurl, the FHIR client, Beast/Asio), no output files or locks
# (the io layer), no clock. (Reading the config and the mapping files it names is allowed: that is
# configuration, done once at start.) The store's SQLite implementation and its locks live beside the interface but are not
# pure; they are listed apart.
set(pure_dirs "gateway/base" "gateway/ccm" "gateway/billing")
set(pure_files "gateway/store/state_store.h" "gateway/store/state_store.cpp")
set(io_patterns
  "<sqlite3\\.h>" "<curl/" "<boost/asio" "<boost/beast" "\"fhir/client/" "\"gateway/io/"
  "system_clock::now" "steady_clock::now" "NowUtc\\(")

function(rank_of path out)
  set(best "")
  set(best_len 0)
  foreach(entry IN LISTS ranks)
    string(REPLACE "=" ";" kv "${entry}")
    list(GET kv 0 dir)
    list(GET kv 1 r)
    string(LENGTH "${dir}" len)
    if(path MATCHES "^${dir}/[^/]+$" OR (path MATCHES "^${dir}/" AND len GREATER best_len))
      if(len GREATER best_len)
        set(best "${r};${dir}")
        set(best_len ${len})
      endif()
    endif()
  endforeach()
  set(${out} "${best}" PARENT_SCOPE)
endfunction()

file(GLOB_RECURSE sources RELATIVE "${SOURCE_DIR}"
     "${SOURCE_DIR}/fhir/*.h" "${SOURCE_DIR}/fhir/*.cpp"
     "${SOURCE_DIR}/mappings/*.h" "${SOURCE_DIR}/mappings/*.cpp"
     "${SOURCE_DIR}/gateway/*.h" "${SOURCE_DIR}/gateway/*.cpp")
set(problems "")
foreach(file IN LISTS sources)
  rank_of("${file}" mine)
  if(mine STREQUAL "")
    list(APPEND problems "${file}: in no layer (add its folder to cmake/check_layers.cmake)")
    continue()
  endif()
  list(GET mine 0 my_rank)
  list(GET mine 1 my_dir)
  file(STRINGS "${SOURCE_DIR}/${file}" includes REGEX "^#include \"(fhir|mappings|gateway)/")
  foreach(line IN LISTS includes)
    string(REGEX REPLACE "^#include \"([^\"]+)\".*" "\\1" target "${line}")
    rank_of("${target}" theirs)
    if(theirs STREQUAL "")
      list(APPEND problems "${file}: includes ${target}, which is in no layer")
      continue()
    endif()
    list(GET theirs 0 their_rank)
    list(GET theirs 1 their_dir)
    if(their_dir STREQUAL my_dir)
      continue()
    endif()
    if(NOT their_rank LESS my_rank)
      list(APPEND problems
           "${file}: includes ${target} (${their_dir}, layer ${their_rank}) from ${my_dir} (layer ${my_rank}): includes go only downward")
    endif()
  endforeach()
  set(pure FALSE)
  foreach(dir IN LISTS pure_dirs)
    if(file MATCHES "^${dir}/")
      set(pure TRUE)
    endif()
  endforeach()
  if(file IN_LIST pure_files)
    set(pure TRUE)
  endif()
  if(pure)
    file(READ "${SOURCE_DIR}/${file}" text)
    foreach(pattern IN LISTS io_patterns)
      if(text MATCHES "${pattern}")
        list(APPEND problems "${file}: pure layer uses ${pattern} (I/O or the clock belongs to the edges)")
      endif()
    endforeach()
  endif()
endforeach()

list(LENGTH sources count)
if(problems)
  list(JOIN problems "\n  " text)
  message(FATAL_ERROR "layering: ${text}")
endif()
message(STATUS "layering: ${count} files, every include goes downward, pure layers stay pure")
