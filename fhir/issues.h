// Data problems, collected rather than thrown (google/fhir's error-reporter pattern).
//
// Anything wrong with input data is recorded as an Issue with a severity, an R4 IssueType code, the
// element path in FHIRPath style with indices (`Encounter.reasonCode[0].coding[1].code`), a message
// that says what is wrong and how to fix it, and where it came from (`file:line`). A list of issues
// renders as an OperationOutcome (R4 §8.x OperationOutcome) for FHIR clients, or as text lines
// `file:line: path: message` for people.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fhir/json.h"

namespace ccm::fhir {

// OperationOutcome.issue.severity (http://hl7.org/fhir/issue-severity, required binding).
enum class Severity { kFatal, kError, kWarning, kInformation };

// OperationOutcome.issue.code (http://hl7.org/fhir/issue-type): the subset the gateway emits.
enum class IssueCode {
  kInvalid,        // content invalid against the specification
  kStructure,      // structural issue (wrong JSON shape, malformed JSON)
  kRequired,       // a required element is missing
  kValue,          // an element value is invalid (bad code, bad date, bad id)
  kInvariant,      // a FHIR invariant fails (e.g. per-1)
  kNotSupported,   // content the gateway does not handle
  kDuplicate,      // the same resource seen twice
  kNotFound,       // a referenced thing does not exist
  kProcessing,     // processing failure
  kTooLong,        // too large
  kCodeInvalid,    // code not in the required value set
  kInformational,  // informational note
  kException,      // unexpected internal failure
  kIncomplete,     // not all data was processed
};

std::string_view ToCode(Severity s) noexcept;   // FHIR code, e.g. "error"
std::string_view ToCode(IssueCode c) noexcept;  // FHIR code, e.g. "code-invalid"

struct Issue {
  Severity severity = Severity::kError;
  IssueCode code = IssueCode::kInvalid;
  std::string path;      // element path, "" when it concerns the whole input
  std::string message;   // what is wrong and how to fix it; never patient data values beyond codes
  std::string location;  // "file:line" (or "file:line:column"), "" when unknown

  bool is_error() const noexcept {
    return severity == Severity::kError || severity == Severity::kFatal;
  }
};

// How many issues an IssueList stores. Problems are counted exactly, but only the first
// `per_kind` of each kind are kept, so that a million-line export with the same mistake on every
// line needs memory for a hundred examples, not a million. A *kind* is the severity, the code,
// the path without its indices (`Encounter.type[].coding[].code`) and the message template: the
// message with digits and the text inside quotes left out ("invalid JSON: line 1, column 7"
// and "... column 9" are one kind; so are "value 'x'" and "value 'y'"). Once `kinds` distinct
// kinds are known, issues of further kinds are only counted (as "other kinds"), so an input with
// ever-new element names cannot grow the list without bound either.
struct IssueLimits {
  std::size_t per_kind = 100;  // at least 1
  std::size_t kinds = 500;
  // Every issue kept (tests, small lists that are rendered whole).
  static IssueLimits Unlimited() noexcept { return {SIZE_MAX, SIZE_MAX}; }
};

// Issues counted but not stored: `count` more of the kind of items()[after] (the last one kept),
// or, with `after` == kOtherKinds, issues of kinds beyond IssueLimits::kinds.
struct OmittedIssues {
  static constexpr std::size_t kOtherKinds = SIZE_MAX;
  std::size_t after = 0;
  std::size_t count = 0;
  Severity severity = Severity::kError;  // of the kind (kOtherKinds: the most severe omitted)
  IssueCode code = IssueCode::kInvalid;
};

// An ordered list of issues with exact totals and bounded storage (IssueLimits). Iteration and
// items() give the stored issues in the order added; error_count(), warning_count(), total() and
// has_errors() count every issue added. Not thread-safe.
class IssueList {
 public:
  IssueList() = default;
  explicit IssueList(IssueLimits limits) : limits_(limits) {}

  void Add(Severity s, IssueCode c, std::string path, std::string message,
           std::string location = {});
  void Add(Issue issue);
  void Error(IssueCode c, std::string path, std::string message) {
    Add(Severity::kError, c, std::move(path), std::move(message));
  }
  void Warning(IssueCode c, std::string path, std::string message) {
    Add(Severity::kWarning, c, std::move(path), std::move(message));
  }
  // Adds every issue of `other`, its omitted counts included (this list's limits apply).
  void Append(const IssueList& other);
  // Sets `location` on every stored issue that has none.
  void SetLocation(std::string_view location);

  bool has_errors() const noexcept { return errors_ > 0; }
  std::size_t error_count() const noexcept { return errors_; }      // fatal and error, exact
  std::size_t warning_count() const noexcept { return warnings_; }  // exact
  std::size_t total() const noexcept { return total_; }             // every issue added
  bool empty() const noexcept { return total_ == 0; }
  // Stored issues (at most about limits.per_kind x limits.kinds).
  std::size_t size() const noexcept { return issues_.size(); }
  std::size_t omitted_count() const noexcept { return total_ - issues_.size(); }
  const std::vector<Issue>& items() const noexcept { return issues_; }
  // What was counted and not stored, ordered by `after` (kOtherKinds last).
  std::vector<OmittedIssues> omitted() const;
  auto begin() const noexcept { return issues_.begin(); }
  auto end() const noexcept { return issues_.end(); }
  const IssueLimits& limits() const noexcept { return limits_; }

 private:
  struct Kind {
    std::size_t kept = 0;
    std::size_t last = 0;  // index in issues_ of the last one kept
    std::size_t omitted = 0;
  };
  void AddRepeated(Issue issue, std::size_t n);  // `n` issues like `issue`
  void Index(std::size_t i);                     // enters issues_[i] into kinds_
  void Count(Severity s, std::size_t n) noexcept;
  void CountOtherKind(Severity s, IssueCode c, std::size_t n) noexcept;

  IssueLimits limits_;
  std::vector<Issue> issues_;
  // Built only once the list holds limits.per_kind issues (below that no kind can be full), so
  // the many small per-resource lists never compute a kind.
  std::unordered_map<std::string, Kind> kinds_;
  bool indexed_ = false;
  std::size_t total_ = 0, errors_ = 0, warnings_ = 0;
  std::size_t other_kinds_ = 0;  // issues of kinds beyond limits.kinds
  Severity other_severity_ = Severity::kInformation;
  IssueCode other_code_ = IssueCode::kInformational;
};

// The kind of an issue as IssueLimits describes it (exposed for tests).
std::string IssueKind(const Issue& issue);

// "... and 57 more like this" (or "... and 3 more issues of other kinds"), for text output after
// the issue it follows.
std::string FormatOmitted(const OmittedIssues& omitted);

// The stored issues as text lines (FormatIssue), each kind's "... and K more like this" line
// right after its last stored issue, the other kinds' line last. `with_information` false leaves
// out information-level issues (their omitted lines too).
std::vector<std::string> FormatIssueLines(const IssueList& issues, bool with_information = true);

// "location: path: message" (parts that are empty are left out), prefixed by severity unless error.
std::string FormatIssue(const Issue& issue);

// An OperationOutcome resource. With no issues it carries one informational "All OK" issue, as the
// spec's OperationOutcome-allok example does (an OperationOutcome needs at least one issue).
// Omitted issues appear as one issue per kind (its severity and code, diagnostics "... and K
// more like this") after the last stored issue of the kind.
json::Value ToOperationOutcome(const IssueList& issues);

}  // namespace ccm::fhir
