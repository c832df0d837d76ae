#include "gateway/server/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace ccm::gateway::server {
namespace {

// Exposition format: a label value escapes backslash, double quote and newline.
std::string Escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15)
    return fmt::format("{}", static_cast<long long>(v));
  return fmt::format("{}", v);
}

// `labels` (rendered "{a="x",b="y"}" or "") with one more label.
std::string WithLabel(const std::string& labels, std::string_view name, std::string_view value) {
  std::string extra = fmt::format("{}=\"{}\"", name, Escape(value));
  if (labels.empty()) return "{" + extra + "}";
  return labels.substr(0, labels.size() - 1) + "," + extra + "}";
}

}  // namespace

void Metrics::Declare(std::string name, std::string help, Kind kind, std::vector<double> buckets) {
  std::lock_guard lock(mutex_);
  if (Find(name) != nullptr) return;
  std::sort(buckets.begin(), buckets.end());
  families_.push_back(Family{std::move(name), std::move(help), kind, std::move(buckets), {}});
}

Metrics::Family* Metrics::Find(std::string_view name) {
  for (Family& f : families_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

std::string Metrics::RenderLabels(const Labels& labels) {
  if (labels.empty()) return "";
  std::string out = "{";
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) out += ',';
    out += fmt::format("{}=\"{}\"", labels[i].first, Escape(labels[i].second));
  }
  return out + "}";
}

void Metrics::Add(std::string_view name, const Labels& labels, double delta) {
  std::lock_guard lock(mutex_);
  if (Family* f = Find(name)) f->series[RenderLabels(labels)].value += delta;
}

void Metrics::Set(std::string_view name, const Labels& labels, double value) {
  std::lock_guard lock(mutex_);
  if (Family* f = Find(name)) f->series[RenderLabels(labels)].value = value;
}

void Metrics::Observe(std::string_view name, const Labels& labels, double value) {
  std::lock_guard lock(mutex_);
  Family* f = Find(name);
  if (f == nullptr) return;
  Series& s = f->series[RenderLabels(labels)];
  if (s.bins.size() != f->buckets.size()) s.bins.assign(f->buckets.size(), 0);
  auto it = std::lower_bound(f->buckets.begin(), f->buckets.end(), value);
  if (it != f->buckets.end()) ++s.bins[static_cast<std::size_t>(it - f->buckets.begin())];
  ++s.count;
  s.value += value;
}

std::string Metrics::Render() const {
  std::lock_guard lock(mutex_);
  std::string out;
  for (const Family& f : families_) {
    std::string_view type = f.kind == Kind::kCounter ? "counter"
                            : f.kind == Kind::kGauge ? "gauge"
                                                     : "histogram";
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f.name, f.help, f.name, type);
    for (const auto& [labels, s] : f.series) {
      if (f.kind != Kind::kHistogram) {
        out += fmt::format("{}{} {}\n", f.name, labels, Number(s.value));
        continue;
      }
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i < f.buckets.size(); ++i) {
        cumulative += i < s.bins.size() ? s.bins[i] : 0;
        out += fmt::format("{}_bucket{} {}\n", f.name,
                           WithLabel(labels, "le", Number(f.buckets[i])), cumulative);
      }
      out += fmt::format("{}_bucket{} {}\n", f.name, WithLabel(labels, "le", "+Inf"), s.count);
      out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", f.name, labels, Number(s.value), f.name,
                         labels, s.count);
    }
  }
  return out;
}

}  // namespace ccm::gateway::server
