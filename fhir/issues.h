// Data problems, collected rather than thrown (google/fhir's error-reporter pattern).
//
// Anything wrong with input data is recorded as an Issue with a severity, an R4 IssueType code, the
// element path in FHIRPath style with indices (`Encounter.reasonCode[0].coding[1].code`), a message
// that says what is wrong and how to fix it, and where it came from (`file:line`). A list of issues
// renders as an OperationOutcome (R4 §8.x OperationOutcome) for FHIR clients, or as text lines
// `file:line: path: message` for people.
#pragma once

#include <string>
#include <string_view>
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

class IssueList {
 public:
  void Add(Severity s, IssueCode c, std::string path, std::string message,
           std::string location = {});
  void Error(IssueCode c, std::string path, std::string message) {
    Add(Severity::kError, c, std::move(path), std::move(message));
  }
  void Warning(IssueCode c, std::string path, std::string message) {
    Add(Severity::kWarning, c, std::move(path), std::move(message));
  }
  void Append(const IssueList& other);
  // Sets `location` on every issue that has none.
  void SetLocation(std::string_view location);

  bool has_errors() const noexcept;
  std::size_t error_count() const noexcept;
  bool empty() const noexcept { return issues_.empty(); }
  std::size_t size() const noexcept { return issues_.size(); }
  const std::vector<Issue>& items() const noexcept { return issues_; }
  auto begin() const noexcept { return issues_.begin(); }
  auto end() const noexcept { return issues_.end(); }

 private:
  std::vector<Issue> issues_;
};

// "location: path: message" (parts that are empty are left out), prefixed by severity unless error.
std::string FormatIssue(const Issue& issue);

// An OperationOutcome resource. With no issues it carries one informational "All OK" issue, as the
// spec's OperationOutcome-allok example does (an OperationOutcome needs at least one issue).
json::Value ToOperationOutcome(const IssueList& issues);

}  // namespace ccm::fhir
