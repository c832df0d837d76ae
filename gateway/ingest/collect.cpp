#include "gateway/ingest/collect.h"

#include <fmt/format.h>

#include <algorithm>
#include <any>
#include <memory>

#include <boost/intrusive_ptr.hpp>
#include <boost/smart_ptr/intrusive_ref_counter.hpp>

namespace ccm::gateway {

Result<CollectReport> CollectFacts(const std::vector<std::filesystem::path>& inputs,
                                   const EngineConfig& config, FactStore& facts, unsigned threads,
                                   const std::function<void(std::size_t)>& on_progress) {
  // Every input is checked before any is read: a typo in the last one must not cost a long read.
  for (const auto& p : inputs) CCM_TRY(fhir::CheckInputPath(p));
  CollectReport report;
  // Size the fact index from the input size (exported resources average well over 500 bytes;
  // gzip shrinks NDJSON about eight-fold), so that a large export does not rehash a table that no
  // longer fits the caches. Only an estimate: unreadable or hidden entries are simply skipped
  // here (the reader reports them).
  std::uintmax_t bytes = 0;
  auto count = [&bytes](const std::filesystem::directory_entry& e) {
    std::error_code ec;
    if (!e.is_regular_file(ec)) return;
    std::uintmax_t n = e.file_size(ec);
    if (ec) return;
    bytes += e.path().extension() == ".gz" ? n * 8 : n;
  };
  for (const auto& p : inputs) {
    std::error_code ec;
    if (!std::filesystem::is_directory(p, ec)) {
      count(std::filesystem::directory_entry(p, ec));
      continue;
    }
    std::filesystem::recursive_directory_iterator it(
        p, std::filesystem::directory_options::skip_permission_denied, ec);
    for (; !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (it->path().filename().string().starts_with('.')) {
        it.disable_recursion_pending();
        continue;
      }
      count(*it);
    }
  }
  facts.Reserve(static_cast<std::size_t>(std::min<std::uintmax_t>(bytes / 500, 50'000'000)));
  fhir::ReadOptions options;
  options.threads = std::max(1u, threads);
  // Facts are extracted on the parsing threads; only the compact result crosses to this one. On
  // one thread there is nothing to cross: the extraction is added to the store at once (the
  // reader then runs prepare and on_prepared back to back on this thread), which saves the two
  // allocations of a hand-over per resource.
  const bool direct = options.threads == 1;
  struct Added {};  // fits std::any's own storage: no allocation
  std::size_t delivered = 0;
  // Across threads: one allocation per resource. An intrusive pointer is small enough for
  // std::any's own storage (a shared_ptr is not, and cost a second allocation and a second free
  // on this thread of memory from a worker's arena). The count needs no atomics: the box is only
  // ever held by one thread at a time, handed over through the reader's futures.
  struct Box : boost::intrusive_ref_counter<Box, boost::thread_unsafe_counter> {
    explicit Box(Extracted&& x) : e(std::move(x)) {}
    Extracted e;
  };
  using BoxPtr = boost::intrusive_ptr<Box>;
  auto hand_over = [direct, &facts](Extracted&& e) -> std::any {
    if (direct) {
      facts.Add(std::move(e));
      return Added{};
    }
    // Types the engine does not read need no hand-over (saves an allocation per resource).
    if (e.key.empty()) return std::any();
    return BoxPtr(new Box(std::move(e)));
  };
  fhir::ResourceReader reader(
      [&config, &hand_over](fhir::json::Value&& resource, const fhir::SourceLocation& where) {
        return hand_over(ExtractFact(resource, where, config));
      },
      [&](std::any&& prepared, const fhir::SourceLocation&) {
        // (Every 4096 resources: a progress line costs nothing against the parsing.)
        if (on_progress && (++delivered & 4095u) == 0) on_progress(delivered);
        if (std::any_cast<Added>(&prepared) != nullptr) return true;
        if (prepared.has_value()) {
          facts.Add(std::move(std::any_cast<BoxPtr&>(prepared)->e));
        } else {
          facts.Add(Extracted{});  // counted as a resource of a type the engine ignores
        }
        return true;
      },
      [&](const fhir::Issue& issue) {
        report.read_issues.Add(issue.severity, issue.code, issue.path, issue.message,
                               issue.location);
        return true;
      },
      options);
  reader.set_prepare_line([&config, &hand_over](char* data, std::size_t size,
                                                const fhir::SourceLocation& where,
                                                std::string& scratch) -> Result<std::any> {
    Result<Extracted> e = ExtractFactFromLine(data, size, where, config, &scratch);
    // (std::any could hold the Error itself: construct the error alternative explicitly.)
    if (!e) return Result<std::any>(boost::system::in_place_error, e.error());
    return Result<std::any>(hand_over(std::move(*e)));
  });
  for (const auto& p : inputs) CCM_TRY(reader.Read(p));
  report.read = reader.counts();
  return report;
}

}  // namespace ccm::gateway
