#include "fhir/issues.h"

#include <algorithm>

#include <fmt/format.h>

namespace ccm::fhir {

std::string_view ToCode(Severity s) noexcept {
  switch (s) {
    case Severity::kFatal:
      return "fatal";
    case Severity::kError:
      return "error";
    case Severity::kWarning:
      return "warning";
    case Severity::kInformation:
      return "information";
  }
  return "error";
}

std::string_view ToCode(IssueCode c) noexcept {
  switch (c) {
    case IssueCode::kInvalid:
      return "invalid";
    case IssueCode::kStructure:
      return "structure";
    case IssueCode::kRequired:
      return "required";
    case IssueCode::kValue:
      return "value";
    case IssueCode::kInvariant:
      return "invariant";
    case IssueCode::kNotSupported:
      return "not-supported";
    case IssueCode::kDuplicate:
      return "duplicate";
    case IssueCode::kNotFound:
      return "not-found";
    case IssueCode::kProcessing:
      return "processing";
    case IssueCode::kTooLong:
      return "too-long";
    case IssueCode::kCodeInvalid:
      return "code-invalid";
    case IssueCode::kInformational:
      return "informational";
    case IssueCode::kException:
      return "exception";
    case IssueCode::kIncomplete:
      return "incomplete";
  }
  return "invalid";
}

void IssueList::Add(Severity s, IssueCode c, std::string path, std::string message,
                    std::string location) {
  issues_.push_back(Issue{s, c, std::move(path), std::move(message), std::move(location)});
}

void IssueList::Append(const IssueList& other) {
  issues_.insert(issues_.end(), other.issues_.begin(), other.issues_.end());
}

void IssueList::SetLocation(std::string_view location) {
  for (Issue& i : issues_) {
    if (i.location.empty()) i.location = location;
  }
}

bool IssueList::has_errors() const noexcept {
  return std::any_of(issues_.begin(), issues_.end(), [](const Issue& i) { return i.is_error(); });
}

std::size_t IssueList::error_count() const noexcept {
  return static_cast<std::size_t>(
      std::count_if(issues_.begin(), issues_.end(), [](const Issue& i) { return i.is_error(); }));
}

std::string FormatIssue(const Issue& issue) {
  std::string out;
  if (!issue.location.empty()) out += fmt::format("{}: ", issue.location);
  if (!issue.is_error()) out += fmt::format("{}: ", ToCode(issue.severity));
  if (!issue.path.empty()) out += fmt::format("{}: ", issue.path);
  out += issue.message;
  return out;
}

json::Value ToOperationOutcome(const IssueList& issues) {
  json::Value oo = json::Value::MakeObject();
  oo.set("resourceType", json::Value::String("OperationOutcome"));
  json::Value& list = oo.set("issue", json::Value::MakeArray());
  auto add = [&](Severity s, IssueCode c, const std::string& diagnostics, const std::string& path) {
    json::Value issue = json::Value::MakeObject();
    issue.set("severity", json::Value::String(std::string(ToCode(s))));
    issue.set("code", json::Value::String(std::string(ToCode(c))));
    if (!diagnostics.empty()) issue.set("diagnostics", json::Value::String(diagnostics));
    if (!path.empty()) {
      // R4: `expression` holds FHIRPath; `location` (deprecated, XPath-flavoured) is kept for
      // older clients that read only it.
      issue.set("location", json::Value::MakeArray()).push_back(json::Value::String(path));
      issue.set("expression", json::Value::MakeArray()).push_back(json::Value::String(path));
    }
    list.push_back(std::move(issue));
  };
  if (issues.empty()) {
    add(Severity::kInformation, IssueCode::kInformational, "All OK", "");
  }
  for (const Issue& i : issues) {
    std::string diagnostics =
        i.location.empty() ? i.message : fmt::format("{}: {}", i.location, i.message);
    add(i.severity, i.code, diagnostics, i.path);
  }
  return oo;
}

}  // namespace ccm::fhir
