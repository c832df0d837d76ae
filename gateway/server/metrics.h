// Metrics of the gateway's service in the Prometheus text exposition format (version 0.0.4):
// counters, gauges and histograms with labels.
//
// Contract
// - Families are declared once (name, help, type); samples are added by label values. Label
//   values are escaped as the format requires. Never put a patient id in a label.
// - Thread-safe: a request thread may count while another renders.
// - Render() writes families in the order declared, samples by label values.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace ccm::gateway::server {

class Metrics {
 public:
  enum class Kind { kCounter, kGauge, kHistogram };
  using Labels = std::vector<std::pair<std::string, std::string>>;

  // Declares a family (again: no-op). Histogram `buckets` are upper bounds, ascending.
  void Declare(std::string name, std::string help, Kind kind, std::vector<double> buckets = {});
  void Add(std::string_view name, const Labels& labels, double delta = 1);  // counter
  void Set(std::string_view name, const Labels& labels, double value);      // gauge
  void Observe(std::string_view name, const Labels& labels, double value);  // histogram
  std::string Render() const;

 private:
  struct Series {
    double value = 0;                 // counter, gauge; histogram: sum
    std::vector<std::uint64_t> bins;  // histogram: count per bucket (not cumulative)
    std::uint64_t count = 0;          // histogram
  };
  struct Family {
    std::string name, help;
    Kind kind = Kind::kCounter;
    std::vector<double> buckets;
    std::map<std::string, Series> series;  // by rendered label set
  };
  Family* Find(std::string_view name);
  static std::string RenderLabels(const Labels& labels);

  mutable std::mutex mutex_;
  std::vector<Family> families_;
};

}  // namespace ccm::gateway::server
