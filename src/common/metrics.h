// Metrics in the Prometheus data model: counters and histograms identified by a name and label
// values, rendered in the text exposition format (version 0.0.4). Gauges that are computed when
// scraped (table sizes, resident memory) are appended by the caller of Render.
//
//   registry.Describe("quiver_http_requests_total", "counter", "HTTP requests");
//   registry.Counter("quiver_http_requests_total", {{"route", "/health"}}).Increment();
//
// Thread safety: every method may be called from any thread. A metric, once created, lives as
// long as the registry, so the references returned stay valid; updates are lock-free atomics.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace quiver {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class CounterMetric {
 public:
  void Increment(uint64_t amount = 1) { value_.fetch_add(amount, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class HistogramMetric {
 public:
  // `bounds`: ascending upper bounds of the buckets; +Inf is implied.
  explicit HistogramMetric(std::vector<double> bounds);
  void Observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  // Cumulative counts per bound (and +Inf last), the sum, the count.
  void Read(std::vector<uint64_t>* cumulative, double* sum, uint64_t* count) const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1, not cumulative
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_micro_{0};  // sum in millionths, kept exact with integers
};

class MetricsRegistry {
 public:
  void Describe(const std::string& name, std::string_view type, std::string_view help);
  CounterMetric& Counter(const std::string& name, const MetricLabels& labels);
  HistogramMetric& Histogram(const std::string& name, const MetricLabels& labels,
                             const std::vector<double>& bounds);
  // Appends every described metric family in text format, then what each collector appends.
  void Render(std::string* out) const;
  // `collect` appends families computed when scraped (it must stay callable while the registry
  // renders).
  void AddCollector(std::function<void(std::string*)> collect);

 private:
  struct Family {
    std::string type, help;
    std::map<std::string, std::unique_ptr<CounterMetric>> counters;      // by rendered labels
    std::map<std::string, std::unique_ptr<HistogramMetric>> histograms;  // by rendered labels
  };
  mutable std::mutex mutex_;
  std::map<std::string, Family> families_;
  std::vector<std::function<void(std::string*)>> collectors_;
};

// One metric family of one sample, for collectors that render a fixed set of figures.
struct MetricFamilySample {
  const char* name;
  const char* type;  // "gauge", "counter"
  const char* help;
  double value;
};
// Appends each family's header and its sample, with `labels`.
void AppendFamilySamples(std::string* out, std::span<const MetricFamilySample> families,
                         const MetricLabels& labels);

// `{a="1",b="x"}` with label values escaped, or "" for no labels.
std::string RenderLabels(const MetricLabels& labels);
// A sample line: `name{labels} value\n`.
void AppendSample(std::string* out, std::string_view name, const MetricLabels& labels,
                  double value);
// The bucket, sum and count lines of a histogram; `rendered_labels` as RenderLabels gives them
// without the braces ("" for none).
void AppendHistogramSamples(std::string* out, std::string_view name,
                            std::string_view rendered_labels, const HistogramMetric& histogram);
// HELP and TYPE lines of a family.
void AppendFamilyHeader(std::string* out, std::string_view name, std::string_view type,
                        std::string_view help);

}  // namespace quiver
