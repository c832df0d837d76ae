#include "mappings/code_systems.h"

#include <cctype>

namespace ccm::mappings {

std::string NormalizeIcd10(std::string_view code) {
  std::string out;
  out.reserve(code.size());
  for (char c : code) {
    if (c == '.' || std::isspace(static_cast<unsigned char>(c))) continue;
    out.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  return out;
}

}  // namespace ccm::mappings
