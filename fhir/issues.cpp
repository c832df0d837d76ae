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

std::string IssueKind(const Issue& issue) {
  std::string key;
  key.reserve(issue.path.size() + issue.message.size() + 4);
  key += static_cast<char>('0' + static_cast<int>(issue.severity));
  key += static_cast<char>('A' + static_cast<int>(issue.code));
  // The path without its indices: `a[3].b[0]` -> `a[].b[]`.
  bool in_index = false;
  for (char c : issue.path) {
    if (c == '[') in_index = true;
    if (c == ']') in_index = false;
    if (!in_index || c == '[') key += c;
  }
  key += '\n';
  // The message template: runs of digits become '#', quoted text is left out (so the values a
  // message names do not make a kind of their own).
  char quote = 0;
  bool digits = false;
  for (char c : issue.message) {
    if (quote != 0) {
      if (c == quote) {
        quote = 0;
        key += c;
      }
      continue;
    }
    if (c >= '0' && c <= '9') {
      if (!digits) key += '#';
      digits = true;
      continue;
    }
    digits = false;
    if (c == '\'' || c == '"' || c == '`') quote = c;
    key += c;
  }
  return key;
}

void IssueList::Count(Severity s, std::size_t n) noexcept {
  total_ += n;
  if (s == Severity::kError || s == Severity::kFatal) errors_ += n;
  if (s == Severity::kWarning) warnings_ += n;
}

void IssueList::CountOtherKind(Severity s, IssueCode c, std::size_t n) noexcept {
  // The most severe of them represents the group (Severity is ordered fatal first).
  if (other_kinds_ == 0 || s < other_severity_) {
    other_severity_ = s;
    other_code_ = c;
  }
  other_kinds_ += n;
}

void IssueList::Index(std::size_t i) {
  Kind& k = kinds_[IssueKind(issues_[i])];
  ++k.kept;
  k.last = i;
}

void IssueList::Add(Issue issue) { AddRepeated(std::move(issue), 1); }

void IssueList::AddRepeated(Issue issue, std::size_t n) {
  if (n == 0) return;
  Count(issue.severity, n);
  const std::size_t per_kind = std::max<std::size_t>(1, limits_.per_kind);
  // The last copy is moved in (the common case is n == 1).
  auto take = [&]() -> Issue { return --n == 0 ? std::move(issue) : issue; };
  while (!indexed_ && n > 0 && issues_.size() + 1 < per_kind) issues_.push_back(take());
  if (n == 0) return;
  if (!indexed_) {
    for (std::size_t i = 0; i < issues_.size(); ++i) Index(i);
    indexed_ = true;
  }
  std::string key = IssueKind(issue);
  auto it = kinds_.find(key);
  if (it == kinds_.end()) {
    if (kinds_.size() >= limits_.kinds) return CountOtherKind(issue.severity, issue.code, n);
    it = kinds_.emplace(std::move(key), Kind{}).first;
  }
  Kind& k = it->second;
  while (n > 0 && k.kept < per_kind) {
    ++k.kept;
    k.last = issues_.size();
    issues_.push_back(take());
  }
  k.omitted += n;
}

void IssueList::Add(Severity s, IssueCode c, std::string path, std::string message,
                    std::string location) {
  Add(Issue{s, c, std::move(path), std::move(message), std::move(location)});
}

void IssueList::Append(const IssueList& other) {
  // Each stored issue, then the counts `other` omitted, as if added one by one: the omitted
  // issues of a kind are like its last stored one.
  std::vector<OmittedIssues> omitted = other.omitted();
  auto next = omitted.begin();
  for (std::size_t i = 0; i < other.issues_.size(); ++i) {
    Add(other.issues_[i]);
    for (; next != omitted.end() && next->after == i; ++next) {
      AddRepeated(other.issues_[i], next->count);
    }
  }
  for (; next != omitted.end(); ++next) {
    // Other kinds: only their number and worst severity are known.
    Count(next->severity, next->count);
    CountOtherKind(next->severity, next->code, next->count);
  }
}

std::vector<OmittedIssues> IssueList::omitted() const {
  std::vector<OmittedIssues> out;
  for (const auto& [key, k] : kinds_) {
    if (k.omitted == 0) continue;
    const Issue& like = issues_[k.last];
    out.push_back(OmittedIssues{k.last, k.omitted, like.severity, like.code});
  }
  std::sort(out.begin(), out.end(),
            [](const OmittedIssues& a, const OmittedIssues& b) { return a.after < b.after; });
  if (other_kinds_ > 0) {
    out.push_back(
        OmittedIssues{OmittedIssues::kOtherKinds, other_kinds_, other_severity_, other_code_});
  }
  return out;
}

void IssueList::SetLocation(std::string_view location) {
  for (Issue& i : issues_) {
    if (i.location.empty()) i.location = location;
  }
}

std::string FormatOmitted(const OmittedIssues& omitted) {
  if (omitted.after == OmittedIssues::kOtherKinds) {
    return fmt::format("... and {} more issue(s) of other kinds (not listed)", omitted.count);
  }
  return fmt::format("... and {} more like this", omitted.count);
}

std::vector<std::string> FormatIssueLines(const IssueList& issues, bool with_information) {
  std::vector<std::string> out;
  std::vector<OmittedIssues> omitted = issues.omitted();
  auto next = omitted.begin();
  const std::vector<Issue>& items = issues.items();
  for (std::size_t i = 0; i < items.size(); ++i) {
    bool shown = with_information || items[i].severity != Severity::kInformation;
    if (shown) out.push_back(FormatIssue(items[i]));
    for (; next != omitted.end() && next->after == i; ++next) {
      if (shown) out.push_back(FormatOmitted(*next));
    }
  }
  for (; next != omitted.end(); ++next) {
    if (with_information || next->severity != Severity::kInformation) {
      out.push_back(FormatOmitted(*next));
    }
  }
  return out;
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
  std::vector<OmittedIssues> omitted = issues.omitted();
  auto next = omitted.begin();
  const std::vector<Issue>& items = issues.items();
  for (std::size_t n = 0; n < items.size(); ++n) {
    const Issue& i = items[n];
    std::string diagnostics =
        i.location.empty() ? i.message : fmt::format("{}: {}", i.location, i.message);
    add(i.severity, i.code, diagnostics, i.path);
    for (; next != omitted.end() && next->after == n; ++next) {
      add(next->severity, next->code, FormatOmitted(*next), "");
    }
  }
  for (; next != omitted.end(); ++next) add(next->severity, next->code, FormatOmitted(*next), "");
  return oo;
}

}  // namespace ccm::fhir
